"""``pods|services|nodes/{name}/proxy`` (apiserver.resource_proxy), directly and behind the real
``kubectl proxy`` as the Kubernetes Basics tutorial uses it, against tests/apiserver/test_proxy.py's
``kubelet_cluster``: the pod ``single`` gets the address 127.0.0.1, where the test serves HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kubelab.testing import kubectl_binary
from tests.apiserver.test_proxy import KubeletCluster, kubelet_cluster

pytestmark = pytest.mark.kubectl


async def _app_handler(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=f"{request.method} {request.path_qs} {body.decode()} {request.headers.get('X-Test', '')}",
                        headers={"X-Served-By": "pod"}, status=201 if request.method == "POST" else 200)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[KubeletCluster, int]]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _app_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    try:
        async with kubelet_cluster(tmp_path) as running:
            api = running.api
            status, body = await api.request("PATCH", "/api/v1/namespaces/default/pods/single/status",
                                             {"status": {"phase": "Running", "podIP": "127.0.0.1"}},
                                             content_type="application/merge-patch+json")
            assert status == 200, body
            for name, addresses in (("web", [{"ip": "127.0.0.1"}]), ("empty", [])):
                status, body = await api.request("POST", "/api/v1/namespaces/default/services", {
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}})
                assert status == 201, body
                subsets = [{"addresses": addresses, "ports": [{"name": "http", "port": port}]}] if addresses else []
                status, body = await api.request("POST", "/api/v1/namespaces/default/endpoints", {
                    "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name}, "subsets": subsets})
                assert status in (200, 201), body
            yield running, port
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("method", "path", "code", "text"), [
    pytest.param("GET", "namespaces/default/pods/single:{port}/proxy/hello?x=1", 200, "GET /hello?x=1", id="pod"),
    pytest.param("GET", "namespaces/default/pods/http:single:{port}/proxy/", 200, "GET /", id="pod-scheme"),
    pytest.param("POST", "namespaces/default/services/web/proxy/submit", 201, "POST /submit payload",
                 id="service-first-port"),
    pytest.param("GET", "namespaces/default/services/web:http/proxy/a/b", 200, "GET /a/b", id="service-named-port"),
    pytest.param("GET", "nodes/node-a/proxy/healthz", 200, "ok", id="node-kubelet"),
])
async def test_proxy_reaches_the_target(cluster: tuple[KubeletCluster, int], method: str, path: str, code: int,
                                        text: str) -> None:
    running, port = cluster
    status, body = await running.api.request(method, "/api/v1/" + path.format(port=port),
                                             raw=b"payload" if method == "POST" else None,
                                             headers={"X-Test": "kept"})
    assert status == code, body
    assert str(body).startswith(text), body
    if "pods" in path or "services" in path:
        assert str(body).endswith("kept"), body


@pytest.mark.parametrize(("path", "code", "message"), [
    pytest.param("namespaces/default/services/empty/proxy/", 503, 'no endpoints available for service "empty"',
                 id="no-endpoints"),
    pytest.param("namespaces/default/pods/multi/proxy/", 503, 'pod "multi" has no IP address', id="no-ip"),
    pytest.param("namespaces/default/pods/nosuch:80/proxy/", 404, 'pods "nosuch" not found', id="no-pod"),
    pytest.param("namespaces/default/pods/single:http/proxy/", 400, 'no container port named "http"',
                 id="unknown-port-name"),
    pytest.param("namespaces/default/pods/a:b:c:d/proxy/", 400, "invalid proxy name", id="bad-name"),
])
async def test_proxy_refusals(cluster: tuple[KubeletCluster, int], path: str, code: int, message: str) -> None:
    running, _port = cluster
    status, body = await running.api.request("GET", "/api/v1/" + path)
    assert status == code, body
    assert message in body["message"]


@contextlib.asynccontextmanager
async def _kubectl_proxy(running: KubeletCluster) -> AsyncIterator[int]:
    env = {**os.environ, "KUBECONFIG": str(running.kubeconfig)}
    process = await asyncio.create_subprocess_exec(
        str(kubectl_binary()), "proxy", "--port=0", f"--cache-dir={running.kubeconfig.parent / 'kc-proxy'}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line.startswith("Starting to serve on 127.0.0.1:"), line
        yield int(line.rsplit(":", 1)[1])
    finally:
        process.terminate()
        await process.wait()


async def test_kubectl_proxy_and_curl_as_in_the_basics_tutorial(cluster: tuple[KubeletCluster, int]) -> None:
    running, port = cluster
    async with _kubectl_proxy(running) as local, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{local}/api/v1/namespaces/default"
        async with session.get(f"{base}/pods/single:{port}/proxy/") as response:
            assert (response.status, await response.text()) == (200, "GET /  ")
            assert response.headers["X-Served-By"] == "pod"
        async with session.get(f"{base}/services/web:80/proxy/index.html") as response:
            assert (response.status, await response.text()) == (200, "GET /index.html  ")
