"""Telemetry through two sidecars: Istio's metrics and labels, the access log, trace headers, merged app metrics."""

from __future__ import annotations

import io
import re
import socket
from typing import Any

import aiohttp
from aiohttp import web

from meshd.api.resources import Inbound, InboundPort
from meshd.proxy.proxy import Proxy
from tests.meshd.proxy.harness import Mesh


async def pair(mesh: Mesh, **server_kw: Any) -> tuple[Proxy, Proxy, str, int]:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="# TYPE app_custom_total counter\napp_custom_total 7\n")

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    port = await mesh.app("reviews", routes={"/metrics": metrics, "/healthy": healthy})
    server = await mesh.proxy("reviews-v1", service_account="reviews", app_port=port,
                              labels={"app": "reviews", "version": "v1"}, **server_kw)
    client = await mesh.proxy("sleep", labels={"app": "sleep", "version": "v9"})
    ip = mesh.cluster_ip()
    clusters, rc, listener = mesh.http_service("reviews", ip, 9080,
                                               {"": [mesh.endpoint(server, port, name="reviews")]})
    mesh.push(clusters, [rc], [listener], Inbound(ports=(InboundPort(port, "http", "STRICT"),)))
    await client.wait_ready()
    await server.wait_ready()
    return client, server, ip, port


async def call(http: aiohttp.ClientSession, client: Proxy, ip: str, path: str = "/productpage",
               headers: dict[str, str] | None = None) -> dict[str, str]:
    h = {"host": "reviews:9080", "x-kubelab-original-dst": f"{ip}:9080", "user-agent": "curl/8.0", **(headers or {})}
    async with http.get(f"http://127.0.0.1:{client.ports['outbound']}{path}", headers=h) as resp:
        assert resp.status == 200
        return dict((await resp.json())["headers"])


async def scrape(http: aiohttp.ClientSession, proxy: Proxy) -> str:
    async with http.get(f"http://127.0.0.1:{proxy.ports['status']}/stats/prometheus") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_istio_metrics_with_labels_on_both_sides(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    client, server, ip, _ = await pair(mesh)
    for _ in range(3):
        await call(http, client, ip)
    source = await scrape(http, client)
    expected_source = (
        'istio_requests_total{reporter="source",source_workload="sleep",source_workload_namespace="default",'
        'source_principal="spiffe://cluster.local/ns/default/sa/sleep",source_app="sleep",source_version="v9",'
        'source_canonical_service="sleep",source_canonical_revision="v9",destination_workload="reviews-v1",'
        'destination_workload_namespace="default",destination_principal="spiffe://cluster.local/ns/default/sa/reviews",'
        'destination_app="reviews",destination_version="v1",destination_service="reviews.default.svc.cluster.local",'
        'destination_service_name="reviews",destination_service_namespace="default",'
        'destination_canonical_service="reviews",destination_canonical_revision="v1",request_protocol="http",'
        'response_code="200",grpc_response_status="",response_flags="-",connection_security_policy="unknown"} 3')
    assert expected_source in source
    dest = await scrape(http, server)
    assert ('istio_requests_total{reporter="destination",source_workload="sleep",source_workload_namespace="default",'
            'source_principal="spiffe://cluster.local/ns/default/sa/sleep",source_app="sleep",source_version="v9"'
            in dest)
    assert 'destination_service="reviews.default.svc.cluster.local"' in dest
    assert 'connection_security_policy="mutual_tls"} 3' in dest
    for name in ("istio_request_duration_milliseconds_bucket", "istio_request_bytes_bucket",
                 "istio_response_bytes_bucket"):
        assert name in source and name in dest
    assert re.search(r'istio_request_duration_milliseconds_bucket\{reporter="source",.*le="\+Inf"\} 3', source)
    assert 'le="0.5"' in source and 'le="3.6e+06"' in source
    assert "istio_agent_cert_expiry_seconds" in source


async def test_access_log_line_in_istio_format(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    client, _, ip, _port = await pair(mesh)
    await call(http, client, ip, "/reviews/1?x=y", {"x-request-id": "req-42"})
    client.telemetry.flush()
    stream = client.telemetry._log_stream
    assert isinstance(stream, io.StringIO)
    line = stream.getvalue().splitlines()[-1]
    pattern = (r'^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /reviews/1\?x=y HTTP/1\.1" 200 - via_upstream - "-" '
               r'0 \d+ \d+ - "-" "curl/8\.0" "req-42" "reviews:9080" "127\.0\.0\.1:\d+" '
               r'outbound\|9080\|\|reviews\.default\.svc\.cluster\.local - '
               r'127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ - default$')
    assert re.match(pattern, line), line


async def test_trace_headers_created_and_propagated(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    client, _, ip, _ = await pair(mesh)
    seen = await call(http, client, ip)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", seen["x-request-id"])
    trace = seen["x-b3-traceid"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace) and re.fullmatch(r"[0-9a-f]{16}", seen["x-b3-spanid"])
    assert seen["x-b3-sampled"] == "1"
    assert seen["traceparent"] == f"00-{trace}-{seen['x-b3-spanid']}-01"
    # what the client sent is kept; the missing B3 headers are derived from traceparent
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    seen = await call(http, client, ip, headers={"x-request-id": "mine", "traceparent": parent})
    assert seen["x-request-id"] == "mine" and seen["traceparent"] == parent
    assert seen["x-b3-traceid"] == "0af7651916cd43dd8448eb211c80319c"
    assert seen["x-b3-spanid"] == "b7ad6b7169203331"


async def test_merged_app_metrics_and_app_probes(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]

    async def start() -> Proxy:
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text="app_custom_total 7\n")

        async def healthy(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        port = await mesh.app("reviews", routes={"/metrics": metrics, "/healthy": healthy})
        return await mesh.proxy(
            "reviews", app_port=port,
            prometheus_annotations={"scrape": "true", "port": str(port), "path": "/metrics"},
            app_probers={"/app-health/reviews/readyz": {"httpGet": {"path": "/healthy", "port": port}},
                         "/app-health/reviews/livez": {"tcpSocket": {"port": port}},
                         "/app-health/reviews/startupz": {"httpGet": {"path": "/healthy", "port": dead},
                                                          "timeoutSeconds": 1}})

    proxy = await start()
    mesh.push([], [], [], Inbound())
    await proxy.wait_ready()
    text = await scrape(http, proxy)
    assert "app_custom_total 7" in text and "istio_agent_cert_expiry_seconds" in text
    base = f"http://127.0.0.1:{proxy.ports['status']}/app-health/reviews"
    results = {}
    for kind in ("readyz", "livez", "startupz", "nothing"):
        async with http.get(f"{base}/{kind}") as resp:
            results[kind] = resp.status
    assert results == {"readyz": 200, "livez": 200, "startupz": 503, "nothing": 404}
