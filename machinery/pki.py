"""The cluster's PKI: one CA, the apiserver serving certificate and the admin client certificate.

Called by the apiserver on start (``ensure_cluster_pki``), by ``kubelab up`` and by later
components that need certificates of their own (kubelets ask the :class:`ClusterPki` for a
serving certificate and a ``system:node:<name>`` client certificate).

Guarantees:

* Idempotent: the CA is made once and then reused, so kubeconfigs handed out earlier keep
  working. The leaf certificates are reissued only when they are missing, not signed by the
  current CA, close to expiry, or (apiserver) lack a SAN that was asked for.
* Private keys are created with mode 0600 (never chmod-ed afterwards) and every file is
  replaced atomically, so a concurrent reader sees either the old or the new file.
* Concurrent callers (``kubelab up`` and the apiserver it starts) serialise on a lock file.

Keys are ECDSA P-256: generation takes about a millisecond (RSA 2048 takes ~50-100 ms, which
adds up when every test cluster and every kubelet gets fresh keys), signatures and handshakes
are cheaper, and P-256 is accepted by everything that talks to us (Go's TLS in kubectl,
OpenSSL behind Python's ``ssl``, kubeadm's ``ECDSA-P256`` option).

Identity follows Kubernetes' x509 authenticator: the subject's CN is the user name and each
O (organisation) is a group.

The PKI also holds the service-account signing key pair (``sa.key``/``sa.pub``, as kubeadm names
them): the apiserver signs service-account tokens (ES256 JWTs) with it and publishes the public
half as a JWKS. It is made once, like the CA, so tokens issued before a restart stay valid.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ADMIN_GROUP",
    "ADMIN_USER",
    "KUBERNETES_SERVICE_NAMES",
    "ClusterPki",
    "ensure_cluster_pki",
    "identity_from_certificate",
    "write_private_file",
]

ADMIN_USER = "kubernetes-admin"
ADMIN_GROUP = "system:masters"

KUBERNETES_SERVICE_NAMES: tuple[str, ...] = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
)
"""Names every apiserver certificate carries: the ``kubernetes`` Service and its ClusterIP."""

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
"""A leaf certificate this close to expiry is reissued by ``ensure_cluster_pki``."""
CLOCK_SKEW = datetime.timedelta(minutes=5)
"""notBefore is backdated by this much so a slightly slow clock elsewhere still accepts it."""

_CA_COMMON_NAME = "kubelab-ca"


def write_private_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data``; the file is created with ``mode`` from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def identity_from_certificate(cert: x509.Certificate) -> tuple[str, list[str]]:
    """The Kubernetes identity of a client certificate: (CN as user name, every O as a group)."""
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    user = _attribute_text(common_names[0].value) if common_names else ""
    groups = [
        _attribute_text(attribute.value) for attribute in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    ]
    return user, groups


def _attribute_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san_entries(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Hosts as SAN entries (IP literals become IP SANs), de-duplicated, order kept."""
    entries: list[x509.GeneralName] = []
    for host in hosts:
        entry: x509.GeneralName
        try:
            entry = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            entry = x509.DNSName(host)
        if entry not in entries:
            entries.append(entry)
    return entries


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _CA_COMMON_NAME)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


@dataclass(frozen=True)
class ClusterPki:
    """Where the cluster's certificates live, and the CA that can sign more of them."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    apiserver_cert: Path
    apiserver_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    @classmethod
    def at(cls, directory: Path) -> ClusterPki:
        """The standard file layout under ``directory`` (files may not exist yet)."""
        return cls(
            directory=directory,
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            apiserver_cert=directory / "apiserver.crt",
            apiserver_key=directory / "apiserver.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            sa_key=directory / "sa.key",
            sa_pub=directory / "sa.pub",
        )

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()

    def ca_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem)

    def _ca_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.ca_key}: expected an EC private key")
        return key

    def _issue(
        self,
        subject: x509.Name,
        *,
        usage: x509.ObjectIdentifier,
        sans: Sequence[x509.GeneralName] = (),
    ) -> tuple[bytes, bytes]:
        ca_cert = self.ca_certificate()
        ca_key = self._ca_key()
        key = _new_key()
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return _cert_pem(cert), _key_pem(key)

    def issue_client_certificate(self, common_name: str, groups: Sequence[str]) -> tuple[bytes, bytes]:
        """A clientAuth certificate for user ``common_name`` in ``groups``: (cert PEM, key PEM)."""
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        return self._issue(x509.Name(attributes), usage=ExtendedKeyUsageOID.CLIENT_AUTH)

    def issue_serving_certificate(self, hosts: Sequence[str]) -> tuple[bytes, bytes]:
        """A serverAuth certificate for ``hosts`` (IP literals as IP SANs): (cert PEM, key PEM)."""
        if not hosts:
            raise ValueError("a serving certificate needs at least one host")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        return self._issue(subject, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=_san_entries(hosts))

    def server_ssl_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """A TLS server context presenting the apiserver certificate and verifying clients by the CA.

        Client certificates are optional by default because bearer-token clients present none.
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_cert))
        context.load_cert_chain(str(self.apiserver_cert), str(self.apiserver_key))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        return context

    def service_account_signing_key(self) -> ec.EllipticCurvePrivateKey:
        """The private key that signs service-account tokens."""
        key = serialization.load_pem_private_key(self.sa_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.sa_key}: expected an EC private key")
        return key

    def _signed_by_ca(self, cert: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(self.ca_certificate())
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def _leaf_usable(self, cert_path: Path, key_path: Path) -> x509.Certificate | None:
        """The certificate at ``cert_path`` if it can be kept, else None."""
        if not (cert_path.exists() and key_path.exists()):
            return None
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError:
            return None
        if cert.not_valid_after_utc - RENEW_BEFORE < _now() or not self._signed_by_ca(cert):
            return None
        return cert


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / ".lock", "a+b") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def ensure_cluster_pki(pki_dir: Path, *, server_hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> ClusterPki:
    """Create whatever part of the cluster PKI in ``pki_dir`` is missing or unusable; keep the rest."""
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = ClusterPki.at(pki_dir)
    with _locked(pki_dir):
        if not (pki.ca_cert.exists() and pki.ca_key.exists()):
            ca_cert, ca_key = _make_ca()
            write_private_file(pki.ca_key, _key_pem(ca_key))
            write_private_file(pki.ca_cert, _cert_pem(ca_cert), mode=0o644)

        wanted_sans = _san_entries([*server_hosts, *KUBERNETES_SERVICE_NAMES])
        serving = pki._leaf_usable(pki.apiserver_cert, pki.apiserver_key)
        if serving is None or not set(wanted_sans) <= set(_certificate_sans(serving)):
            cert_pem, key_pem = pki.issue_serving_certificate([*server_hosts, *KUBERNETES_SERVICE_NAMES])
            write_private_file(pki.apiserver_key, key_pem)
            write_private_file(pki.apiserver_cert, cert_pem, mode=0o644)

        admin = pki._leaf_usable(pki.admin_cert, pki.admin_key)
        if admin is None or identity_from_certificate(admin) != (ADMIN_USER, [ADMIN_GROUP]):
            cert_pem, key_pem = pki.issue_client_certificate(ADMIN_USER, [ADMIN_GROUP])
            write_private_file(pki.admin_key, key_pem)
            write_private_file(pki.admin_cert, cert_pem, mode=0o644)

        if not (pki.sa_key.exists() and pki.sa_pub.exists()):
            sa_key = _new_key()
            write_private_file(pki.sa_key, _key_pem(sa_key))
            write_private_file(pki.sa_pub, sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), mode=0o644)
    return pki


def _certificate_sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value)
