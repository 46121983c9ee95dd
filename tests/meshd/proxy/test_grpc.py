"""gRPC (HTTP/2) through both sidecars: h2c from the app, HTTP/2 inside mTLS, trailers, retries on gRPC status,
server-streaming and bidirectional streaming RPCs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import grpc.aio  # type: ignore[import-untyped,unused-ignore]
import pytest

from meshd.api.resources import Inbound, InboundPort, RetryPolicy, Route, WeightedCluster, cluster_name
from meshd.proxy.proxy import Proxy
from tests.meshd.proxy.harness import Mesh

METHOD = "/kubelab.test.Echo/Say"


class EchoApp:
    def __init__(self) -> None:
        self.calls = 0
        self.fail_first: set[bytes] = set()
        self.seen_metadata: list[dict[str, str]] = []
        self.port = 0
        self.server: Any = None
        self.watched = [asyncio.Event(), asyncio.Event()]
        self.watch_finished = False

    async def say(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        self.seen_metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        if request.startswith(b"flaky") and request not in self.fail_first:
            self.fail_first.add(request)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        if request == b"fail":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return b"echo:" + request

    async def chat(self, requests: Any, context: Any) -> Any:
        async for request in requests:
            yield b"echo:" + request

    async def watch(self, request: bytes, context: Any) -> Any:
        for i in range(3):
            yield b"%s %d" % (request, i)
            if i < 2:
                await asyncio.wait_for(self.watched[i].wait(), 30)
        self.watch_finished = True

    async def start(self) -> None:
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "kubelab.test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(self.say),
                                  "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
                                  "Watch": grpc.unary_stream_rpc_method_handler(self.watch)}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()


@pytest.fixture
async def echo_app() -> AsyncIterator[EchoApp]:
    app = EchoApp()
    await app.start()
    yield app
    await app.server.stop(None)


async def grpc_mesh(mesh: Mesh, app: EchoApp, routes: list[Route] | None = None) -> tuple[Proxy, Proxy, str]:
    server = await mesh.proxy("echo", app_port=app.port)
    client = await mesh.proxy("caller")
    ip = mesh.cluster_ip()
    clusters, rc, listener = mesh.http_service("echo", ip, 50051, {"": [mesh.endpoint(server, app.port, name="echo")]},
                                               routes, protocol="grpc")
    mesh.push(clusters, [rc], [listener], Inbound(ports=(InboundPort(app.port, "grpc", "STRICT"),)))
    await client.wait_ready()
    await server.wait_ready()
    return client, server, ip


def channel(client: Proxy) -> Any:
    return grpc.aio.insecure_channel(f"127.0.0.1:{client.ports['outbound']}",
                                     options=[("grpc.default_authority", "echo:50051"), ("grpc.enable_http_proxy", 0)])


async def test_unary_grpc_through_both_sidecars(mesh: Mesh, echo_app: EchoApp) -> None:
    client, _, ip = await grpc_mesh(mesh, echo_app)
    metadata = (("x-kubelab-original-dst", f"{ip}:50051"),)
    async with channel(client) as ch:
        say = ch.unary_unary(METHOD)
        for i in range(5):
            assert await say(b"hello %d" % i, metadata=metadata, timeout=20) == b"echo:hello %d" % i
        big = b"z" * (1024 * 1024)  # beyond the initial 64 KiB flow-control windows
        assert await say(big, metadata=metadata, timeout=20) == b"echo:" + big
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await say(b"fail", metadata=metadata, timeout=20)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and err.value.details() == "no such thing"
    seen = echo_app.seen_metadata[0]
    assert seen["x-forwarded-client-cert"].endswith("URI=spiffe://cluster.local/ns/default/sa/caller")
    assert client.http.h2pool.opened == 1  # one multiplexed sidecar-to-sidecar connection
    stats = client.telemetry.render()
    assert 'request_protocol="grpc",response_code="200",grpc_response_status="5"' in stats
    assert 'request_protocol="grpc",response_code="200",grpc_response_status="0"' in stats


async def test_grpc_unavailable_is_retried(mesh: Mesh, echo_app: EchoApp) -> None:
    fqdn = "echo.default.svc.cluster.local"
    route = Route(name="r", destinations=(WeightedCluster(cluster_name(fqdn, 50051)),),
                  retries=RetryPolicy(attempts=2, retry_on=("unavailable",)))
    client, _, ip = await grpc_mesh(mesh, echo_app, [route])
    async with channel(client) as ch:
        say = ch.unary_unary(METHOD)
        for i in range(3):
            reply = await say(b"flaky %d" % i, metadata=(("x-kubelab-original-dst", f"{ip}:50051"),), timeout=20)
            assert reply == b"echo:flaky %d" % i
    assert echo_app.calls == 6


async def test_bidirectional_streaming_ping_pong_through_both_sidecars(mesh: Mesh, echo_app: EchoApp) -> None:
    client, _, ip = await grpc_mesh(mesh, echo_app)
    async with channel(client) as ch:
        call = ch.stream_stream("/kubelab.test.Echo/Chat")(metadata=(("x-kubelab-original-dst", f"{ip}:50051"),),
                                                          timeout=60)
        # each reply must come back before the next message is sent: nothing may wait for the stream's end
        for message in (b"one", b"two", b"z" * (512 * 1024), b"three"):
            await call.write(message)
            assert await asyncio.wait_for(call.read(), 20) == b"echo:" + message
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    assert 'grpc_response_status="0"' in client.telemetry.render()


async def test_server_streaming_messages_arrive_before_the_rpc_ends(mesh: Mesh, echo_app: EchoApp) -> None:
    client, _, ip = await grpc_mesh(mesh, echo_app)
    async with channel(client) as ch:
        call = ch.unary_stream("/kubelab.test.Echo/Watch")(b"tick", metadata=(("x-kubelab-original-dst",
                                                                                f"{ip}:50051"),), timeout=60)
        for i in range(3):
            assert await asyncio.wait_for(call.read(), 20) == b"tick %d" % i
            assert echo_app.watch_finished is (i == 2)
            if i < 2:
                echo_app.watched[i].set()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
