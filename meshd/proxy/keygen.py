"""The workload key and CSR, made in a short-lived child process; the leaf's validity read from its DER.

The sidecar needs ``cryptography`` only to make a key and a CSR, once per rotation (every ~12 h).
Loading it into the long-running proxy costs ~10 MB of resident memory for the life of the pod,
so :func:`make_key_and_csr` runs it in a child (``sys.executable -c``): an ECDSA P-256 key and a
CSR naming the SPIFFE ID come back over a pipe -- the key stays in memory, never on disk, and
never leaves the pod. :func:`leaf_validity` reads ``notBefore``/``notAfter`` of the signed leaf
with a few lines of DER instead (the TLS stack verifies everything else when it loads the chain).

:func:`prestart` launches the first child before the proxy has imported the rest of itself (the
child's start and the imports overlap on the node's cores); the next :func:`make_key_and_csr` for
the same identity takes that child's answer instead of launching another one.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import subprocess
import sys

import orjson

__all__ = ["KeygenError", "leaf_validity", "make_key_and_csr", "prestart"]

_CHILD = r"""
import sys, orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
key = ec.generate_private_key(ec.SECP256R1())
csr = (x509.CertificateSigningRequestBuilder()
       .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, sys.argv[2])]))
       .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(sys.argv[1])]), critical=False)
       .sign(key, hashes.SHA256()))
sys.stdout.buffer.write(orjson.dumps({
    "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode(),
    "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}))
"""


class KeygenError(Exception):
    """The key or CSR could not be made, or a certificate could not be read."""


_early: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
"""Children launched by :func:`prestart`, by (SPIFFE URI, trust domain), not yet consumed."""


def prestart(spiffe_uri: str, trust_domain: str) -> None:
    """Launch the key-and-CSR child now (synchronously, no event loop needed); the next
    :func:`make_key_and_csr` for the same identity uses its answer. Failing to launch is not an
    error here: the later call launches its own child and reports."""
    try:
        _early[(spiffe_uri, trust_domain)] = subprocess.Popen(
            [sys.executable, "-c", _CHILD, spiffe_uri, trust_domain], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError:
        pass


async def make_key_and_csr(spiffe_uri: str, trust_domain: str) -> tuple[bytes, str]:
    """A new P-256 key (PEM, PKCS#8) and a CSR for ``spiffe_uri`` (PEM)."""
    early = _early.pop((spiffe_uri, trust_domain), None)
    if early is not None:
        out, err = await asyncio.to_thread(early.communicate)
        returncode = early.returncode
    else:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, spiffe_uri, trust_domain,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        returncode = proc.returncode
    if returncode != 0:
        raise KeygenError(f"key generation failed: {err.decode(errors='replace').strip()[-300:]}")
    try:
        made = orjson.loads(out)
        return made["key"].encode(), made["csr"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise KeygenError(f"key generation: unreadable output: {exc}") from None


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at ``pos``."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _time(tag: int, value: bytes) -> datetime.datetime:
    text = value.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ (years 1950-2049)
        year = int(text[:2])
        text = str(1900 + year if year >= 50 else 2000 + year) + text[2:]
    return datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=datetime.UTC)


def leaf_validity(pem: str) -> tuple[datetime.datetime, datetime.datetime]:
    """``(notBefore, notAfter)`` of the first certificate in ``pem``."""
    try:
        body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
        der = base64.b64decode("".join(body.split()))
        _, cert, _ = _tlv(der, 0)  # Certificate
        _, pos, _ = _tlv(der, cert)  # TBSCertificate
        tag, _, end = _tlv(der, pos)
        if tag == 0xA0:  # [0] version
            pos = end
            tag, _, end = _tlv(der, pos)
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, pos = _tlv(der, pos)
        _, validity, _ = _tlv(der, pos)
        tag1, start1, end1 = _tlv(der, validity)
        tag2, start2, end2 = _tlv(der, end1)
        return _time(tag1, der[start1:end1]), _time(tag2, der[start2:end2])
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise KeygenError(f"unreadable certificate: {exc}") from None
