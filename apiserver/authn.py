"""Authentication: who is calling, from a client certificate or a service-account bearer token.

Tried in Kubernetes' order; the first credential presented decides:

1. A TLS client certificate (already verified against the cluster CA by the TLS layer): the
   subject's CN is the user, each O a group.
2. ``Authorization: Bearer <token>``: a service-account token signed by this apiserver
   (:mod:`apiserver.tokens`), for one of the apiserver's audiences, unexpired, whose service
   account, and bound pod, secret or node, still exist with the uids the token names (a pod or
   secret deleted more than a minute ago no longer vouches for it, as in Kubernetes). The user is
   ``system:serviceaccount:<ns>:<name>`` in ``system:serviceaccounts``,
   ``system:serviceaccounts:<ns>`` and ``system:authenticated``, with the pod (and node) in
   ``extra`` (``authentication.kubernetes.io/pod-name`` …).
3. Nothing: anonymous callers may read the public endpoints (``/healthz``, ``/livez``,
   ``/readyz``, ``/version``), as Kubernetes' ``system:public-info-viewer`` allows.

Anything else is a 401 Status worded as kube-apiserver's (``Unauthorized``; the reason a token
failed is logged and shown by a TokenReview, never to the caller). The authenticated user is left
on the request (:data:`USER`) for impersonation, authorisation and the review APIs.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from apiserver.tokens import ObjectRef, ServiceAccountTokens, TokenClaims, TokenInvalid
from machinery.errors import UnauthorizedError
from machinery.resources import NODES, PODS, SECRETS, SERVICEACCOUNTS, ResourceInfo

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
DELETION_GRACE = datetime.timedelta(seconds=60)
"""A bound pod or secret being deleted keeps its tokens valid this long (Kubernetes: 60 s)."""

EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


@dataclass(frozen=True)
class UserInfo:
    """The authenticated caller (Kubernetes' ``user.Info``)."""

    name: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def to_api(self) -> dict[str, Any]:
        """The ``authentication.k8s.io/v1`` UserInfo object (reviews' ``status.user``)."""
        out: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ANONYMOUS = UserInfo("system:anonymous", (UNAUTHENTICATED,))

USER: web.RequestKey[UserInfo] = web.RequestKey("kubelab_user", UserInfo)

ObjectGetter = Callable[[ResourceInfo, str | None, str], Awaitable[dict[str, Any] | None]]
"""Reads one object (resource, namespace, name) from the apiserver's cache or store."""


def user_from_peercert(peercert: dict[str, Any] | None) -> UserInfo | None:
    """The user named by a verified certificate (``ssl.getpeercert()`` form)."""
    if not peercert:
        return None
    name = ""
    groups: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    if not name:
        return None
    return UserInfo(name, (*groups, AUTHENTICATED))


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return (SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{namespace}")


def _deleted_long_ago(obj: dict[str, Any], now: datetime.datetime) -> bool:
    stamp = obj.get("metadata", {}).get("deletionTimestamp")
    if not stamp:
        return False
    try:
        when = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return True
    return when + DELETION_GRACE < now


class Authenticator:
    """Turns a request's credentials into a :class:`UserInfo`; one per apiserver."""

    def __init__(self, tokens: ServiceAccountTokens, get_object: ObjectGetter) -> None:
        self.tokens = tokens
        self._get = get_object

    async def authenticate(self, request: web.Request) -> UserInfo:
        transport = request.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        user = user_from_peercert(peercert)
        if user is not None:
            return user
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            try:
                return await self.authenticate_token(token.strip())
            except TokenInvalid as exc:
                log.info("invalid bearer token from %s: %s", request.remote, exc)
                raise UnauthorizedError("Unauthorized") from None
        path = request.path.rstrip("/") or "/"
        if path in PUBLIC_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return ANONYMOUS
        raise UnauthorizedError("Unauthorized")

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo:
        """The service account a token stands for. Raises :class:`TokenInvalid`."""
        if not self.tokens.looks_like_ours(token):
            raise TokenInvalid("invalid bearer token")
        claims = self.tokens.verify(token, audiences or None)
        await self._check_bound_objects(claims)
        return self.user_of(claims)

    @staticmethod
    def user_of(claims: TokenClaims) -> UserInfo:
        extra: dict[str, tuple[str, ...]] = {}
        if claims.pod is not None:
            extra[EXTRA_POD_NAME] = (claims.pod.name,)
            extra[EXTRA_POD_UID] = (claims.pod.uid,)
        if claims.node is not None:
            extra[EXTRA_NODE_NAME] = (claims.node.name,)
            extra[EXTRA_NODE_UID] = (claims.node.uid,)
        if claims.token_id:
            extra[EXTRA_CREDENTIAL_ID] = (f"JTI={claims.token_id}",)
        return UserInfo(claims.username, (*service_account_groups(claims.namespace), AUTHENTICATED),
                        uid=claims.service_account.uid, extra=extra)

    async def _check_bound_objects(self, claims: TokenClaims) -> None:
        ns = claims.namespace
        now = datetime.datetime.now(datetime.UTC)
        await self._check(SERVICEACCOUNTS, ns, claims.service_account, "service account", now)
        if claims.secret is not None:
            await self._check(SECRETS, ns, claims.secret, "secret", now)
        if claims.pod is not None:
            await self._check(PODS, ns, claims.pod, "pod", now)
        if claims.node is not None:
            await self._check(NODES, None, claims.node, "node", now)

    async def _check(self, resource: ResourceInfo, namespace: str | None, ref: ObjectRef, what: str,
                     now: datetime.datetime) -> None:
        obj = await self._get(resource, namespace, ref.name)
        full = f"{namespace}/{ref.name}" if namespace else ref.name
        if obj is None or _deleted_long_ago(obj, now):
            raise TokenInvalid(f"{what} {full} has been deleted")
        uid = obj.get("metadata", {}).get("uid", "")
        if ref.uid and uid != ref.uid:
            raise TokenInvalid(f"{what} UID ({uid}) does not match claim ({ref.uid})")


AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("kubelab_authenticator", Authenticator)
