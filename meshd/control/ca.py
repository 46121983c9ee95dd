"""The mesh certificate authority (Citadel's role): a root or an intermediate, and what it signs.

Owned by the ``kubelab meshd`` process (:mod:`meshd.control.server`); used by the Certify service
(:mod:`meshd.control.certify`) for workload leaves, by the servers for their own certificates
(``istiod.istio-system.svc``), and by :mod:`meshd.control.rootcert` for the root it publishes.

Two modes, as Istio has:

* self-signed (default): a root made on first start (ECDSA P-256, ``root_validity_days``, ten
  years by default) that signs directly;
* plugged-in (``--ca-cert`` / ``--ca-key``, Istio's ``cacerts``): meshd makes its own
  intermediate under the user's root (or intermediate) and signs with it; the chain sent to
  proxies then ends with the user's certificate, which is what is published as the root.

Files in ``state_dir`` (keys written 0600, atomically; made once and reused across restarts, so
proxies' certificates stay valid): ``ca-key.pem``, ``ca-cert.pem`` (the signing certificate),
``cert-chain.pem`` (signing certificate up to the root), ``root-cert.pem``.

A workload leaf names exactly one identity, the SPIFFE URI given by the caller (the reviewed
token's): the CSR's subject and SANs are never copied; the CSR's own signature must verify.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from machinery.pki import write_private_file
from meshd.api.identity import SpiffeId

__all__ = ["CaError", "MeshCertificateAuthority", "SignedLeaf"]

_SKEW = datetime.timedelta(minutes=1)
"""Leaves start a minute in the past: clocks of nodes may lag meshd's a little."""
INTERMEDIATE_DAYS = 365


class CaError(Exception):
    """A CSR that cannot be signed, or CA files that cannot be used; the message says why."""


@dataclass(frozen=True)
class SignedLeaf:
    chain: tuple[str, ...]
    """PEM certificates, the leaf first, the root last."""
    not_after: datetime.datetime


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def _load_pems(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CaError(f"not PEM certificates: {exc}") from exc


def _load_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError("the CA key must be an ECDSA key")
    return key


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class MeshCertificateAuthority:
    """The signing key and certificate, the chain up to the root, and the root itself."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, chain: Sequence[x509.Certificate]) -> None:
        """``chain``: the signing certificate first, the root (or the topmost given) last."""
        if not chain:
            raise CaError("a CA needs its certificate")
        self.key = key
        self.chain = tuple(chain)
        self.signing_cert = chain[0]
        self.root_cert = chain[-1]
        self._chain_pems = tuple(_pem(c) for c in chain)
        self.root_pem = self._chain_pems[-1]

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, state_dir: Path, *, ca_cert: Path | None = None, ca_key: Path | None = None,
                       root_validity_days: int = 3650) -> MeshCertificateAuthority:
        """The CA of ``state_dir``: reused when its files are there and still fit, made otherwise."""
        state_dir = state_dir.expanduser()
        with _locked(state_dir):
            if ca_cert is not None or ca_key is not None:
                if ca_cert is None or ca_key is None:
                    raise CaError("--ca-cert and --ca-key go together")
                return cls._plugged_in(state_dir, ca_cert.expanduser(), ca_key.expanduser())
            return cls._self_signed(state_dir, root_validity_days)

    @classmethod
    def _existing(cls, state_dir: Path) -> MeshCertificateAuthority | None:
        try:
            key = _load_key((state_dir / "ca-key.pem").read_bytes())
            chain = _load_pems((state_dir / "cert-chain.pem").read_bytes())
        except (OSError, ValueError, CaError):
            return None
        ca = cls(key, chain)
        if ca.signing_cert.public_key() != key.public_key() or ca.signing_cert.not_valid_after_utc < _now():
            return None
        return ca

    @classmethod
    def _self_signed(cls, state_dir: Path, days: int) -> MeshCertificateAuthority:
        existing = cls._existing(state_dir)
        if existing is not None and existing.signing_cert == existing.root_cert:
            return existing
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "kubelab mesh root CA")])
        now = _now()
        root = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - _SKEW).not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(_ca_usage(), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        cls._write(state_dir, key, [root])
        return cls(key, [root])

    @classmethod
    def _plugged_in(cls, state_dir: Path, cert_path: Path, key_path: Path) -> MeshCertificateAuthority:
        try:
            parent_chain = _load_pems(cert_path.read_bytes())
            parent_key = _load_key(key_path.read_bytes())
        except OSError as exc:
            raise CaError(f"cannot read the plugged-in CA: {exc}") from exc
        parent = parent_chain[0]
        if parent.public_key() != parent_key.public_key():
            raise CaError(f"{key_path} is not the key of {cert_path}")
        existing = cls._existing(state_dir)
        if (existing is not None and len(existing.chain) == len(parent_chain) + 1
                and existing.chain[1:] == tuple(parent_chain)):
            return existing
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_after = min(now + datetime.timedelta(days=INTERMEDIATE_DAYS), parent.not_valid_after_utc)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "kubelab mesh intermediate CA")])
        intermediate = (x509.CertificateBuilder().subject_name(subject).issuer_name(parent.subject)
                        .public_key(key.public_key()).serial_number(x509.random_serial_number())
                        .not_valid_before(now - _SKEW).not_valid_after(not_after)
                        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                        .add_extension(_ca_usage(), critical=True)
                        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent_key.public_key()),
                                       critical=False)
                        .sign(parent_key, hashes.SHA256()))
        chain = [intermediate, *parent_chain]
        cls._write(state_dir, key, chain)
        return cls(key, chain)

    @staticmethod
    def _write(state_dir: Path, key: ec.EllipticCurvePrivateKey, chain: Sequence[x509.Certificate]) -> None:
        write_private_file(state_dir / "ca-key.pem", _key_pem(key))
        write_private_file(state_dir / "ca-cert.pem", _pem(chain[0]).encode(), mode=0o644)
        write_private_file(state_dir / "cert-chain.pem", "".join(_pem(c) for c in chain).encode(), mode=0o644)
        write_private_file(state_dir / "root-cert.pem", _pem(chain[-1]).encode(), mode=0o644)

    # -- signing --------------------------------------------------------------------------------

    def _leaf(self, public_key: ec.EllipticCurvePublicKey | object, sans: list[x509.GeneralName],
              seconds: int, *, critical_san: bool) -> tuple[x509.Certificate, datetime.datetime]:
        now = _now()
        not_after = min(now + datetime.timedelta(seconds=seconds), self.signing_cert.not_valid_after_utc)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.signing_cert.subject)
                   .public_key(public_key)  # type: ignore[arg-type]
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - _SKEW).not_valid_after(not_after)
                   .add_extension(x509.SubjectAlternativeName(sans), critical=critical_san)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(_leaf_usage(), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        return builder.sign(self.key, hashes.SHA256()), not_after

    def sign_csr(self, csr_pem: str, identity: SpiffeId, seconds: int) -> SignedLeaf:
        """A leaf for the CSR's key naming only ``identity`` (the subject is empty, the SAN critical,
        as for Istio's workload certificates); :class:`CaError` for a bad CSR."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as exc:
            raise CaError(f"the CSR is not a PEM certificate request: {exc}") from exc
        if not csr.is_signature_valid:
            raise CaError("the CSR's signature does not verify")
        if seconds <= 0:
            raise CaError("the requested validity must be positive")
        cert, not_after = self._leaf(csr.public_key(), [x509.UniformResourceIdentifier(identity.uri)], seconds,
                                     critical_san=True)
        return SignedLeaf(chain=(_pem(cert), *self._chain_pems), not_after=not_after)

    def serving_certificate(self, hosts: Sequence[str], *, seconds: int = 365 * 86_400) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) for meshd's own servers, naming ``hosts`` (DNS names or IPs)."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        cert, _ = self._leaf(key.public_key(), sans, seconds, critical_san=False)
        return (_pem(cert) + "".join(self._chain_pems)).encode(), _key_pem(key)

    def root_expiry(self) -> datetime.datetime:
        return self.root_cert.not_valid_after_utc

    def signing_expiry(self) -> datetime.datetime:
        return self.signing_cert.not_valid_after_utc
