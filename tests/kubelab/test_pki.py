"""Tests of machinery.pki: chain, SANs, identities, key file modes and idempotence."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from machinery.pki import ClusterPki, ensure_cluster_pki, identity_from_certificate


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPki:
    return ensure_cluster_pki(tmp_path / "pki")


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _store(pki: ClusterPki) -> Store:
    return Store([pki.ca_certificate()])


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param(x509.IPAddress(ipaddress.ip_address("127.0.0.1")), id="loopback-ip"),
        pytest.param(x509.DNSName("localhost"), id="localhost"),
        pytest.param(x509.DNSName("kubernetes"), id="kubernetes"),
        pytest.param(x509.DNSName("kubernetes.default.svc.cluster.local"), id="service-fqdn"),
        pytest.param(x509.IPAddress(ipaddress.ip_address("10.96.0.1")), id="service-cluster-ip"),
    ],
)
def test_serving_certificate_chain_verifies_for(pki: ClusterPki, subject: x509.GeneralName) -> None:
    verifier = PolicyBuilder().store(_store(pki)).build_server_verifier(subject)  # type: ignore[arg-type]
    chain = verifier.verify(_load(pki.apiserver_cert), [])
    assert chain[-1] == pki.ca_certificate()


def test_serving_certificate_rejects_other_names(pki: ClusterPki) -> None:
    verifier = PolicyBuilder().store(_store(pki)).build_server_verifier(x509.DNSName("example.com"))
    with pytest.raises(VerificationError):
        verifier.verify(_load(pki.apiserver_cert), [])


def test_serving_certificate_sans_and_usage(pki: ClusterPki) -> None:
    cert = _load(pki.apiserver_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ]
    assert sorted(map(str, sans.get_values_for_type(x509.IPAddress))) == ["10.96.0.1", "127.0.0.1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_admin_certificate_identity_and_client_chain(pki: ClusterPki) -> None:
    cert = _load(pki.admin_cert)
    assert identity_from_certificate(cert) == ("kubernetes-admin", ["system:masters"])
    cert.verify_directly_issued_by(pki.ca_certificate())
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize(
    ("user", "groups"),
    [
        pytest.param("system:node:node-1", ["system:nodes"], id="kubelet"),
        pytest.param("system:kube-scheduler", [], id="no-groups"),
        pytest.param("alice", ["devs", "ops"], id="two-groups"),
    ],
)
def test_issue_client_certificate_identity(pki: ClusterPki, user: str, groups: list[str]) -> None:
    cert_pem, key_pem = pki.issue_client_certificate(user, groups)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert identity_from_certificate(cert) == (user, groups)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    # Kubernetes client certificates carry no SAN, which cryptography's (Web PKI) client
    # verifier insists on; the signature check plus the TLS handshake test cover the chain.
    cert.verify_directly_issued_by(pki.ca_certificate())


def test_issue_serving_certificate_for_a_kubelet(pki: ClusterPki) -> None:
    cert_pem, _ = pki.issue_serving_certificate(["node-1", "172.18.0.5"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    for name in (x509.DNSName("node-1"), x509.IPAddress(ipaddress.ip_address("172.18.0.5"))):
        PolicyBuilder().store(_store(pki)).build_server_verifier(name).verify(cert, [])


@pytest.fixture
def no_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("name", ["ca.key", "apiserver.key", "admin.key"])
def test_private_keys_are_created_0600(tmp_path: Path, no_umask: None, name: str) -> None:
    ensure_cluster_pki(tmp_path / "pki")
    assert stat.S_IMODE((tmp_path / "pki" / name).stat().st_mode) == 0o600


def test_second_call_keeps_everything(tmp_path: Path) -> None:
    first = ensure_cluster_pki(tmp_path / "pki")
    before = {path.name: path.read_bytes() for path in first.directory.glob("*.*")}
    ensure_cluster_pki(tmp_path / "pki")
    after = {path.name: path.read_bytes() for path in first.directory.glob("*.*")}
    assert after == before


def test_new_server_host_reissues_only_the_serving_certificate(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path / "pki")
    ca, admin = pki.ca_pem, pki.admin_cert.read_bytes()
    ensure_cluster_pki(tmp_path / "pki", server_hosts=("127.0.0.1", "localhost", "my-laptop"))
    assert pki.ca_pem == ca
    assert pki.admin_cert.read_bytes() == admin
    sans = _load(pki.apiserver_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "my-laptop" in sans.value.get_values_for_type(x509.DNSName)


def test_leaves_signed_by_a_replaced_ca_are_reissued(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path / "pki")
    pki.ca_cert.unlink()
    ensure_cluster_pki(tmp_path / "pki")
    for path in (pki.apiserver_cert, pki.admin_cert):
        _load(path).verify_directly_issued_by(pki.ca_certificate())
