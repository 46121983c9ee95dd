"""The authorisation step of every request (kube-apiserver's ``WithAuthorization`` filter).

Runs after authentication and impersonation: the request's attributes
(:mod:`apiserver.rbac.requestinfo`) go to the application's authorizer
(:data:`apiserver.authz.AUTHORIZER`); a denial is a 403 ``Forbidden`` Status worded as Kubernetes'
(``pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace
"default"``). :func:`authorizer_for` picks the authorizer of ``--authorization-mode``.
"""

from __future__ import annotations

from aiohttp import web

from apiserver.authn import UserInfo
from apiserver.authz import AlwaysAllow, Attributes, Authorizer, forbidden_message
from apiserver.rbac.authorizer import RbacAuthorizer
from apiserver.rbac.escalation import REQUEST_USER
from apiserver.rbac.requestinfo import attributes_of
from apiserver.watchcache import WatchCaches
from machinery.errors import ForbiddenError

MODES = ("Node,RBAC", "RBAC", "AlwaysAllow")


def authorizer_for(mode: str, caches: WatchCaches) -> Authorizer:
    """The authorizer of an ``--authorization-mode`` value."""
    if mode == "AlwaysAllow":
        return AlwaysAllow()
    if mode in ("RBAC", "Node,RBAC"):
        return RbacAuthorizer.from_caches(caches, node_authorizer=mode == "Node,RBAC")
    raise ValueError(f"unknown authorization mode {mode!r} (choose from {', '.join(MODES)})")


def forbidden(user: UserInfo, attributes: Attributes, reason: str = "") -> ForbiddenError:
    """The 403 for a denied request, with Kubernetes' Status details (name, group, kind)."""
    return ForbiddenError(forbidden_message(user, attributes, reason), name=attributes.name,
                          group=attributes.api_group, kind=attributes.resource)


async def authorize_request(request: web.Request, user: UserInfo, authorizer: Authorizer) -> None:
    """Raise :class:`ForbiddenError` unless ``authorizer`` allows ``user`` this request."""
    if isinstance(authorizer, AlwaysAllow):
        return
    REQUEST_USER.set(user)  # for the escalation checks of this request's task
    attributes = attributes_of(request.method, request.path, request.query)
    decision = await authorizer.authorize(user, attributes)
    if not decision.allowed:
        raise forbidden(user, attributes, decision.reason)
