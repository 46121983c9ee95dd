"""Impersonation: acting as another user (``kubectl --as``, ``--as-group``, ``--as-uid``).

Reads Kubernetes' headers ``Impersonate-User``, ``Impersonate-Group`` (repeated),
``Impersonate-Uid`` and ``Impersonate-Extra-<key>`` (key percent-encoded, case-insensitive) and,
when the authenticated caller may, replaces the request's user with the one asked for. Each part
is authorised separately with the ``impersonate`` verb, as kube-apiserver's impersonation filter
does::

    Impersonate-User: jane                   users "jane"
    Impersonate-User: system:serviceaccount:ns:sa   serviceaccounts "sa" in namespace ns
    Impersonate-Group: devs                  groups "devs"
    Impersonate-Uid: 1234                    authentication.k8s.io uids "1234"
    Impersonate-Extra-Scopes: view           authentication.k8s.io userextras/scopes "view"

A denial is a 403 Forbidden Status in Kubernetes' words; a group, uid or extra without a user is a
400. The impersonated user is in ``system:authenticated`` (and, for a service account, in
``system:serviceaccounts`` and ``system:serviceaccounts:<ns>``). Which callers may impersonate is
the authoriser's decision: with :class:`apiserver.authz.AlwaysAllow` every authenticated caller
may; RBAC restricts it to those granted ``impersonate``.
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from apiserver.authn import AUTHENTICATED, UNAUTHENTICATED, UserInfo, service_account_groups
from apiserver.authz import Attributes, Authorizer, forbidden_message
from machinery.errors import BadRequestError, ForbiddenError

USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UID_HEADER = "Impersonate-Uid"
EXTRA_PREFIX = "impersonate-extra-"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def _extras(request: web.Request) -> dict[str, tuple[str, ...]]:
    extra: dict[str, list[str]] = {}
    for header, value in request.headers.items():
        lower = header.lower()
        if lower.startswith(EXTRA_PREFIX):
            extra.setdefault(unquote(lower[len(EXTRA_PREFIX):]), []).append(value)
    return {k: tuple(v) for k, v in extra.items()}


def _user_attributes(name: str) -> Attributes:
    if name.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace, _, sa = name[len(SERVICE_ACCOUNT_PREFIX):].partition(":")
        if namespace and sa:
            return Attributes("impersonate", "serviceaccounts", namespace=namespace, name=sa)
    return Attributes("impersonate", "users", name=name)


async def impersonated(request: web.Request, user: UserInfo, authorizer: Authorizer) -> UserInfo:
    """The user the request acts as: ``user`` itself, or whom it may impersonate.

    Raises ForbiddenError when the authoriser denies a part, BadRequestError for malformed headers.
    """
    name = request.headers.get(USER_HEADER, "")
    groups = tuple(request.headers.getall(GROUP_HEADER, ()))
    uid = request.headers.get(UID_HEADER, "")
    extra = _extras(request)
    if not (name or groups or uid or extra):
        return user
    if not name:
        asked = "groups" if groups else "uid" if uid else "extra"
        raise BadRequestError(f"requested {asked} without impersonating a user")
    checks = [_user_attributes(name)]
    checks += [Attributes("impersonate", "groups", name=g) for g in groups]
    if uid:
        checks.append(Attributes("impersonate", "uids", api_group="authentication.k8s.io", name=uid))
    for key, values in extra.items():
        checks += [Attributes("impersonate", "userextras", api_group="authentication.k8s.io", subresource=key,
                              name=v) for v in values]
    for attributes in checks:
        decision = await authorizer.authorize(user, attributes)
        if not decision.allowed:
            raise ForbiddenError(forbidden_message(user, attributes, decision.reason))
    all_groups = list(groups)
    if name.startswith(SERVICE_ACCOUNT_PREFIX) and not groups:
        namespace = name[len(SERVICE_ACCOUNT_PREFIX):].partition(":")[0]
        all_groups += service_account_groups(namespace)
    if name == "system:anonymous":
        if UNAUTHENTICATED not in all_groups:
            all_groups.append(UNAUTHENTICATED)
    elif AUTHENTICATED not in all_groups:
        all_groups.append(AUTHENTICATED)
    return UserInfo(name, tuple(all_groups), uid=uid, extra=extra)
