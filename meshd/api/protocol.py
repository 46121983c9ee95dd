"""meshd's wire protocol: two gRPC services on port 15012, JSON messages, no generated code.

``/kubelab.mesh.v1.Discovery/Stream`` (bidirectional stream, one per proxy)
    xDS's aggregated state-of-the-world semantics, without Envoy's protos:

    1. The proxy opens the stream (mTLS with its workload certificate) and sends one
       :class:`DiscoveryRequest` per resource type it wants (``node`` set on the first message),
       with an empty ``version_info`` and ``response_nonce``.
    2. meshd answers each type with a :class:`DiscoveryResponse`: every resource of that type
       for this proxy, a ``version_info`` and a fresh ``nonce``; types in
       :data:`meshd.api.resources.PUSH_ORDER`.
    3. The proxy answers every response: ACK (``version_info`` = the new version, the response's
       ``nonce``) once applied, or NACK (the previous version, the nonce, and ``error_detail``)
       when it cannot apply it -- it then keeps its previous configuration.
    4. meshd pushes again only when something this proxy sees changed (debounced); a request
       whose nonce is not the last one sent for its type is stale and ignored.

``/kubelab.mesh.v1.Certificates/Certify`` (unary)
    A :class:`CertifyRequest` (a PEM CSR and the pod's projected service-account token with
    audience ``istio-ca``) → a :class:`CertifyResponse` (the chain, leaf first, root last). The
    leaf's only identity is the SPIFFE ID of the reviewed token; SANs in the CSR are ignored.
    A proxy calls it over TLS (verifying meshd against the mesh root) before it has a
    certificate, and again to rotate.

Messages are dataclasses encoded as JSON (orjson) with :mod:`meshd.api.resources`' strict codec;
:func:`serializer` and :func:`deserializer` are the (de)serializers for grpcio's generic handlers
(server) and ``channel.unary_unary`` / ``stream_stream`` (client).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from meshd.api.resources import ResourceError, decode, encode

__all__ = [
    "CERTIFICATES_SERVICE",
    "CERTIFY_METHOD",
    "DISCOVERY_SERVICE",
    "STREAM_METHOD",
    "CertifyRequest",
    "CertifyResponse",
    "DiscoveryRequest",
    "DiscoveryResponse",
    "ErrorDetail",
    "Node",
    "deserializer",
    "serializer",
]

DISCOVERY_SERVICE = "kubelab.mesh.v1.Discovery"
STREAM_METHOD = f"/{DISCOVERY_SERVICE}/Stream"
CERTIFICATES_SERVICE = "kubelab.mesh.v1.Certificates"
CERTIFY_METHOD = f"/{CERTIFICATES_SERVICE}/Certify"


@dataclass(frozen=True)
class Node:
    """Who the proxy is (sent on the first request of a stream; meshd checks it against the peer certificate)."""

    id: str
    """Istio's form: ``sidecar~<pod IP>~<pod>.<namespace>~<namespace>.svc.cluster.local``."""
    namespace: str
    pod: str
    ip: str
    service_account: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    proxy_version: str = ""


@dataclass(frozen=True)
class ErrorDetail:
    """Why a proxy NACKed a response (gRPC status code 3, INVALID_ARGUMENT, as Envoy sends)."""

    message: str
    code: int = 3


@dataclass(frozen=True)
class DiscoveryRequest:
    type_url: str
    version_info: str = ""
    """The last version of this type the proxy applied ("" before the first)."""
    response_nonce: str = ""
    """The nonce of the response this request answers ("" on the first request of a type)."""
    resource_names: tuple[str, ...] = ()
    """Empty: every resource of the type for this proxy (the only mode meshd serves today)."""
    error_detail: ErrorDetail | None = None
    """Set on a NACK."""
    node: Node | None = None


@dataclass(frozen=True)
class DiscoveryResponse:
    type_url: str
    version_info: str
    nonce: str
    resources: tuple[dict[str, Any], ...] = ()
    """Encoded resources of ``type_url`` (decode with :func:`meshd.api.resources.decode`)."""


@dataclass(frozen=True)
class CertifyRequest:
    csr: str
    """PEM PKCS#10 request for the proxy's own key (the key never leaves the pod)."""
    token: str
    """The pod's projected service-account token (audience ``istio-ca``)."""
    validity_seconds: int = 86_400


@dataclass(frozen=True)
class CertifyResponse:
    cert_chain: tuple[str, ...]
    """PEM certificates: the leaf first, the root last."""


M = TypeVar("M")


def serializer(message: Any) -> bytes:
    """A message as JSON bytes (grpcio's ``request_serializer`` / ``response_serializer``)."""
    return orjson.dumps(encode(message))


def deserializer(cls: type[M]) -> Callable[[bytes], M]:
    """JSON bytes → a ``cls`` message; a malformed one raises :class:`ResourceError`."""

    def parse(data: bytes) -> M:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ResourceError(f"{cls.__name__}: not JSON: {exc}") from None
        return decode(cls, payload)

    return parse
