"""The Certify service: a CSR and a projected service-account token in, a SPIFFE leaf out.

Serves ``/kubelab.mesh.v1.Certificates/Certify`` (:mod:`meshd.api.protocol`) on meshd's port
15012 (wired by :mod:`meshd.control.push`'s server). Istio's ``IstioCertificateService``:

1. the token is reviewed by the apiserver (TokenReview, audience ``istio-ca``); only an
   authenticated service-account token whose audiences include ``istio-ca`` passes (an expired
   token, one for another audience, or one whose pod is gone fails the review);
2. the identity is the reviewed user, ``system:serviceaccount:<ns>:<sa>`` →
   ``spiffe://<trust domain>/ns/<ns>/sa/<sa>``; nothing in the CSR names it;
3. the leaf's lifetime is the request's, capped at ``max_leaf_seconds``
   (``default_leaf_seconds`` when the request asks for none).

Failures answer gRPC ``UNAUTHENTICATED`` (token) or ``INVALID_ARGUMENT`` (CSR) with the reason.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import grpc  # type: ignore[import-untyped,unused-ignore]
import grpc.aio  # type: ignore[import-untyped,unused-ignore]

from machinery.client import ApiClient
from machinery.errors import ApiError
from meshd.api.identity import CA_AUDIENCE, SpiffeId
from meshd.api.protocol import CertifyRequest, CertifyResponse
from meshd.control.ca import CaError, MeshCertificateAuthority
from meshd.control.metrics import MeshdMetrics

__all__ = ["ApiTokenReviewer", "CertifyService", "TokenRejected", "TokenReviewer"]

log = logging.getLogger(__name__)

_SA_PREFIX = "system:serviceaccount:"


class TokenRejected(Exception):
    """The token does not prove a service account for the CA's audience; the message says why."""


class TokenReviewer(Protocol):
    async def review(self, token: str, audience: str) -> tuple[str, str]:
        """(namespace, service account) the token proves for ``audience``; :class:`TokenRejected` otherwise."""
        ...


class ApiTokenReviewer:
    """TokenReview through the apiserver (``authentication.k8s.io/v1``)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def review(self, token: str, audience: str) -> tuple[str, str]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": [audience]}}
        try:
            answer = await self.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body)
        except ApiError as exc:
            raise TokenRejected(f"token review failed: {exc}") from exc
        status: dict[str, Any] = (answer or {}).get("status") or {} if isinstance(answer, dict) else {}
        if not status.get("authenticated"):
            raise TokenRejected(f"token not authenticated: {status.get('error') or 'no reason given'}")
        if audience not in (status.get("audiences") or []):
            raise TokenRejected(f"token is not valid for audience {audience!r}")
        username = str((status.get("user") or {}).get("username") or "")
        if not username.startswith(_SA_PREFIX):
            raise TokenRejected(f"{username!r} is not a service account")
        namespace, _, account = username[len(_SA_PREFIX):].partition(":")
        if not namespace or not account:
            raise TokenRejected(f"{username!r} is not a service account")
        return namespace, account


class CertifyService:
    """The unary Certify handler (grpc.aio)."""

    def __init__(self, ca: MeshCertificateAuthority, reviewer: TokenReviewer, metrics: MeshdMetrics, *,
                 trust_domain: str, default_seconds: int, max_seconds: int) -> None:
        self.ca = ca
        self.reviewer = reviewer
        self.metrics = metrics
        self.trust_domain = trust_domain
        self.default_seconds = default_seconds
        self.max_seconds = max_seconds

    def validity(self, requested: int) -> int:
        return min(requested if requested > 0 else self.default_seconds, self.max_seconds)

    async def certify(self, request: CertifyRequest) -> CertifyResponse:
        """Review, then sign; raises :class:`TokenRejected` or :class:`CaError`."""
        self.metrics.csr_count.inc()
        try:
            namespace, account = await self.reviewer.review(request.token, CA_AUDIENCE)
        except TokenRejected:
            self.metrics.csr_errors.labels("authentication").inc()
            raise
        identity = SpiffeId(namespace, account, self.trust_domain)
        try:
            leaf = self.ca.sign_csr(request.csr, identity, self.validity(request.validity_seconds))
        except CaError:
            self.metrics.csr_errors.labels("csr").inc()
            raise
        self.metrics.certs_issued.inc()
        log.debug("certify: signed %s until %s", identity, leaf.not_after.isoformat())
        return CertifyResponse(cert_chain=leaf.chain)

    async def handle(self, request: CertifyRequest, context: grpc.aio.ServicerContext[Any, Any]) -> CertifyResponse:
        try:
            return await self.certify(request)
        except TokenRejected as exc:
            log.info("certify: refused: %s", exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except CaError as exc:
            log.info("certify: bad request: %s", exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable")  # context.abort raises
