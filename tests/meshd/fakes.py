"""Test doubles for the mesh: a CA and a discovery server speaking meshd.api.protocol.

:class:`MeshCA` is a self-contained mesh root (ECDSA P-256) that signs workload leaves (SPIFFE URI
SAN only) and meshd's serving certificate (``istiod.istio-system.svc``).

:class:`FakeMeshd` serves ``Discovery.Stream`` and ``Certificates.Certify`` with grpcio generic
handlers on 127.0.0.1 over TLS, with xDS SotW semantics: per type a version and a fresh nonce per
response; requests are recorded (``requests``) so tests see ACKs and NACKs; :meth:`FakeMeshd.push`
replaces a type's resources and sends them to every stream; a stream's initial request carrying
the current version gets nothing (resync). ``Certify`` trusts the token verbatim as
``<namespace>/<service account>`` (TokenReview is meshd's job) and signs for ``leaf_seconds``.
:meth:`FakeMeshd.stop` / :meth:`FakeMeshd.start` on the same port simulate meshd going away.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import grpc.aio  # type: ignore[import-untyped,unused-ignore]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshd.api.identity import SpiffeId
from meshd.api.protocol import (
    CERTIFICATES_SERVICE,
    DISCOVERY_SERVICE,
    CertifyRequest,
    CertifyResponse,
    DiscoveryRequest,
    DiscoveryResponse,
    deserializer,
    serializer,
)
from meshd.api.resources import PUSH_ORDER, encode

__all__ = ["FakeMeshd", "MeshCA"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class MeshCA:
    """A mesh root that signs SPIFFE leaves and meshd's serving certificate."""

    def __init__(self, name: str = "kubelab-test-mesh-root") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=365))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.root_pem = _pem(self.cert)

    def sign(self, public_key: Any, sans: list[x509.GeneralName], seconds: float) -> x509.Certificate:
        now = _now()
        return (x509.CertificateBuilder().subject_name(x509.Name([]))
                .issuer_name(self.cert.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(seconds=1))
                .not_valid_after(now + datetime.timedelta(seconds=seconds))
                .add_extension(x509.SubjectAlternativeName(sans), critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                      x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))

    def issue(self, sans: list[x509.GeneralName], seconds: float = 3600) -> tuple[bytes, bytes]:
        """A new key and leaf: (chain PEM, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.sign(key.public_key(), sans, seconds)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return _pem(cert).encode(), key_pem

    def issue_spiffe(self, identity: str, seconds: float = 3600) -> tuple[bytes, bytes]:
        return self.issue([x509.UniformResourceIdentifier(identity)], seconds)

    def issue_meshd(self) -> tuple[bytes, bytes]:
        return self.issue([x509.DNSName("istiod.istio-system.svc")], 86400)


@dataclass
class _Stream:
    queue: asyncio.Queue[DiscoveryResponse | None] = field(default_factory=asyncio.Queue)
    requests: list[DiscoveryRequest] = field(default_factory=list)
    node_id: str = ""


class FakeMeshd:
    """Discovery and Certificates on 127.0.0.1 over TLS, driven by the test."""

    def __init__(self, ca: MeshCA, *, leaf_seconds: float = 3600) -> None:
        self.ca = ca
        self.leaf_seconds = leaf_seconds
        self.port = 0
        self.resources: dict[str, list[dict[str, Any]]] = {}
        self.versions: dict[str, str] = {}
        self.requests: list[DiscoveryRequest] = []
        self.streams: list[_Stream] = []
        self.certified = 0
        self.certify_attempts = 0
        self.refuse_certify = False
        self._nonces = itertools.count(1)
        self._versions = itertools.count(1)
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        chain, key = self.ca.issue_meshd()
        creds = grpc.ssl_server_credentials([(key, chain)], root_certificates=self.ca.root_pem.encode(),
                                            require_client_auth=False)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(DISCOVERY_SERVICE, {"Stream": grpc.stream_stream_rpc_method_handler(
                self._stream, request_deserializer=deserializer(DiscoveryRequest), response_serializer=serializer)}),
            grpc.method_handlers_generic_handler(CERTIFICATES_SERVICE, {"Certify": grpc.unary_unary_rpc_method_handler(
                self._certify, request_deserializer=deserializer(CertifyRequest), response_serializer=serializer)}),
        ))
        self.port = server.add_secure_port(f"127.0.0.1:{self.port}", creds)
        await server.start()
        self._server = server

    async def stop(self) -> None:
        for stream in self.streams:
            stream.queue.put_nowait(None)
        self.streams.clear()
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    def push(self, type_url: str, resources: list[Any]) -> str:
        """Replace every resource of ``type_url`` and send them to all streams; the new version."""
        self.resources[type_url] = [r if isinstance(r, dict) else encode(r) for r in resources]
        version = self.versions[type_url] = f"v{next(self._versions)}"
        for stream in self.streams:
            stream.queue.put_nowait(self._response(type_url))
        return version

    def _response(self, type_url: str) -> DiscoveryResponse:
        return DiscoveryResponse(type_url=type_url, version_info=self.versions[type_url],
                                 nonce=f"n{next(self._nonces)}", resources=tuple(self.resources[type_url]))

    def nacks(self) -> list[DiscoveryRequest]:
        return [r for r in self.requests if r.error_detail is not None]

    async def _certify(self, request: CertifyRequest, context: grpc.aio.ServicerContext[Any, Any]) -> CertifyResponse:
        self.certify_attempts += 1
        if self.refuse_certify:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "refusing")
        namespace, _, account = request.token.partition("/")
        csr = x509.load_pem_x509_csr(request.csr.encode())
        identity = SpiffeId(namespace, account).uri
        cert = self.ca.sign(csr.public_key(), [x509.UniformResourceIdentifier(identity)], self.leaf_seconds)
        self.certified += 1
        return CertifyResponse(cert_chain=(_pem(cert), self.ca.root_pem))

    async def _stream(self, requests: AsyncIterator[DiscoveryRequest],
                      context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[DiscoveryResponse]:
        stream = _Stream()
        self.streams.append(stream)

        async def read() -> None:
            async for request in requests:
                self.requests.append(request)
                stream.requests.append(request)
                if request.node is not None:
                    stream.node_id = request.node.id
                first = not request.response_nonce and request.error_detail is None
                if first and request.type_url in self.versions and request.version_info != self.versions[
                        request.type_url]:
                    stream.queue.put_nowait(self._response(request.type_url))
            stream.queue.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while True:
                item = await stream.queue.get()
                if item is None:
                    return
                yield item
        finally:
            reader.cancel()
            if stream in self.streams:
                self.streams.remove(stream)

    def all_types_pushed(self) -> bool:
        return all(t in self.versions for t in PUSH_ORDER)
