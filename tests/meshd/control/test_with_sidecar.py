"""meshd with the real sidecar (``meshd.proxy.Proxy``): certified by token, configured, follows a change.

A real apiserver and meshd; the sidecar runs in this process on loopback with an explicit
destination header standing in for iptables (as the proxy's own tests do). The Service's
Endpoints name a plain app on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kubelab.testing import RunningApiServer
from machinery.client import ApiClient
from machinery.resources import ENDPOINTSLICES, SERVICES
from meshd.api.resources import PUSH_ORDER
from meshd.control.crds import VIRTUAL_SERVICES
from meshd.control.server import Meshd
from meshd.control.settings import MeshdSettings
from meshd.proxy.proxy import Proxy
from meshd.proxy.settings import ProxySettings
from tests.meshd.control.test_meshd import wait_until


@pytest.fixture
async def parts(kubelab_apiserver: RunningApiServer, tmp_path: Path) -> AsyncIterator[tuple[Meshd, ApiClient]]:
    meshd = Meshd(MeshdSettings(kubeconfig=kubelab_apiserver.kubeconfig, state_dir=tmp_path / "meshd",
                                discovery_port=0, webhook_port=0, debug_port=0))
    await meshd.start()
    client = ApiClient.from_kubeconfig(kubelab_apiserver.kubeconfig)
    try:
        yield meshd, client
    finally:
        await client.close()
        await meshd.stop()


async def _app() -> tuple[web.AppRunner, int]:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello from reviews")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


async def test_a_real_sidecar_is_certified_configured_and_follows_a_change(parts: tuple[Meshd, ApiClient],
                                                                            tmp_path: Path) -> None:
    meshd, client = parts
    runner, app_port = await _app()
    await client.request("POST", "/api/v1/namespaces/default/serviceaccounts",
                         body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "productpage"}})
    token = (await client.request("POST", "/api/v1/namespaces/default/serviceaccounts/productpage/token", body={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": ["istio-ca"], "expirationSeconds": 3600}}))["status"]["token"]
    service = await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews"},
                                             "spec": {"ports": [{"name": "http", "port": 9080,
                                                                 "targetPort": app_port}]}}, namespace="default")
    cluster_ip = service["spec"]["clusterIP"]
    await client.create(ENDPOINTSLICES, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                         "metadata": {"name": "reviews-1",
                                                      "labels": {"kubernetes.io/service-name": "reviews"}},
                                         "addressType": "IPv4",
                                         "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                                         "ports": [{"name": "http", "port": app_port, "protocol": "TCP"}]},
                        namespace="default")
    (tmp_path / "token").write_text(token)
    (tmp_path / "root-cert.pem").write_text(meshd.ca.root_pem)
    address = f"127.0.0.1:{meshd.settings.discovery_port}"
    settings = ProxySettings(
        pod_name="productpage-1", namespace="default", service_account="productpage", workload="productpage",
        labels={"app": "productpage"}, discovery_address=address, ca_address=address,
        token_path=str(tmp_path / "token"), root_cert_path=str(tmp_path / "root-cert.pem"), bind_address="127.0.0.1",
        outbound_port=0, inbound_port=0, admin_port=0, status_port=0, ready_port=0,
        explicit_destination_header=True, original_dst=lambda _sock: None, install_signal_handlers=False)
    proxy = Proxy(settings, rng=random.Random(1), log_stream=io.StringIO())
    await proxy.start()
    try:
        await wait_until(lambda: proxy.ready, timeout=60, what="the sidecar ready (certificate and config)")
        (record,) = meshd.discovery.records()
        assert record.identity == "spiffe://cluster.local/ns/default/sa/productpage"
        await wait_until(lambda: all(record.state(t).status == "SYNCED" for t in PUSH_ORDER), what="all ACKed")
        url = f"http://127.0.0.1:{proxy.ports['outbound']}/ratings"
        headers = {"x-kubelab-original-dst": f"{cluster_ip}:9080", "host": "reviews:9080"}
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers=headers) as answer:
                assert answer.status == 200 and await answer.text() == "hello from reviews"
            abort: dict[str, Any] = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                     "metadata": {"name": "reviews", "namespace": "default"},
                                     "spec": {"hosts": ["reviews"], "http": [{
                                         "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}},
                                         "route": [{"destination": {"host": "reviews"}}]}]}}
            await client.create(VIRTUAL_SERVICES, abort, namespace="default")

            async def aborted() -> bool:
                async with session.get(url, headers=headers) as answer:
                    return answer.status == 503

            await wait_until(aborted, what="the fault applied by the sidecar")
        await wait_until(lambda: record.state(PUSH_ORDER[1]).status == "SYNCED", what="the new routes ACKed")
    finally:
        await proxy.stop()
        await runner.cleanup()
        await asyncio.sleep(0)
