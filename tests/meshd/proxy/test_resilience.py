"""Through real sidecars on loopback: outlier detection ejects a failing endpoint and brings it back;
mirroring sends a -shadow copy whose failure the client never sees."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from meshd.api.resources import Inbound, Mirror, OutlierDetection, Route, WeightedCluster, cluster_name
from meshd.proxy.proxy import Proxy
from tests.meshd.proxy.harness import NAME, Mesh, wait_until

FQDN = "reviews.default.svc.cluster.local"
ALL = cluster_name(FQDN, 9080)
V1, V2 = cluster_name(FQDN, 9080, "v1"), cluster_name(FQDN, 9080, "v2")


async def call(http: aiohttp.ClientSession, client: Proxy, ip: str, *, method: str = "GET",
               data: bytes = b"") -> tuple[int, str]:
    headers = {"host": "reviews:9080", "x-kubelab-original-dst": f"{ip}:9080"}
    async with http.request(method, f"http://127.0.0.1:{client.ports['outbound']}/r", headers=headers,
                            data=data) as resp:
        return resp.status, (await resp.text())


async def test_an_endpoint_failing_5_times_is_ejected_then_comes_back(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    failures = {"left": 5}

    async def flaky(request: web.Request) -> web.Response:
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=503, text="flaky")
        return web.Response(text=request.app[NAME])

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text=request.app[NAME])

    endpoints = []
    for name, handler in (("reviews-bad", flaky), ("reviews-good", healthy)):
        port = await mesh.app(name, handler)
        server = await mesh.proxy(name, service_account="reviews", app_port=port, labels={"app": "reviews"})
        endpoints.append(mesh.endpoint(server, port, name="reviews"))
    client = await mesh.proxy("productpage", seed=3)
    ip = mesh.cluster_ip()
    policy = OutlierDetection(consecutive_5xx=5, interval_ms=100, base_ejection_time_ms=1500,
                              max_ejection_percent=100.0)
    route = Route(name="all", destinations=(WeightedCluster(ALL),))  # no retries: each request is one try
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, {"": endpoints}, [route],
                                               outlier_detection=policy)
    mesh.push(clusters, [rc], [listener], Inbound(default_mtls_mode="STRICT"))
    await mesh.ready()

    seen: list[tuple[int, str]] = []
    while failures["left"]:  # round robin: every other request reaches the failing endpoint
        seen.append(await call(http, client, ip))
    assert seen.count((503, "flaky")) == 5
    detector = client.store.snapshot.clusters[ALL].outlier
    assert detector is not None and detector.ejected == 1
    after = [await call(http, client, ip) for _ in range(10)]
    assert after == [(200, "reviews-good")] * 10  # the ejected endpoint gets nothing
    metrics = client.telemetry.render()
    assert f'envoy_cluster_outlier_detection_ejections_active{{cluster_name="{ALL}"}} 1' in metrics
    assert f'envoy_cluster_outlier_detection_ejections_enforced_consecutive_5xx{{cluster_name="{ALL}"}} 1' in metrics

    back: list[str] = []

    async def reached_again() -> None:
        while "reviews-bad" not in back:
            status, body = await call(http, client, ip)
            assert status == 200
            back.append(body)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(reached_again(), timeout=60)  # after baseEjectionTime it is back (and healthy)
    assert detector.ejected == 0


async def mirrored(mesh: Mesh, mirror_handler: Any, mirrors: tuple[Mirror, ...] | None = None,
                   ) -> tuple[Proxy, str]:
    """reviews v1 (primary) and v2 (the mirror), each behind its sidecar; the route mirrors to v2."""
    endpoints = {}
    for version, handler in (("v1", None), ("v2", mirror_handler)):
        port = await mesh.app(f"reviews-{version}", handler) if handler else await mesh.app(f"reviews-{version}")
        server = await mesh.proxy(f"reviews-{version}", service_account="reviews", app_port=port,
                                  labels={"app": "reviews", "version": version})
        endpoints[version] = [mesh.endpoint(server, port, name="reviews", version=version)]
    client = await mesh.proxy("productpage", seed=5)
    ip = mesh.cluster_ip()
    route = Route(name="mirrored", destinations=(WeightedCluster(V1),),
                  mirrors=mirrors if mirrors is not None else (Mirror(V2),))
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, endpoints, [route])
    mesh.push(clusters, [rc], [listener], Inbound(default_mtls_mode="STRICT"))
    await mesh.ready()
    return client, ip


async def test_the_mirror_gets_a_copy_with_a_shadow_host(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    copies: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        copies.append({"host": request.headers.get("host"), "method": request.method, "path": request.path,
                       "body": await request.read()})
        return web.Response(status=500, text="the mirror's answer is ignored")

    client, ip = await mirrored(mesh, record)
    status, body = await call(http, client, ip, method="POST", data=b"x" * 3000)
    assert status == 200 and '"app": "reviews-v1"' in body and '"body_len": 3000' in body
    await wait_until(lambda: len(copies) == 1, what="the mirrored copy")
    (copy,) = copies
    assert (copy["host"], copy["method"], copy["path"], copy["body"]) == ("reviews-shadow:9080", "POST", "/r",
                                                                        b"x" * 3000)
    await wait_until(lambda: client.http.mirroring.sent == 1, what="the shadow to finish")


async def test_a_slow_or_failing_mirror_never_touches_the_client(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    release = asyncio.Event()
    arrived: list[str] = []

    async def stuck(request: web.Request) -> web.Response:
        arrived.append(request.headers.get("host", ""))
        await release.wait()
        raise web.HTTPInternalServerError()

    missing = Mirror(cluster_name("ratings.default.svc.cluster.local", 9080))  # no such cluster
    client, ip = await mirrored(mesh, stuck, (Mirror(V2), missing))
    for _ in range(3):
        status, body = await call(http, client, ip)
        assert status == 200 and '"app": "reviews-v1"' in body
    await wait_until(lambda: len(arrived) == 3, what="copies at the stuck mirror")
    assert not release.is_set()  # the client had all its answers while every copy was still waiting
    mirroring = client.http.mirroring
    assert mirroring.failed == 3  # the copies to the missing cluster
    release.set()
    await wait_until(lambda: mirroring.sent == 3 and not mirroring.tasks, what="the shadows to end")
    assert mirroring.failed == 3
