"""The proxy's control-plane side: readiness, ACK/NACK, meshd going away and coming back, certificate rotation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from meshd.api.protocol import DiscoveryResponse, deserializer, serializer
from meshd.api.resources import (
    CLUSTERS,
    INBOUND,
    LISTENERS,
    PUSH_ORDER,
    ROUTES,
    Inbound,
    InboundPort,
    Route,
    RouteMatch,
    StringMatch,
    WeightedCluster,
)
from meshd.proxy.proxy import Proxy
from tests.meshd.proxy.harness import Mesh, wait_until


def test_discovery_response_resources_round_trip() -> None:
    message = DiscoveryResponse(type_url=ROUTES, version_info="v1", nonce="n1", resources=({"name": "9080"},))
    assert deserializer(DiscoveryResponse)(serializer(message)) == message


async def ready_status(http: aiohttp.ClientSession, proxy: Proxy) -> int:
    async with http.get(f"http://127.0.0.1:{proxy.ports['ready']}/healthz/ready") as resp:
        return resp.status


async def test_ready_only_after_certificate_and_every_type(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    mesh.meshd.refuse_certify = True
    proxy = await mesh.proxy("sleep", ready_hold_seconds=0.2)
    mesh.push([], [], [], Inbound())
    await wait_until(lambda: mesh.meshd.certify_attempts >= 2, what="a retried CSR")
    assert await ready_status(http, proxy) == 503
    assert proxy.store.versions == {}  # no stream before a certificate (mTLS to meshd)
    mesh.meshd.refuse_certify = False
    await wait_until(lambda: proxy.certs.leaf is not None, what="certificate")
    await wait_until(lambda: proxy.store.complete, what="config")
    assert await ready_status(http, proxy) == 200

    other = await mesh.proxy("other", ready_hold_seconds=0.2)
    mesh.meshd.versions.pop(INBOUND)  # a meshd that has not sent the Inbound type yet
    mesh.meshd.resources.pop(INBOUND)
    await wait_until(lambda: all(t in other.store.versions for t in PUSH_ORDER[:3]), what="three types")
    assert await ready_status(http, other) == 503
    async with http.get(f"http://127.0.0.1:{other.ports['status']}/healthz/ready") as resp:
        assert resp.status == 503 and "Inbound" in await resp.text()
    mesh.meshd.push(INBOUND, [Inbound()])
    await wait_until(lambda: other.ready, what="ready")
    assert await ready_status(http, other) == 200


async def test_a_ready_request_before_readiness_is_answered_the_moment_the_proxy_is_ready(
        mesh: Mesh, http: aiohttp.ClientSession) -> None:
    # The kubelet's startup probe arriving early gets its 200 as soon as the proxy is ready
    # (not a whole periodSeconds later); the hold is far longer than the test's own wait.
    mesh.meshd.refuse_certify = True
    proxy = await mesh.proxy("sleep", ready_hold_seconds=600)
    mesh.push([], [], [], Inbound())
    probe = asyncio.create_task(ready_status(http, proxy))
    await wait_until(lambda: mesh.meshd.certify_attempts >= 2, what="a retried CSR")
    assert not probe.done()
    mesh.meshd.refuse_certify = False
    assert await asyncio.wait_for(probe, 60) == 200
    assert proxy.ready


async def test_a_ready_request_held_past_the_limit_gets_503_with_the_reason(
        mesh: Mesh, http: aiohttp.ClientSession) -> None:
    mesh.meshd.refuse_certify = True
    proxy = await mesh.proxy("sleep", ready_hold_seconds=0.3)
    async with http.get(f"http://127.0.0.1:{proxy.ports['status']}/healthz/ready") as resp:
        assert resp.status == 503 and "no workload certificate yet" in await resp.text()


async def test_invalid_regex_is_nacked_and_old_routing_kept(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    port = await mesh.app("reviews")
    server = await mesh.proxy("reviews", app_port=port)
    client = await mesh.proxy("sleep")
    ip = mesh.cluster_ip()
    good = [Route(name="only-api", matches=(RouteMatch(uri=StringMatch(prefix="/api")),),
                  destinations=(WeightedCluster("outbound|9080||reviews.default.svc.cluster.local"),))]
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, {"": [mesh.endpoint(server, port, name="reviews")]},
                                               good)
    mesh.push(clusters, [rc], [listener], Inbound(ports=(InboundPort(port, "http", "STRICT"),)))
    await mesh.ready()
    good_version = client.store.versions[ROUTES]

    async def status(path: str) -> int:
        async with http.get(f"http://127.0.0.1:{client.ports['outbound']}{path}",
                            headers={"host": "reviews", "x-kubelab-original-dst": f"{ip}:9080"}) as resp:
            return resp.status

    assert (await status("/api/x"), await status("/other")) == (200, 404)
    bad = [Route(name="broken", matches=(RouteMatch(uri=StringMatch(regex="/api/(")),),
                 destinations=(WeightedCluster("outbound|9080||reviews.default.svc.cluster.local"),))]
    _, bad_rc, _ = mesh.http_service("reviews", ip, 9080, {"": []}, bad)
    bad_version = mesh.meshd.push(ROUTES, [bad_rc])
    await wait_until(lambda: any(r.type_url == ROUTES for r in mesh.meshd.nacks()), what="NACK")
    nack = next(r for r in mesh.meshd.nacks() if r.type_url == ROUTES)
    assert nack.error_detail is not None and "invalid regular expression" in nack.error_detail.message
    assert "virtual_hosts[0].routes[0].matches[0].uri" in nack.error_detail.message
    assert nack.version_info == good_version  # a NACK carries the version still in force
    assert client.store.versions[ROUTES] == good_version != bad_version
    assert (await status("/api/x"), await status("/other")) == (200, 404)
    assert client.xds.last_nack is not None and client.xds.last_nack.version == bad_version


async def test_meshd_away_keeps_serving_then_resyncs(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    port = await mesh.app("reviews")
    server = await mesh.proxy("reviews", app_port=port)
    client = await mesh.proxy("sleep")
    ip = mesh.cluster_ip()
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, {"": [mesh.endpoint(server, port, name="reviews")]})
    mesh.push(clusters, [rc], [listener], Inbound(ports=(InboundPort(port, "http", "STRICT"),)))
    await mesh.ready()
    url = f"http://127.0.0.1:{client.ports['outbound']}/"
    headers = {"host": "reviews", "x-kubelab-original-dst": f"{ip}:9080"}
    versions = dict(client.store.versions)
    streams = client.xds.streams

    await mesh.meshd.stop()
    await wait_until(lambda: not client.xds.connected.is_set(), what="stream lost")
    for _ in range(20):
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200
    assert client.ready

    requests_before = len(mesh.meshd.requests)
    await mesh.meshd.start()
    await wait_until(lambda: client.xds.streams > streams and len(mesh.meshd.requests) >= requests_before + 4,
                     what="reconnect")
    resync = [r for r in mesh.meshd.requests[requests_before:] if r.node is not None or not r.response_nonce]
    client_first = [r for r in resync if r.version_info == versions.get(r.type_url)]
    assert {r.type_url for r in client_first} >= set(PUSH_ORDER)  # the last applied versions, per type
    # a change after the return is applied
    moved_clusters, moved, moved_listener = mesh.http_service("reviews", ip, 9081,
                                                              {"": [mesh.endpoint(server, port, name="reviews")]})
    mesh.meshd.push(CLUSTERS, clusters + moved_clusters)
    mesh.meshd.push(ROUTES, [rc, moved])
    version = mesh.meshd.push(LISTENERS, [listener, moved_listener])
    await wait_until(lambda: client.store.versions.get(LISTENERS) == version, what="new listeners")
    async with http.get(url, headers={"host": "reviews", "x-kubelab-original-dst": f"{ip}:9081"}) as resp:
        assert resp.status == 200


async def test_rotation_under_load_fails_no_request(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    mesh = await Mesh(tmp_path, leaf_seconds=3).start()
    try:
        port = await mesh.app("reviews")
        server = await mesh.proxy("reviews", app_port=port)
        client = await mesh.proxy("sleep")
        ip = mesh.cluster_ip()
        clusters, rc, listener = mesh.http_service("reviews", ip, 9080,
                                                   {"": [mesh.endpoint(server, port, name="reviews")]})
        mesh.push(clusters, [rc], [listener], Inbound(ports=(InboundPort(port, "http", "STRICT"),)))
        await mesh.ready()
        url = f"http://127.0.0.1:{client.ports['outbound']}/"
        headers = {"host": "reviews", "x-kubelab-original-dst": f"{ip}:9080"}
        statuses: list[int] = []
        stop = asyncio.Event()

        async def worker() -> None:
            while not stop.is_set():
                async with http.get(url, headers=headers) as resp:
                    await resp.read()
                    statuses.append(resp.status)

        workers = [asyncio.create_task(worker()) for _ in range(8)]
        await wait_until(lambda: client.certs.rotations >= 4 and server.certs.rotations >= 4, timeout=60,
                         what="four certificates each")
        stop.set()
        await asyncio.gather(*workers)
        assert len(statuses) > 50 and set(statuses) == {200}
        # the sidecar-to-sidecar connections were re-established with the new certificates
        assert client.http.pool.opened >= 1
        assert "istio_agent_cert_expiry_seconds" in client.telemetry.render()
        assert 0 < client.certs.expiry_seconds() <= 3
    finally:
        await mesh.close()


def test_push_order_is_what_the_fake_serves() -> None:
    assert PUSH_ORDER == (CLUSTERS, ROUTES, LISTENERS, INBOUND)


def test_leaf_validity_matches_cryptography() -> None:
    from meshd.proxy.keygen import leaf_validity
    from tests.meshd.fakes import MeshCA

    ca = MeshCA()
    chain, _ = ca.issue_spiffe("spiffe://cluster.local/ns/a/sa/b", 1234)
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(chain)
    assert leaf_validity(chain.decode()) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
