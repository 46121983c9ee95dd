"""meshd against a real apiserver and the real kubectl: CRDs, Istio YAML, validation, status, push, proxy-status.

meshd runs in the test's event loop (its webhook server too), so kubectl runs in a thread.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kubelab.testing import RunningApiServer, kubectl
from machinery.client import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import CONFIGMAPS, ENDPOINTS, ENDPOINTSLICES, EVENTS, NAMESPACES, SERVICES
from meshd.api.resources import LISTENERS, PUSH_ORDER, ROUTES, Listener, decode
from meshd.control.crds import VIRTUAL_SERVICES
from meshd.control.server import Meshd
from meshd.control.settings import MeshdSettings
from tests.meshd.control.proxyclient import ProxyClient, node, workload_identity

SAMPLES = Path(__file__).parent / "samples"
ISTIO_SAMPLES = Path("/tmp/kl/istio-samples")


async def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met in {timeout:g}s")
        await asyncio.sleep(0.1)


class Cluster:
    def __init__(self, apiserver: RunningApiServer, meshd: Meshd, client: ApiClient) -> None:
        self.apiserver, self.meshd, self.client = apiserver, meshd, client

    async def kubectl(self, *args: str, input: str | None = None,
                      check: bool = True) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(kubectl, *args, kubeconfig=self.apiserver.kubeconfig, input=input, check=check)


@pytest.fixture
async def cluster(kubelab_apiserver: RunningApiServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = MeshdSettings(kubeconfig=kubelab_apiserver.kubeconfig, state_dir=tmp_path / "meshd",
                             discovery_port=0, webhook_port=0, debug_port=0)
    meshd = Meshd(settings)
    await meshd.start()
    client = ApiClient.from_kubeconfig(kubelab_apiserver.kubeconfig)
    try:
        yield Cluster(kubelab_apiserver, meshd, client)
    finally:
        await client.close()
        await meshd.stop()


async def test_crds_are_served_with_istio_names_and_our_samples_apply_verbatim(cluster: Cluster) -> None:
    names = (await cluster.kubectl("api-resources", "--api-group=networking.istio.io", "-o", "wide")).stdout
    for short in ("vs", "dr", "gw", "se"):
        assert f" {short} " in names
    assert "networking-istio-io" in names
    applied = await cluster.kubectl("apply", "-f", str(SAMPLES))
    assert "virtualservice.networking.istio.io/reviews created" in applied.stdout
    assert "peerauthentication.security.istio.io/default created" in applied.stdout
    listed = (await cluster.kubectl("get", "istio-io", "-A")).stdout
    assert "destinationrule.networking.istio.io/ratings" in listed
    assert "authorizationpolicy.security.istio.io/ratings-viewer" in listed
    got = (await cluster.kubectl("get", "vs", "reviews", "-o", "jsonpath={.spec.http[0].route[1].weight}")).stdout
    assert got == "10"
    if ISTIO_SAMPLES.is_dir():  # Istio's own Bookinfo samples, when this machine has them
        result = await cluster.kubectl("apply", "-f", str(ISTIO_SAMPLES))
        assert "virtualservice.networking.istio.io/productpage created" in result.stdout


async def test_unimplemented_fields_are_warnings_kubectl_prints(cluster: Cluster) -> None:
    manifest = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mirrored}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    mirror: {host: reviews-shadow}
    corsPolicy: {allowOrigins: [{exact: "https://example.com"}]}
"""
    result = await cluster.kubectl("apply", "-f", "-", input=manifest)
    assert "mirror" not in result.stderr  # implemented
    assert "Warning: spec.http[0].corsPolicy is accepted but not implemented by kubelab" in result.stderr
    stored = (await cluster.kubectl("get", "vs", "mirrored", "-o", "jsonpath={.spec.http[0].mirror.host}")).stdout
    assert stored == "reviews-shadow"  # accepted: kept as written


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param("{http: [{route: [{destination: {host: reviews}}]}]}", "virtual service must have at least one host",
                 id="no-hosts"),
    pytest.param("{hosts: [reviews], http: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: "
                 "{host: reviews}}]}]}", "exactly one of exact, prefix or regex", id="string-match-two-keys"),
    pytest.param("{hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}, weight: 60}, "
                 "{destination: {host: reviews, subset: v2}, weight: 60}]}]}", "total destination weight 120 != 100",
                 id="weights"),
    pytest.param("{hosts: [reviews], http: [{name: nothing}]}", "HTTP route or redirect is required", id="no-route"),
])
async def test_what_istio_refuses_is_refused(cluster: Cluster, spec: str, message: str) -> None:
    manifest = f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: bad}}\nspec: {spec}\n"
    result = await cluster.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert 'admission webhook "validation.istio.io" denied the request' in result.stderr
    assert message in result.stderr


async def _service(client: ApiClient, name: str, ip_suffix: int, *, selector: bool = True) -> None:
    await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                   "metadata": {"name": name, "namespace": "default"},
                                   "spec": {"selector": {"app": name} if selector else None,
                                            "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}})
    await client.create(ENDPOINTSLICES, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                         "metadata": {"name": f"{name}-1", "namespace": "default",
                                                      "labels": {"kubernetes.io/service-name": name}},
                                         "addressType": "IPv4",
                                         "endpoints": [{"addresses": [f"127.0.0.{ip_suffix}"]}],
                                         "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}]})


async def test_a_missing_subset_is_reported_on_the_virtual_service(cluster: Cluster) -> None:
    await _service(cluster.client, "reviews", 11, selector=False)
    await cluster.kubectl("apply", "-f", str(SAMPLES / "reviews-canary.yaml"))
    await cluster.kubectl("delete", "dr", "reviews")

    async def messages() -> Any:
        vs = await cluster.client.get(VIRTUAL_SERVICES, "reviews", namespace="default")
        return (vs.get("status") or {}).get("validationMessages")

    found = await wait_until(messages, what="validationMessages on the VirtualService")
    assert found[0]["type"] == {"code": "IST0101", "name": "ReferencedResourceNotFound"}
    assert "reviews.default.svc.cluster.local+v1" in found[0]["description"]
    described = await wait_until(lambda: _describe(cluster, "reviews"), what="event")
    assert "ReferencedResourceNotFound" in described
    await cluster.kubectl("apply", "-f", str(SAMPLES / "reviews-canary.yaml"))
    await wait_until(lambda: _no_messages(cluster), what="status cleared once the DestinationRule is back")


async def _describe(cluster: Cluster, name: str, reason: str = "ReferencedResourceNotFound") -> str | None:
    text = (await cluster.kubectl("describe", "vs", name)).stdout
    return text if reason in text else None


async def _no_messages(cluster: Cluster) -> bool:
    vs = await cluster.client.get(VIRTUAL_SERVICES, "reviews", namespace="default")
    return not (vs.get("status") or {}).get("validationMessages")


async def test_root_cert_published_in_every_namespace(cluster: Cluster) -> None:
    await cluster.client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})

    async def root() -> Any:
        try:
            return (await cluster.client.get(CONFIGMAPS, "istio-ca-root-cert", namespace="shop"))["data"]
        except NotFoundError:
            return None

    data = await wait_until(root, what="istio-ca-root-cert in a new namespace")
    assert data == {"root-cert.pem": cluster.meshd.ca.root_pem}
    endpoints = await cluster.client.get(ENDPOINTS, "istiod", namespace="istio-system")
    ports = {p["name"]: p["port"] for p in endpoints["subsets"][0]["ports"]}
    assert ports["grpc-xds"] == cluster.meshd.settings.discovery_port
    assert ports["https-webhook"] == cluster.meshd.settings.webhook_port
    istiod_slice = await cluster.client.get(ENDPOINTSLICES, "istiod", namespace="istio-system")
    assert istiod_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "istiod"
    assert {p["name"]: p["port"] for p in istiod_slice["ports"]} == ports
    assert istiod_slice["endpoints"][0]["addresses"] == [endpoints["subsets"][0]["addresses"][0]["ip"]]
    service = await cluster.client.get(SERVICES, "istiod", namespace="istio-system")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc-xds": 15012, "https-webhook": 443, "https-webhook-direct": 15017}


async def test_a_proxy_gets_its_config_and_a_nack_shows_in_proxy_status_and_events(cluster: Cluster,
                                                                                   tmp_path: Path) -> None:
    await _service(cluster.client, "reviews", 11)
    await cluster.kubectl("apply", "-f", str(SAMPLES / "reviews-canary.yaml"))
    chain, key = workload_identity(cluster.meshd.ca, "default", "productpage")
    proxy = ProxyClient(f"127.0.0.1:{cluster.meshd.settings.discovery_port}", cluster.meshd.ca.root_pem, chain, key,
                        node("default", "productpage-1", account="productpage", labels={"app": "productpage"}))
    try:
        await proxy.connect()
        got = {}
        for _ in PUSH_ORDER:
            response = await proxy.recv()
            got[response.type_url] = response
            if response.type_url == ROUTES:
                proxy.nack(response, "9080.virtual_hosts[0].routes[0].matches[0].uri.regex: invalid regular "
                                     "expression '\\p{Lu}'")
            else:
                proxy.ack(response)
        listeners = [decode(Listener, r) for r in got[LISTENERS].resources]
        assert any(x.port == 9080 and x.route_config == "9080" for x in listeners)
        cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "kubelab", "mesh", "proxy-status",
                                                       "--state-dir", str(tmp_path)],
                                      capture_output=True, text=True, timeout=60)
        lines = cli.stdout.splitlines()
        assert lines[0].split() == ["NAME", "NAMESPACE", "CLUSTERS", "ROUTES", "LISTENERS", "INBOUND"]
        assert lines[1].startswith("productpage-1")
        assert "NACKED (9080.virtual_hosts[0].routes[0]" in lines[1]
        assert lines[1].count("SYNCED") == 3
        described = await wait_until(lambda: _describe(cluster, "reviews", "ProxyRejectedConfig"),
                                     what="NACK event on the VirtualService")
        assert "invalid regular expression" in described
        events = await cluster.client.list(EVENTS, namespace="default")
        assert any(e["involvedObject"].get("kind") == "VirtualService" and e["reason"] == "ProxyRejectedConfig"
                   for e in events["items"])
        vs = await cluster.client.get(VIRTUAL_SERVICES, "reviews", namespace="default")
        (condition,) = vs["status"]["conditions"]
        assert condition["reason"] == "ProxyRejectedConfig" and condition["status"] == "False"
    finally:
        await proxy.close()
