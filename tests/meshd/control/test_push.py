"""The Discovery server over real gRPC and the TLS front: SotW, ACK/NACK, stale nonces, debounce, resync."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import grpc.aio  # type: ignore[import-untyped,unused-ignore]
import pytest

from meshd.api.protocol import DiscoveryRequest
from meshd.api.resources import CLUSTERS, INBOUND, LISTENERS, PUSH_ORDER, ROUTES
from meshd.control.ca import MeshCertificateAuthority
from meshd.control.compile.proxy import ProxyConfig
from meshd.control.compile.scope import ProxyNode
from meshd.control.metrics import MeshdMetrics
from meshd.control.push import Connection, DiscoveryServer
from meshd.control.tlsfront import TlsFront
from tests.meshd.control.proxyclient import ProxyClient, node, workload_identity


@dataclass
class Source:
    """The configuration the server compiles: ``revision`` changes every type's content."""

    revision: int = 1
    compiles: int = 0

    def __call__(self, _node: ProxyNode) -> ProxyConfig:
        self.compiles += 1
        resources: dict[str, tuple[dict[str, Any], ...]] = {
            t: ({"name": f"{t.rsplit('.', 1)[-1]}-{self.revision}"},) for t in PUSH_ORDER}
        return ProxyConfig(resources=resources, versions={t: f"v{self.revision}" for t in PUSH_ORDER})


@dataclass
class Harness:
    ca: MeshCertificateAuthority
    server: DiscoveryServer
    front: TlsFront
    source: Source
    nacks: list[tuple[str, str]] = field(default_factory=list)
    clients: list[ProxyClient] = field(default_factory=list)

    def client(self, namespace: str = "default", account: str = "default", *, pod: str = "app-1",
               cert_namespace: str | None = None, auto_ack: bool = False) -> ProxyClient:
        chain, key = workload_identity(self.ca, cert_namespace or namespace, account)
        client = ProxyClient(f"127.0.0.1:{self.front.port}", self.ca.root_pem, chain, key,
                             node(namespace, pod, account=account), auto_ack=auto_ack)
        self.clients.append(client)
        return client


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Harness]:
    ca = MeshCertificateAuthority.load_or_create(tmp_path / "ca")
    source = Source()
    nacks: list[tuple[str, str]] = []

    def on_nack(_c: Connection, type_url: str, message: str, _config: ProxyConfig | None) -> None:
        nacks.append((type_url, message))

    front_ref: list[TlsFront] = []
    server = DiscoveryServer(source, MeshdMetrics(), identity_of_peer=lambda p: front_ref[0].identity_of_peer(p),
                             debounce_quiet=0.1, debounce_max=1.0, on_nack=on_nack)
    grpc_server = grpc.aio.server()
    grpc_server.add_generic_rpc_handlers((server.handler(),))
    inner = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    chain, key = ca.serving_certificate(["istiod.istio-system.svc"])
    front = TlsFront(host="127.0.0.1", port=0, chain_pem=chain, key_pem=key, root_pem=ca.root_pem, inner_port=inner,
                     work_dir=tmp_path / "front")
    front_ref.append(front)
    await front.start()
    server.start()
    harness = Harness(ca, server, front, source, nacks)
    try:
        yield harness
    finally:
        for client in harness.clients:
            await client.close()
        await server.stop()
        await front.stop()
        await grpc_server.stop(grace=None)


async def test_initial_requests_get_every_type_in_push_order_and_acks_are_recorded(mesh: Harness) -> None:
    client = mesh.client()
    await client.connect()
    order = []
    for _ in PUSH_ORDER:
        response = await client.recv()
        order.append(response.type_url)
        assert response.version_info == "v1"
        client.ack(response)
    assert order == list(PUSH_ORDER)
    await wait_until(lambda: bool(mesh.server.records())
                     and all(s.status == "SYNCED" for s in mesh.server.records()[0].types.values()))
    record = mesh.server.records()[0]
    assert record.identity == "spiffe://cluster.local/ns/default/sa/default"
    assert record.state(ROUTES).acked_version == "v1"


async def test_nack_keeps_the_state_records_the_message_and_sends_nothing_more(mesh: Harness) -> None:
    client = mesh.client()
    await client.connect()
    for _ in PUSH_ORDER:
        response = await client.recv()
        if response.type_url == ROUTES:
            client.nack(response, "9080.virtual_hosts[0].routes[0]: invalid regular expression")
        else:
            client.ack(response)
    await wait_until(lambda: mesh.server.records()[0].state(ROUTES).status == "NACKED")
    state = mesh.server.records()[0].state(ROUTES)
    assert state.nack_message.endswith("invalid regular expression")
    assert state.nack_version == "v1" and state.acked_version == ""
    assert mesh.nacks == [(ROUTES, "9080.virtual_hosts[0].routes[0]: invalid regular expression")]
    with pytest.raises(TimeoutError):
        await client.recv(timeout=0.5)  # a NACK is not answered: the proxy keeps its config
    mesh.source.revision = 2
    mesh.server.changed()
    resent = {r.type_url: r for r in [await client.recv() for _ in PUSH_ORDER]}
    assert resent[ROUTES].version_info == "v2"


async def test_a_stale_nonce_is_ignored(mesh: Harness) -> None:
    client = mesh.client()
    await client.connect([ROUTES])
    first = await client.recv()
    mesh.source.revision = 2
    mesh.server.changed()
    second = await client.recv()
    assert second.nonce != first.nonce
    # An ACK of the superseded response must not mark v1 as applied, nor the type as synced.
    client.ack(first)
    client.send(DiscoveryRequest(type_url=ROUTES, version_info="v1", response_nonce=first.nonce))
    await asyncio.sleep(0.3)
    state = mesh.server.records()[0].state(ROUTES)
    assert state.acked_version == "" and state.status == "STALE"
    client.ack(second)
    await wait_until(lambda: mesh.server.records()[0].state(ROUTES).status == "SYNCED")
    assert mesh.server.records()[0].state(ROUTES).acked_version == "v2"


async def test_fifty_changes_in_a_burst_become_at_most_two_pushes(mesh: Harness) -> None:
    client = mesh.client(auto_ack=True)
    await client.connect([ROUTES])
    await wait_until(lambda: len(client.received) == 1)
    passes = mesh.server.pushes
    for revision in range(2, 52):
        mesh.source.revision = revision
        mesh.server.changed()
        await asyncio.sleep(0.005)
    await wait_until(lambda: client.applied.get(ROUTES) == "v51")
    await asyncio.sleep(0.3)
    assert mesh.server.pushes - passes <= 2
    assert len(client.received) - 1 <= 2


async def test_unchanged_content_is_not_sent_again(mesh: Harness) -> None:
    client = mesh.client(auto_ack=True)
    await client.connect()
    await wait_until(lambda: len(client.received) == len(PUSH_ORDER))
    mesh.server.changed()  # something changed, but not what this proxy receives
    await wait_until(lambda: mesh.server.pushes >= 1)
    await asyncio.sleep(0.2)
    assert len(client.received) == len(PUSH_ORDER)


async def test_a_reconnecting_proxy_is_resynced(mesh: Harness) -> None:
    client = mesh.client(auto_ack=True)
    await client.connect()
    await wait_until(lambda: len(client.applied) == len(PUSH_ORDER))
    applied = dict(client.applied)
    await client.close()
    await wait_until(lambda: not mesh.server.connections)
    mesh.source.revision = 3
    again = mesh.client(auto_ack=True)
    await again.connect(versions=applied)
    await wait_until(lambda: again.applied == {t: "v3" for t in PUSH_ORDER})
    assert [r.type_url for _, r in again.received] == list(PUSH_ORDER)


async def test_a_node_that_does_not_match_its_certificate_is_refused(mesh: Harness) -> None:
    client = mesh.client(namespace="default", cert_namespace="other")
    await client.connect([CLUSTERS])
    await asyncio.wait_for(client.closed.wait(), 30)
    assert client.error is not None and client.error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://cluster.local/ns/other/sa/default" in (client.error.details() or "")
    assert not mesh.server.connections


async def test_a_stream_without_a_client_certificate_is_refused(mesh: Harness) -> None:
    client = ProxyClient(f"127.0.0.1:{mesh.front.port}", mesh.ca.root_pem, None, None,  # type: ignore[arg-type]
                         node("default", "app-1"))
    mesh.clients.append(client)
    await client.connect([INBOUND, LISTENERS])
    await asyncio.wait_for(client.closed.wait(), 30)
    assert client.error is not None and client.error.code() == grpc.StatusCode.UNAUTHENTICATED
