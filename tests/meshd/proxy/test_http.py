"""HTTP/1.1 through a client sidecar and a server sidecar (mTLS): keep-alive, chunked, large bodies, XFCC."""

from __future__ import annotations

from typing import Any

import aiohttp

from meshd.api.resources import Inbound, InboundPort
from meshd.proxy.proxy import Proxy
from tests.meshd.proxy.harness import Mesh


async def two_sidecars(mesh: Mesh, mode: str = "STRICT") -> tuple[Proxy, Proxy, str, int]:
    app_port = await mesh.app("reviews")
    server = await mesh.proxy("reviews", app_port=app_port)
    client = await mesh.proxy("sleep")
    ip = mesh.cluster_ip()
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, {"": [mesh.endpoint(server, app_port,
                                                                                         name="reviews")]})
    mesh.push(clusters, [rc], [listener], Inbound(default_mtls_mode=mode,  # type: ignore[arg-type]
                                                   ports=(InboundPort(app_port, "http", mode),)))  # type: ignore[arg-type]
    await client.wait_ready()
    await server.wait_ready()
    return client, server, ip, app_port


def via(client: Proxy, ip: str, port: int = 9080, host: str = "reviews:9080") -> tuple[str, dict[str, str]]:
    return (f"http://127.0.0.1:{client.ports['outbound']}",
            {"host": host, "x-kubelab-original-dst": f"{ip}:{port}"})


async def test_keep_alive_requests_reach_the_app_over_mtls_with_xfcc(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    client, server, ip, _ = await two_sidecars(mesh)
    base, headers = via(client, ip)
    seen: list[dict[str, Any]] = []
    for i in range(20):
        async with http.get(f"{base}/reviews/{i}?x=1", headers=headers) as resp:
            assert resp.status == 200
            seen.append(await resp.json())
    assert [s["path"] for s in seen] == [f"/reviews/{i}?x=1" for i in range(20)]
    xfcc = seen[0]["headers"]["x-forwarded-client-cert"]
    assert xfcc.startswith("By=spiffe://cluster.local/ns/default/sa/reviews;Hash=")
    assert xfcc.endswith(';Subject="";URI=spiffe://cluster.local/ns/default/sa/sleep')
    assert "x-kubelab-peer-metadata" not in seen[0]["headers"]
    assert "x-kubelab-original-dst" not in seen[0]["headers"]
    # keep-alive on both hops: one downstream connection reused, one sidecar-to-sidecar connection.
    assert client.http.pool.opened == 1
    assert server.http.pool.opened == 1


async def test_chunked_and_large_bodies_pass_both_ways(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    client, _, ip, _ = await two_sidecars(mesh)
    base, headers = via(client, ip)

    async def chunks() -> Any:
        for _ in range(64):
            yield b"x" * 16384

    async with http.post(f"{base}/upload", data=chunks(), headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["body_len"] == 64 * 16384
    big = b"y" * (8 * 1024 * 1024)
    async with http.put(f"{base}/big", data=big, headers=headers) as resp:
        assert (await resp.json())["body_len"] == len(big)


async def test_large_chunked_response(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    from aiohttp import web

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(100):
            await resp.write(bytes([65 + i % 26]) * 10000)
        await resp.write_eof()
        return resp

    app_port = await mesh.app("files", stream)
    server = await mesh.proxy("files", app_port=app_port)
    client = await mesh.proxy("sleep")
    ip = mesh.cluster_ip()
    clusters, rc, listener = mesh.http_service("files", ip, 80, {"": [mesh.endpoint(server, app_port, name="files")]})
    mesh.push(clusters, [rc], [listener], Inbound(ports=(InboundPort(app_port, "http", "STRICT"),)))
    await client.wait_ready()
    await server.wait_ready()
    base, headers = via(client, ip, 80, "files")
    async with http.get(f"{base}/", headers=headers) as resp:
        body = await resp.read()
    assert len(body) == 1_000_000
    assert body[:10000] == b"A" * 10000 and body[-10000:] == bytes([65 + 99 % 26]) * 10000


async def test_connection_close_is_honoured(mesh: Mesh) -> None:
    client, _, ip, _ = await two_sidecars(mesh)
    import asyncio
    reader, writer = await asyncio.open_connection("127.0.0.1", client.ports["outbound"])
    writer.write(f"GET /a HTTP/1.1\r\nhost: reviews\r\nx-kubelab-original-dst: {ip}:9080\r\n"
                 "connection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 20)  # EOF: the proxy closed after the response
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in data.lower()
    writer.close()


async def test_unknown_host_is_404_and_unknown_destination_passes_through(mesh: Mesh,
                                                                         http: aiohttp.ClientSession) -> None:
    client, _, ip, _ = await two_sidecars(mesh)
    base, headers = via(client, ip, host="nothere")
    async with http.get(f"{base}/", headers=headers) as resp:
        assert resp.status == 404


async def test_expect_100_continue_is_answered_at_once(mesh: Mesh) -> None:
    import asyncio

    client, _, ip, _ = await two_sidecars(mesh)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.ports["outbound"])
    writer.write(f"POST /up HTTP/1.1\r\nhost: reviews\r\nx-kubelab-original-dst: {ip}:9080\r\n"
                 "content-length: 5\r\nexpect: 100-continue\r\n\r\n".encode())
    # the interim response comes before any body byte was sent (curl would wait a second for it)
    assert await asyncio.wait_for(reader.readline(), 20) == b"HTTP/1.1 100 Continue\r\n"
    await reader.readline()
    writer.write(b"hello")
    status = await asyncio.wait_for(reader.readline(), 20)
    assert status.startswith(b"HTTP/1.1 200 ")
    writer.close()
