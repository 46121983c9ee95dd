"""The mesh CA and Certify: only the reviewed SPIFFE identity is signed; tokens are reviewed by the apiserver."""

from __future__ import annotations

import datetime
import itertools
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apiserver.tokens import ObjectRef, ServiceAccountTokens
from kubelab.testing import RunningApiServer
from machinery.client import ApiClient
from meshd.api.identity import SpiffeId
from meshd.api.protocol import CertifyRequest
from meshd.control.ca import CaError, MeshCertificateAuthority
from meshd.control.certify import ApiTokenReviewer, CertifyService, TokenRejected
from meshd.control.metrics import MeshdMetrics
from tests.meshd.control.proxyclient import make_csr

IDENTITY = SpiffeId("default", "reviews")


def load_chain(chain: tuple[str, ...]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(pem.encode()) for pem in chain]


def sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(v.value) for v in ext.value]


def verify_chain(chain: list[x509.Certificate]) -> None:
    for child, parent in itertools.pairwise(chain):
        assert child.issuer == parent.subject
        child.verify_directly_issued_by(parent)


def test_a_leaf_names_only_the_given_identity_whatever_the_csr_asks(tmp_path: Path) -> None:
    ca = MeshCertificateAuthority.load_or_create(tmp_path)
    csr, _ = make_csr([x509.UniformResourceIdentifier("spiffe://cluster.local/ns/kube-system/sa/admin"),
                       x509.DNSName("evil.example")])
    leaf = ca.sign_csr(csr, IDENTITY, 86_400)
    chain = load_chain(leaf.chain)
    assert sans(chain[0]) == ["spiffe://cluster.local/ns/default/sa/reviews"]
    assert chain[0].subject == x509.Name([])
    assert chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.chain[-1] == ca.root_pem and len(chain) == 2
    verify_chain(chain)


def test_a_csr_whose_signature_does_not_verify_is_refused(tmp_path: Path) -> None:
    ca = MeshCertificateAuthority.load_or_create(tmp_path)
    csr, _ = make_csr()
    der = bytearray(x509.load_pem_x509_csr(csr.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CaError, match="signature"):
        ca.sign_csr(tampered, IDENTITY, 3600)
    with pytest.raises(CaError, match="not a PEM"):
        ca.sign_csr("garbage", IDENTITY, 3600)


def test_the_self_signed_root_is_made_once_with_its_key_0600(tmp_path: Path) -> None:
    ca = MeshCertificateAuthority.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
    lifetime = ca.root_cert.not_valid_after_utc - ca.root_cert.not_valid_before_utc
    assert lifetime >= datetime.timedelta(days=3649)
    again = MeshCertificateAuthority.load_or_create(tmp_path)
    assert again.root_pem == ca.root_pem
    assert (tmp_path / "root-cert.pem").read_text() == ca.root_pem


def _user_root(tmp_path: Path) -> tuple[Path, Path, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corp root")])
    now = datetime.datetime.now(datetime.UTC)
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "corp-cert.pem", tmp_path / "corp-key.pem"
    cert_path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, root


def test_intermediate_under_a_user_provided_root(tmp_path: Path) -> None:
    cert_path, key_path, root = _user_root(tmp_path)
    ca = MeshCertificateAuthority.load_or_create(tmp_path / "meshd", ca_cert=cert_path, ca_key=key_path)
    assert ca.root_cert == root and ca.signing_cert != root
    assert ca.signing_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf = ca.sign_csr(make_csr()[0], IDENTITY, 3600)
    chain = load_chain(leaf.chain)
    assert len(chain) == 3 and chain[-1] == root
    verify_chain(chain)
    assert chain[0].not_valid_after_utc <= ca.signing_cert.not_valid_after_utc
    again = MeshCertificateAuthority.load_or_create(tmp_path / "meshd", ca_cert=cert_path, ca_key=key_path)
    assert again.signing_cert == ca.signing_cert
    with pytest.raises(CaError, match="go together"):
        MeshCertificateAuthority.load_or_create(tmp_path / "x", ca_cert=cert_path)


# -- Certify with TokenReview against a real apiserver ----------------------------------------


async def _token(client: ApiClient, account: str, audiences: list[str], seconds: int = 3600) -> str:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": seconds}}
    answer = await client.request("POST", f"/api/v1/namespaces/default/serviceaccounts/{account}/token", body=body)
    return str(answer["status"]["token"])


@pytest.fixture
async def certify(kubelab_apiserver: RunningApiServer, tmp_path: Path) -> Any:
    client = ApiClient.from_kubeconfig(kubelab_apiserver.kubeconfig)
    await client.request("POST", "/api/v1/namespaces/default/serviceaccounts",
                         body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reviews"}})
    ca = MeshCertificateAuthority.load_or_create(tmp_path / "ca")
    service = CertifyService(ca, ApiTokenReviewer(client), MeshdMetrics(), trust_domain="cluster.local",
                             default_seconds=86_400, max_seconds=86_400)
    yield service, client, kubelab_apiserver
    await client.close()


async def test_certify_signs_the_reviewed_service_account_for_at_most_24h(certify: Any) -> None:
    service, client, _ = certify
    token = await _token(client, "reviews", ["istio-ca"])
    csr, _ = make_csr([x509.UniformResourceIdentifier("spiffe://cluster.local/ns/istio-system/sa/istiod")])
    response = await service.certify(CertifyRequest(csr=csr, token=token, validity_seconds=90 * 86_400))
    leaf = load_chain(response.cert_chain)[0]
    assert sans(leaf) == ["spiffe://cluster.local/ns/default/sa/reviews"]
    assert leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC) <= datetime.timedelta(hours=24)
    short = await service.certify(CertifyRequest(csr=csr, token=token, validity_seconds=600))
    assert load_chain(short.cert_chain)[0].not_valid_after_utc - datetime.datetime.now(datetime.UTC) \
        <= datetime.timedelta(seconds=600)
    assert service.metrics.certs_issued._value.get() == 2


async def test_certify_refuses_a_token_for_another_audience(certify: Any) -> None:
    service, client, _ = certify
    token = await _token(client, "reviews", ["https://kubernetes.default.svc"])
    with pytest.raises(TokenRejected):
        await service.certify(CertifyRequest(csr=make_csr()[0], token=token))


async def test_certify_refuses_an_expired_token(certify: Any) -> None:
    service, client, apiserver = certify
    valid = await _token(client, "reviews", ["istio-ca"])
    claims = jwt.decode(valid, options={"verify_signature": False})
    key = serialization.load_pem_private_key((apiserver.state_dir / "pki" / "sa.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    account = claims["kubernetes.io"]["serviceaccount"]
    tokens = ServiceAccountTokens(key, issuer=claims["iss"], audiences=["istio-ca"], clock=lambda: time.time() - 7200)
    expired, _ = tokens.issue(namespace="default", service_account=ObjectRef(account["name"], account["uid"]),
                              audiences=["istio-ca"], expiration_seconds=3600)
    fresh = ServiceAccountTokens(key, issuer=claims["iss"], audiences=["istio-ca"])
    still_good, _ = fresh.issue(namespace="default", service_account=ObjectRef(account["name"], account["uid"]),
                                audiences=["istio-ca"], expiration_seconds=3600)
    await service.certify(CertifyRequest(csr=make_csr()[0], token=still_good))  # the forging itself is sound
    with pytest.raises(TokenRejected, match="not authenticated"):
        await service.certify(CertifyRequest(csr=make_csr()[0], token=expired))
