"""The ``default/kubernetes`` Service and its Endpoints: where in-cluster clients find the apiserver."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from tests.apiserver.conftest import Api, embedded_api


async def test_endpoints_name_the_listening_address_and_port(api: Api) -> None:
    status, svc = await api.request("GET", "/api/v1/namespaces/default/services/kubernetes")
    assert status == 200 and svc["spec"]["clusterIP"] == "10.96.0.1"
    status, ep = await api.request("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
    assert status == 200, ep
    port = int(api.server.rsplit(":", 1)[1])
    assert ep["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]


async def test_serving_certificate_names_the_service(tmp_path: Path) -> None:
    async with embedded_api(tmp_path, service_cidr="10.100.0.0/16") as api:
        cert = x509.load_pem_x509_certificate((api.settings.pki_dir / "apiserver.crt").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = {str(n.value) for n in sans}
        assert {"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.100.0.1"} <= names
