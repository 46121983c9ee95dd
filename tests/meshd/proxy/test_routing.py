"""Routing through the sidecars: weighted split, header matches, faults, timeouts, retries, load balancing."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
from typing import Any

import aiohttp
from aiohttp import web

from meshd.api.resources import (
    Abort,
    Cluster,
    Delay,
    Endpoint,
    Fault,
    Inbound,
    RetryPolicy,
    Route,
    RouteMatch,
    StringMatch,
    WeightedCluster,
    cluster_name,
)
from meshd.proxy.balancer import Balancer
from meshd.proxy.httpproxy import retriable_failure, retriable_response
from meshd.proxy.proxy import Proxy
from tests.meshd.proxy.harness import Handler, Mesh

FQDN = "reviews.default.svc.cluster.local"
V1 = cluster_name(FQDN, 9080, "v1")
V2 = cluster_name(FQDN, 9080, "v2")


async def canary(mesh: Mesh, routes: list[Route], handler: Handler | None = None,
                 **cluster_kw: Any) -> tuple[Proxy, str]:
    """reviews v1 and v2 (each an app behind its own sidecar), a client sidecar, the given routes."""
    endpoints = {}
    for version in ("v1", "v2"):
        port = await mesh.app(f"reviews-{version}", handler) if handler else await mesh.app(f"reviews-{version}")
        server = await mesh.proxy(f"reviews-{version}", service_account="reviews", app_port=port,
                                  labels={"app": "reviews", "version": version})
        endpoints[version] = [mesh.endpoint(server, port, name="reviews", version=version)]
    client = await mesh.proxy("productpage", seed=7)
    ip = mesh.cluster_ip()
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, endpoints, routes, **cluster_kw)
    mesh.push(clusters, [rc], [listener], Inbound(default_mtls_mode="STRICT"))
    for proxy in mesh.proxies:
        await proxy.wait_ready()
    return client, ip


async def get(http: aiohttp.ClientSession, client: Proxy, ip: str, path: str = "/",
              headers: dict[str, str] | None = None) -> tuple[int, str]:
    h = {"host": "reviews:9080", "x-kubelab-original-dst": f"{ip}:9080", **(headers or {})}
    async with http.get(f"http://127.0.0.1:{client.ports['outbound']}{path}", headers=h) as resp:
        body = await resp.read()
        app = (await resp.json())["app"] if resp.status == 200 else body.decode()
        return resp.status, app


def within_3_sigma(count: int, n: int, p: float) -> bool:
    sigma = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 3 * sigma


async def test_weighted_split_90_10_within_3_sigma(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    route = Route(name="canary", destinations=(WeightedCluster(V1, 90), WeightedCluster(V2, 10)))
    client, ip = await canary(mesh, [route])
    n = 2000
    results = []
    for start in range(0, n, 50):
        results += await asyncio.gather(*(get(http, client, ip) for _ in range(start, start + 50)))
    assert all(status == 200 for status, _ in results)
    v2 = sum(1 for _, app in results if app == "reviews-v2")
    assert within_3_sigma(v2, n, 0.1), v2
    assert v2 > 0


async def test_header_match_routes_one_user(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    routes = [Route(name="jason", matches=(RouteMatch(headers={"end-user": StringMatch(exact="jason")}),),
                    destinations=(WeightedCluster(V2),)),
              Route(name="uri", matches=(RouteMatch(uri=StringMatch(regex="/v2/[0-9]+")),),
                    destinations=(WeightedCluster(V2),)),
              Route(name="default", destinations=(WeightedCluster(V1),))]
    client, ip = await canary(mesh, routes)
    for _ in range(10):
        assert await get(http, client, ip, headers={"end-user": "jason"}) == (200, "reviews-v2")
        assert await get(http, client, ip, headers={"end-user": "json"}) == (200, "reviews-v1")
        assert await get(http, client, ip) == (200, "reviews-v1")
        assert await get(http, client, ip, "/v2/42") == (200, "reviews-v2")
        assert await get(http, client, ip, "/v2/42/x") == (200, "reviews-v1")  # regex is a full match


async def test_fault_abort_and_delay_percentages(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    routes = [Route(name="jason", matches=(RouteMatch(headers={"end-user": StringMatch(exact="jason")}),),
                    destinations=(WeightedCluster(V1),), fault=Fault(delay=Delay(fixed_delay_ms=300))),
              Route(name="half-abort", matches=(RouteMatch(headers={"end-user": StringMatch(exact="abort")}),),
                    destinations=(WeightedCluster(V1),), fault=Fault(abort=Abort(http_status=500, percentage=50))),
              Route(name="half-delay", matches=(RouteMatch(headers={"end-user": StringMatch(exact="slow")}),),
                    destinations=(WeightedCluster(V1),), fault=Fault(delay=Delay(fixed_delay_ms=1000,
                                                                                 percentage=50))),
              Route(name="default", destinations=(WeightedCluster(V1),))]
    client, ip = await canary(mesh, routes)
    n = 400
    aborts = await asyncio.gather(*(get(http, client, ip, headers={"end-user": "abort"}) for _ in range(n)))
    failed = sum(1 for status, _ in aborts if status == 500)
    assert {status for status, _ in aborts} == {200, 500}
    assert within_3_sigma(failed, n, 0.5), failed

    async def timed(user: str) -> float:
        start = time.monotonic()
        assert (await get(http, client, ip, headers={"end-user": user}))[0] == 200
        return time.monotonic() - start

    jason = await asyncio.gather(*(timed("jason") for _ in range(20)))
    assert min(jason) >= 0.29
    slow: list[float] = []
    for _ in range(5):  # batches of 20, so an undelayed request never waits 1 s behind the others
        slow += await asyncio.gather(*(timed("slow") for _ in range(20)))
    # delayed requests carry Envoy's DI flag; jason's 20 are all delayed, the "slow" user's about half
    flagged = sum(series.count for labels, series in client.telemetry.http.items() if labels[-2] == "DI")
    slow_delayed = flagged - len(jason)
    assert within_3_sigma(slow_delayed, 100, 0.5), slow_delayed
    # each of them took at least the delay as the client measured it (a lower bound: load on the machine
    # can only add time, so this holds on a busy machine too)
    assert sum(1 for t in slow if t >= 0.99) >= slow_delayed
    # other users are unaffected: no fault on the default route (no 300 ms wait, no abort)
    others = await asyncio.gather(*(get(http, client, ip, headers={"end-user": "mary"}) for _ in range(50)))
    assert all(status == 200 for status, _ in others)
    stats = client.telemetry.render()
    assert 'response_code="500",grpc_response_status="",response_flags="FI"' in stats


async def test_route_timeout_answers_504(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    async def slow(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(5)
        return web.Response(text='{"app": "x"}', content_type="application/json")

    route = Route(name="t", destinations=(WeightedCluster(V1),), timeout_ms=200)
    client, ip = await canary(mesh, [route], slow)
    start = time.monotonic()
    status, body = await get(http, client, ip, "/slow")
    assert status == 504 and "timeout" in body
    assert time.monotonic() - start < 4.5  # the route's 200 ms, not the app's 5 s
    assert (await get(http, client, ip, "/fast"))[0] == 200


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_retries_connect_failure_to_a_dead_endpoint(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    port = await mesh.app("reviews-v1")
    server = await mesh.proxy("reviews-v1", service_account="reviews", app_port=port)
    live = mesh.endpoint(server, port, name="reviews")
    dead = Endpoint(address="127.0.0.1", port=dead_port(), labels={"app": "reviews"}, identity=live.identity)
    client = await mesh.proxy("productpage")
    ip = mesh.cluster_ip()
    with_retries = Route(name="r", destinations=(WeightedCluster(V1),), retries=RetryPolicy())
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, {"v1": [dead, live]}, [with_retries])
    mesh.push(clusters, [rc], [listener])
    await mesh.ready()
    results = [await get(http, client, ip) for _ in range(20)]
    assert results == [(200, "reviews-v1")] * 20
    # without retries, the dead endpoint's share fails with 503 (UF)
    no_retries = Route(name="r", destinations=(WeightedCluster(V1),))
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080, {"v1": [dead, live]}, [no_retries])
    version = mesh.meshd.push("type.kubelab.dev/mesh.RouteConfig", [rc])
    await client.xds.wait_for(lambda: client.store.versions.get("type.kubelab.dev/mesh.RouteConfig") == version, 20)
    statuses = [(await get(http, client, ip))[0] for _ in range(20)]
    assert statuses.count(503) == 10 and statuses.count(200) == 10


async def test_retry_on_5xx_gets_the_second_try(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    seen: set[str] = set()

    async def flaky(request: web.Request) -> web.Response:
        rid = request.headers["x-request-id"]
        if rid not in seen:
            seen.add(rid)
            return web.Response(status=503)
        return web.json_response({"app": "ok"})

    route = Route(name="r", destinations=(WeightedCluster(V1),), retries=RetryPolicy(attempts=2, retry_on=("5xx",)))
    client, ip = await canary(mesh, [route], flaky)
    assert [await get(http, client, ip) for _ in range(5)] == [(200, "ok")] * 5
    assert len(seen) == 5


def test_retry_on_classes() -> None:
    assert retriable_failure(frozenset({"connect-failure"}), connect=True)
    assert not retriable_failure(frozenset({"connect-failure"}), connect=False)
    assert retriable_failure(frozenset({"reset"}), connect=False)
    assert retriable_failure(frozenset({"5xx"}), connect=True)
    assert retriable_response(frozenset({"gateway-error"}), 503, "")
    assert not retriable_response(frozenset({"gateway-error"}), 500, "")
    assert retriable_response(frozenset({"retriable-4xx"}), 409, "")
    assert retriable_response(frozenset({"418"}), 418, "")
    assert retriable_response(frozenset({"unavailable"}), 200, "14")
    assert retriable_response(frozenset({"cancelled"}), 200, "1")
    assert not retriable_response(frozenset({"unavailable"}), 200, "0")


def test_least_request_prefers_the_less_busy_endpoint() -> None:
    eps = tuple(Endpoint(address="127.0.0.1", port=p) for p in (1, 2))
    cluster = Cluster(name="c", service="s", port=1, protocol="http", endpoints=eps, lb_policy="LEAST_REQUEST")
    balancer = Balancer(cluster, random.Random(3))
    for _ in range(5):
        balancer.started(eps[0])
    picks = [balancer.pick() for _ in range(200)]
    # P2C: the busy endpoint wins only when both draws are it (~25 %)
    assert picks.count(eps[1]) > 120
    rr = Balancer(Cluster(name="c", service="s", port=1, protocol="http", endpoints=eps), random.Random(1))
    order = [rr.pick() for _ in range(4)]
    assert order[0] != order[1] and order[0] == order[2]
    assert rr.pick(exclude=[eps[0]]) == eps[1]
