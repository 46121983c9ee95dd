"""Bodies stream through both sidecars: chunk by chunk, SSE, 100 MB with bounded memory, retry buffer, WebSocket."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from meshd.api.resources import Inbound, InboundPort, RetryPolicy, Route, WeightedCluster, cluster_name
from meshd.proxy.proxy import Proxy
from tests.meshd.proxy.harness import Handler, Mesh
from tests.meshd.proxy.test_http import via

FQDN = "reviews.default.svc.cluster.local"
MB = 1024 * 1024


async def sidecars(mesh: Mesh, handler: Handler | None = None, routes: list[Route] | None = None,
                   app_routes: dict[str, Handler] | None = None) -> tuple[Proxy, str]:
    app_port = await (mesh.app("reviews", handler, routes=app_routes) if handler else mesh.app("reviews",
                                                                                              routes=app_routes))
    server = await mesh.proxy("reviews", app_port=app_port)
    client = await mesh.proxy("sleep")
    ip = mesh.cluster_ip()
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, {"": [mesh.endpoint(server, app_port,
                                                                                         name="reviews")]}, routes)
    mesh.push(clusters, [rc], [listener], Inbound(default_mtls_mode="STRICT",
                                                   ports=(InboundPort(app_port, "http", "STRICT"),)))
    await client.wait_ready()
    await server.wait_ready()
    return client, ip


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def metric_sum(stats: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in stats.splitlines() if line.startswith(name + "{"))


class Gate:
    """The app writes one piece, then waits until the test has seen it through the sidecars."""

    def __init__(self) -> None:
        self.seen = [asyncio.Event() for _ in range(4)]
        self.finished = False

    async def stream(self, request: web.Request, pieces: list[bytes], content_type: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": content_type})
        await resp.prepare(request)
        for i, piece in enumerate(pieces):
            await resp.write(piece)
            if i + 1 < len(pieces):
                await asyncio.wait_for(self.seen[i].wait(), 30)
        self.finished = True
        await resp.write_eof()
        return resp


async def test_chunked_response_arrives_piece_by_piece_before_the_upstream_ends(
        mesh: Mesh, http: aiohttp.ClientSession) -> None:
    gate = Gate()
    pieces = [b"first piece\n", b"second piece\n", b"last\n"]

    async def app(request: web.Request) -> web.StreamResponse:
        return await gate.stream(request, pieces, "text/plain")

    client, ip = await sidecars(mesh, app)
    base, headers = via(client, ip)
    async with http.get(f"{base}/stream", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers.get("transfer-encoding") == "chunked"
        got = b""
        for i, piece in enumerate(pieces):
            while len(got) < sum(len(p) for p in pieces[:i + 1]):
                got += await asyncio.wait_for(resp.content.readany(), 20)
            assert got.endswith(piece)
            assert gate.finished is (i == len(pieces) - 1)  # seen while the app was still waiting
            if i < len(gate.seen):
                gate.seen[i].set()
        assert await resp.content.read() == b""


async def test_server_sent_events_arrive_one_by_one(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    gate = Gate()
    events = [b"id: 1\ndata: one\n\n", b"id: 2\ndata: two\n\n", b"id: 3\ndata: three\n\n"]

    async def app(request: web.Request) -> web.StreamResponse:
        return await gate.stream(request, events, "text/event-stream")

    client, ip = await sidecars(mesh, app)
    base, headers = via(client, ip)
    async with http.get(f"{base}/events", headers={**headers, "accept": "text/event-stream"}) as resp:
        assert resp.headers["content-type"] == "text/event-stream"
        for i, event in enumerate(events):
            lines = [await asyncio.wait_for(resp.content.readline(), 20) for _ in range(3)]
            assert b"".join(lines) == event
            if i < len(events) - 1:
                assert not gate.finished
                gate.seen[i].set()
    assert metric_sum(client.telemetry.render(), "istio_response_bytes_sum") == sum(map(len, events))


async def test_100_mb_both_ways_with_bounded_proxy_memory(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    size = 100 * MB
    block = os.urandom(MB)

    async def upload(request: web.Request) -> web.Response:
        n = 0
        async for chunk in request.content.iter_any():
            n += len(chunk)
        return web.json_response({"received": n})

    async def download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-length": str(size)})
        await resp.prepare(request)
        for _ in range(size // MB):
            await resp.write(block)
        return resp

    client, ip = await sidecars(mesh, app_routes={"/upload": upload, "/download": download})
    base, headers = via(client, ip)
    baseline = rss_mb()
    peak = [baseline]
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            await asyncio.sleep(0.05)

    sampler = asyncio.get_running_loop().create_task(sample())

    async def blocks() -> Any:
        for _ in range(size // MB):
            yield block

    try:
        async with http.post(f"{base}/upload", data=blocks(), headers=headers,
                             timeout=aiohttp.ClientTimeout(total=300)) as resp:
            assert resp.status == 200
            assert (await resp.json())["received"] == size
        received = 0
        async with http.get(f"{base}/download", headers=headers, timeout=aiohttp.ClientTimeout(total=300)) as resp:
            assert resp.headers["content-length"] == str(size)
            async for chunk in resp.content.iter_any():
                received += len(chunk)
        assert received == size
    finally:
        done.set()
        await sampler
    # the app, the client and both sidecars share this process: buffering either body whole
    # would add hundreds of MB (each copy is 100 MB)
    assert peak[0] - baseline < 60, f"RSS grew by {peak[0] - baseline:.0f} MB"
    stats = client.telemetry.render()
    assert metric_sum(stats, "istio_request_bytes_sum") >= size
    assert metric_sum(stats, "istio_response_bytes_sum") >= size


@pytest.mark.parametrize("size, calls", [pytest.param(16 * 1024, 3, id="fits-retried"),
                                         pytest.param(200 * 1024, 1, id="beyond-buffer-not-retried")])
async def test_request_body_beyond_the_retry_buffer_is_not_retried(mesh: Mesh, http: aiohttp.ClientSession,
                                                                    size: int, calls: int) -> None:
    seen: list[int] = []

    async def unavailable(request: web.Request) -> web.Response:
        seen.append(len(await request.read()))
        return web.Response(status=503, text="busy")

    route = Route(name="r", destinations=(WeightedCluster(cluster_name(FQDN, 9080)),),
                  retries=RetryPolicy(attempts=2, retry_on=("5xx",)))
    client, ip = await sidecars(mesh, unavailable, [route])
    base, headers = via(client, ip)

    async def body() -> Any:  # chunked: the body is not complete when the request is forwarded
        for _ in range(size // 8192):
            yield b"b" * 8192

    async with http.post(f"{base}/write", data=body(), headers=headers) as resp:
        assert resp.status == 503
    assert seen == [size] * calls


async def test_route_timeout_cuts_a_response_body_that_outlasts_it(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    gate = Gate()

    async def slow(request: web.Request) -> web.StreamResponse:
        return await gate.stream(request, [b"head\n", b"never\n"], "text/plain")

    route = Route(name="t", destinations=(WeightedCluster(cluster_name(FQDN, 9080)),), timeout_ms=500)
    client, ip = await sidecars(mesh, slow, [route])
    base, headers = via(client, ip)
    async with http.get(f"{base}/slow", headers=headers) as resp:
        assert resp.status == 200  # the head came in time
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(resp.content.read(), 20)
    await asyncio.sleep(0)  # the access record is written when the downstream side is done
    assert 'response_flags="UT"' in client.telemetry.render()
    gate.seen[0].set()  # let the app's handler end, so that the app server stops at once


async def test_websocket_echo_through_two_sidecars_with_mtls(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    client, ip = await sidecars(mesh, app_routes={"/ws": ws_echo})
    base, headers = via(client, ip)
    async with http.ws_connect(f"{base.replace('http', 'ws')}/ws", headers=headers) as ws:
        for i in range(5):
            await ws.send_str(f"hello {i}")
            assert await asyncio.wait_for(ws.receive_str(), 20) == f"echo:hello {i}"
        big = os.urandom(MB)
        await ws.send_bytes(big)
        assert await asyncio.wait_for(ws.receive_bytes(), 20) == big
    # the app saw the mesh identity on the upgrade request
    async with http.get(f"{base}/who", headers=headers) as resp:
        assert (await resp.json())["headers"]["x-forwarded-client-cert"].endswith("sa/sleep")
