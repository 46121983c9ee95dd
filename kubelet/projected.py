"""Service-account tokens for projected volumes: obtained with TokenRequest, cached, refreshed.

``kubelet.volumes`` asks :meth:`TokenManager.token` for each ``serviceAccountToken`` source of a
pod's projected volumes on every volume refresh. Like the kubelet's token manager:

* a token is requested for the pod's service account, bound to the pod (name and uid), with the
  source's ``audience`` (empty: the apiserver's own) and ``expirationSeconds`` — any audience and
  life a pod asks for (the mesh asks for ``istio-ca``);
* it is cached per (pod uid, account, audience, expiration) and replaced once 80% of its life has
  passed, or after 24 hours, whichever is first; an expired token is never handed out. The volume
  writer swaps the file atomically (the ``..data`` symlink), so containers see the new token
  without a restart;
* :meth:`TokenManager.forget` drops a pod's tokens when the pod is gone.

Tokens come from a :class:`TokenSource` (:class:`ApiTokenSource` POSTs the TokenRequest);
the clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from machinery.client.rest import ApiClient, resource_path
from machinery.errors import ApiError
from machinery.resources import SERVICEACCOUNTS

REFRESH_FRACTION = 0.8
MAX_TOKEN_AGE = 24 * 3600.0


class TokenError(Exception):
    """A token could not be obtained; the message says why (``FailedMount`` text)."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    issued: float
    expires: float

    def needs_refresh(self, now: float) -> bool:
        life = self.expires - self.issued
        return now >= self.expires or now >= self.issued + REFRESH_FRACTION * life or \
            now >= self.issued + MAX_TOKEN_AGE


class TokenSource(Protocol):
    """Issues a token for a service account, bound to a pod; returns (token, expiry Unix time)."""

    async def request_token(self, *, namespace: str, service_account: str, audience: str,
                            expiration_seconds: int, pod_name: str, pod_uid: str) -> tuple[str, float]: ...


def _parse_time(value: Any) -> float:
    text = str(value or "").replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).timestamp()


class ApiTokenSource:
    """POSTs ``serviceaccounts/<name>/token`` (TokenRequest) to the apiserver."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def request_token(self, *, namespace: str, service_account: str, audience: str,
                            expiration_seconds: int, pod_name: str, pod_uid: str) -> tuple[str, float]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience] if audience else [], "expirationSeconds": expiration_seconds,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod_name, "uid": pod_uid}}}
        path = resource_path(SERVICEACCOUNTS, namespace=namespace, name=service_account, subresource="token")
        try:
            answer = await self.client.request("POST", path, body=body)
        except ApiError as exc:
            raise TokenError(f"failed to fetch token: {exc}") from exc
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(status, dict) or not status.get("token"):
            raise TokenError("failed to fetch token: the TokenRequest answer carries no token")
        try:
            return str(status["token"]), _parse_time(status.get("expirationTimestamp"))
        except ValueError as exc:
            raise TokenError(f"failed to fetch token: bad expirationTimestamp: {exc}") from exc


class TokenManager:
    """Caches and refreshes the projected tokens of the pods on one node."""

    def __init__(self, source: TokenSource, *, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock
        self._tokens: dict[tuple[str, str, str, int], IssuedToken] = {}
        self._lock = asyncio.Lock()

    async def token(self, pod: Mapping[str, Any], projection: Mapping[str, Any]) -> str:
        """The current token for ``projection`` (a ``serviceAccountToken`` source) of ``pod``."""
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        uid, name = str(meta.get("uid", "")), str(meta.get("name", ""))
        namespace = str(meta.get("namespace") or "default")
        account = str(spec.get("serviceAccountName") or "default")
        audience = str(projection.get("audience") or "")
        seconds = int(projection.get("expirationSeconds") or 3600)
        key = (uid, account, audience, seconds)
        async with self._lock:
            cached = self._tokens.get(key)
            now = self.clock()
            if cached is not None and not cached.needs_refresh(now):
                return cached.token
            try:
                token, expires = await self.source.request_token(
                    namespace=namespace, service_account=account, audience=audience,
                    expiration_seconds=seconds, pod_name=name, pod_uid=uid)
            except TokenError:
                if cached is not None and now < cached.expires:
                    return cached.token  # keep serving the still-valid one; retried next refresh
                raise
            self._tokens[key] = IssuedToken(token, now, expires)
            return token

    def forget(self, uid: str) -> None:
        """Drop the tokens of a pod that is gone."""
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
