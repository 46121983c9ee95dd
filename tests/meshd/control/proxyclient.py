"""A minimal proxy for meshd's tests and benchmark: a real gRPC Discovery client, driven by hand.

:class:`ProxyClient` opens ``Discovery.Stream`` over mTLS with a workload certificate (made with
:func:`workload_identity` from the mesh CA), sends the initial requests, and lets the test read
responses and answer each with :meth:`ProxyClient.ack` or :meth:`ProxyClient.nack` (or anything
else with :meth:`ProxyClient.send`). With ``auto_ack=True`` it ACKs every response itself and
records when each arrived (the benchmark's mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import grpc.aio  # type: ignore[import-untyped,unused-ignore]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshd.api.identity import SpiffeId
from meshd.api.protocol import (
    STREAM_METHOD,
    DiscoveryRequest,
    DiscoveryResponse,
    ErrorDetail,
    Node,
    deserializer,
    serializer,
)
from meshd.api.resources import PUSH_ORDER
from meshd.control.ca import MeshCertificateAuthority

__all__ = ["ProxyClient", "make_csr", "node", "workload_identity"]


def make_csr(sans: Iterable[x509.GeneralName] = ()) -> tuple[str, bytes]:
    """(CSR PEM, key PEM) for a fresh P-256 key, asking for ``sans`` (which meshd must ignore)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    sans = list(sans)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def workload_identity(ca: MeshCertificateAuthority, namespace: str, account: str) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) signed by the mesh CA for ``namespace``/``account``."""
    csr, key_pem = make_csr()
    leaf = ca.sign_csr(csr, SpiffeId(namespace, account), 3600)
    return "".join(leaf.chain).encode(), key_pem


def node(namespace: str, pod: str, *, account: str = "default", labels: dict[str, str] | None = None,
         ip: str = "127.0.0.1") -> Node:
    return Node(id=f"sidecar~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local", namespace=namespace, pod=pod,
                ip=ip, service_account=account, labels=dict(labels or {}))


class ProxyClient:
    def __init__(self, address: str, root_pem: str, chain_pem: bytes, key_pem: bytes, node: Node, *,
                 auto_ack: bool = False) -> None:
        self.address = address
        self.node = node
        self.auto_ack = auto_ack
        creds = grpc.ssl_channel_credentials(root_certificates=root_pem.encode(), private_key=key_pem,
                                             certificate_chain=chain_pem)
        self.channel = grpc.aio.secure_channel(address, creds, options=[
            ("grpc.ssl_target_name_override", "istiod.istio-system.svc"), ("grpc.enable_http_proxy", 0)])
        self.outgoing: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()
        self.responses: asyncio.Queue[DiscoveryResponse] = asyncio.Queue()
        self.received: list[tuple[float, DiscoveryResponse]] = []
        self.applied: dict[str, str] = {}
        """Per type, the version last ACKed."""
        self.error: grpc.aio.AioRpcError | None = None
        self.closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[DiscoveryRequest]:
        while True:
            request = await self.outgoing.get()
            if request is None:
                return
            yield request

    async def connect(self, types: Iterable[str] = PUSH_ORDER, *, versions: dict[str, str] | None = None) -> None:
        """Open the stream and subscribe to ``types`` (``versions``: what a reconnecting proxy has)."""
        first = True
        for type_url in types:
            version = (versions or {}).get(type_url, "")
            self.outgoing.put_nowait(DiscoveryRequest(type_url=type_url, version_info=version,
                                                      node=self.node if first else None))
            first = False
        call = self.channel.stream_stream(STREAM_METHOD, request_serializer=serializer,
                                          response_deserializer=deserializer(DiscoveryResponse))
        self._task = asyncio.create_task(self._read(call(self._requests())))

    async def _read(self, stream: Any) -> None:
        try:
            async for response in stream:
                self.received.append((time.monotonic(), response))
                if self.auto_ack:
                    self.ack(response)
                else:
                    self.responses.put_nowait(response)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.closed.set()

    async def recv(self, timeout: float = 30.0) -> DiscoveryResponse:
        return await asyncio.wait_for(self.responses.get(), timeout)

    def send(self, request: DiscoveryRequest) -> None:
        self.outgoing.put_nowait(request)

    def ack(self, response: DiscoveryResponse) -> None:
        self.applied[response.type_url] = response.version_info
        self.send(DiscoveryRequest(type_url=response.type_url, version_info=response.version_info,
                                   response_nonce=response.nonce))

    def nack(self, response: DiscoveryRequest | DiscoveryResponse, message: str) -> None:
        assert isinstance(response, DiscoveryResponse)
        self.send(DiscoveryRequest(type_url=response.type_url, version_info=self.applied.get(response.type_url, ""),
                                   response_nonce=response.nonce, error_detail=ErrorDetail(message=message)))

    async def close(self) -> None:
        self.outgoing.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.channel.close()
