"""The ``kube-system/kube-dns`` Service and the EndpointSlices of the Services the apiserver keeps."""

from __future__ import annotations

from pathlib import Path

from apiserver.bootstrap import cluster_dns_ip
from tests.apiserver.conftest import Api, embedded_api


def test_dns_ip_is_the_tenth_service_address() -> None:
    assert cluster_dns_ip("10.96.0.0/12") == "10.96.0.10"
    assert cluster_dns_ip("10.112.16.0/20") == "10.112.16.10"


async def test_kube_dns_service_on_the_tenth_address(api: Api) -> None:
    status, svc = await api.request("GET", "/api/v1/namespaces/kube-system/services/kube-dns")
    assert status == 200, svc
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    assert svc["metadata"]["labels"]["k8s-app"] == "kube-dns"
    status, ep = await api.request("GET", "/api/v1/namespaces/kube-system/endpoints/kube-dns")
    assert status == 200 and ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]


async def test_kubernetes_and_kube_dns_have_endpointslices(api: Api) -> None:
    port = int(api.server.rsplit(":", 1)[1])
    status, kube = await api.request("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
    assert status == 200, kube
    assert kube["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}
    assert kube["addressType"] == "IPv4"
    assert kube["endpoints"] == [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
    assert kube["ports"] == [{"name": "https", "port": port, "protocol": "TCP"}]
    status, dns = await api.request("GET", "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/kube-dns")
    assert status == 200 and {p["protocol"] for p in dns["ports"]} == {"UDP", "TCP"}


async def test_kube_dns_follows_the_service_cidr(tmp_path: Path) -> None:
    async with embedded_api(tmp_path, service_cidr="10.100.0.0/16") as api:
        status, svc = await api.request("GET", "/api/v1/namespaces/kube-system/services/kube-dns")
        assert status == 200 and svc["spec"]["clusterIP"] == "10.100.0.10"
