"""mTLS between sidecars: TLS contexts from the workload certificate, SPIFFE peer checks, XFCC.

Built by :class:`meshd.proxy.certs.CertManager` each time it gets a certificate
(:func:`build_contexts`); connections opened later use the new contexts, open ones keep theirs.

ALPN: a client sidecar offers exactly ``istio`` (:data:`meshd.api.identity.MESH_ALPN`), the server
sidecar accepts it (and, on a PERMISSIVE port, any TLS the app itself would terminate is not
ours: such a client offers no ``istio``). The protocol *inside* the tunnel is not negotiated: both
sides know it from configuration (the client from the Cluster's protocol, the server from its
Inbound port), as Istio decides by port protocol. HTTP/1.1 inside for ``http``; HTTP/2 for
``http2``/``grpc``; raw bytes for ``tcp``/``tls``.

Verification: both sides require a chain to the mesh root (a foreign CA fails the handshake). The
client then checks that the server's single URI SAN equals the endpoint's identity
(:func:`peer_identity`); the server records the client's SPIFFE ID for telemetry and
``X-Forwarded-Client-Cert`` (:func:`xfcc`), Envoy's format
``By=<our id>;Hash=<sha256 hex of the peer's DER>;Subject="";URI=<peer id>``.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

from meshd.api.identity import MESH_ALPN

__all__ = ["TlsContexts", "build_contexts", "client_hello_alpn", "load_chain", "peer_identity", "xfcc"]


@dataclass(frozen=True)
class TlsContexts:
    client: ssl.SSLContext
    """Towards another sidecar (checks the SPIFFE ID after the handshake)."""
    server: ssl.SSLContext
    """Inbound mTLS: a client certificate chained to the mesh root is required."""


def load_chain(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    # ssl only loads key material from files: a private temporary directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="meshd-proxy-") as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        with open(cert_path, "wb") as fh:
            fh.write(chain_pem)
        ctx.load_cert_chain(cert_path, key_path)


def build_contexts(chain_pem: bytes, key_pem: bytes, root_pem: bytes) -> TlsContexts:
    """Client and server contexts for the workload certificate ``chain_pem`` (leaf first)."""
    root = root_pem.decode()
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    client.check_hostname = False  # the SPIFFE URI SAN is checked instead (peer_identity)
    client.verify_mode = ssl.CERT_REQUIRED
    client.load_verify_locations(cadata=root)
    client.set_alpn_protocols([MESH_ALPN])
    load_chain(client, chain_pem, key_pem)

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cadata=root)
    server.set_alpn_protocols([MESH_ALPN])
    load_chain(server, chain_pem, key_pem)
    return TlsContexts(client=client, server=server)


def peer_identity(ssl_object: Any) -> str:
    """The single ``spiffe://`` URI SAN of the verified peer certificate ("" when there is none)."""
    if ssl_object is None:
        return ""
    cert = ssl_object.getpeercert()
    if not cert:
        return ""
    uris = [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    return spiffe[0] if len(spiffe) == 1 else ""


def peer_cert_hash(ssl_object: Any) -> str:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return hashlib.sha256(der).hexdigest() if der else ""


def xfcc(own_identity: str, ssl_object: Any) -> str:
    """Envoy's ``X-Forwarded-Client-Cert`` value for the peer of ``ssl_object``."""
    return f'By={own_identity};Hash={peer_cert_hash(ssl_object)};Subject="";URI={peer_identity(ssl_object)}'


def client_hello_alpn(data: bytes) -> list[str] | None:
    """The ALPN protocols offered in a TLS ClientHello at the start of ``data`` (None: not a complete one).

    Lets a PERMISSIVE port tell a sidecar's mTLS (it offers ``istio``) from TLS meant for the app
    itself (passed through untouched, as Istio does).
    """
    try:
        if data[0] != 0x16 or data[5] != 0x01:
            return None
        end = 5 + int.from_bytes(data[3:5], "big")
        if len(data) < end:
            return None
        pos = 5 + 4 + 2 + 32  # record header, handshake header, client_version, random
        pos += 1 + data[pos]  # session id
        pos += 2 + int.from_bytes(data[pos:pos + 2], "big")  # cipher suites
        pos += 1 + data[pos]  # compression methods
        if pos >= end:
            return []
        ext_end = pos + 2 + int.from_bytes(data[pos:pos + 2], "big")
        pos += 2
        while pos + 4 <= ext_end:
            ext_type = int.from_bytes(data[pos:pos + 2], "big")
            ext_len = int.from_bytes(data[pos + 2:pos + 4], "big")
            body = data[pos + 4:pos + 4 + ext_len]
            if ext_type == 0x0010:  # application_layer_protocol_negotiation
                protocols, i = [], 2
                while i < len(body):
                    length = body[i]
                    protocols.append(body[i + 1:i + 1 + length].decode("ascii", "replace"))
                    i += 1 + length
                return protocols
            pos += 4 + ext_len
        return []
    except IndexError:
        return None
