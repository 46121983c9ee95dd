"""Authorisation seam: who may do what, asked as Kubernetes' authorizers are asked.

An :class:`Authorizer` answers ``await authorize(user, attributes) -> Decision`` for one request
attribute set (verb, API group, resource, subresource, namespace, name — or a non-resource path),
as kube-apiserver's ``authorizer.Authorizer`` does. The apiserver keeps one in the application
(:data:`AUTHORIZER`), chosen by ``--authorization-mode`` (:func:`apiserver.rbac.filter.authorizer_for`):
the Node authorizer then RBAC (``Node,RBAC``, the default), RBAC alone, or :class:`AlwaysAllow`.

Callers: the authorisation filter of every request (:mod:`apiserver.rbac.filter`), impersonation
(:mod:`apiserver.impersonation`: the ``impersonate`` verb on ``users``, ``groups``,
``serviceaccounts``, ``authentication.k8s.io/uids`` and ``authentication.k8s.io/userextras/<key>``),
escalation checks and the review APIs (:mod:`apiserver.rbac`). :func:`forbidden_message` words a
denial as kube-apiserver does, for whoever turns a denial into a 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from apiserver.authn import UserInfo


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request wants to do (``authorizer.AttributesRecord``).

    A resource request names ``resource`` (and maybe ``api_group``, ``subresource``, ``namespace``,
    ``name``); a non-resource request names ``path`` and leaves ``resource`` empty.
    """

    verb: str
    resource: str = ""
    api_group: str = ""
    api_version: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def resource_request(self) -> bool:
        return bool(self.resource)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: ``allowed``, and why (shown in a Forbidden message or a review's status)."""

    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


class Authorizer(Protocol):
    """Decides whether ``user`` may do what ``attributes`` describe."""

    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision: ...


class AlwaysAllow:
    """Every request is allowed (kube-apiserver's ``--authorization-mode=AlwaysAllow``)."""

    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision:
        return ALLOW


AUTHORIZER: web.AppKey[Authorizer] = web.AppKey("kubelab_authorizer", Authorizer)


def forbidden_message(user: UserInfo, attributes: Attributes, reason: str = "") -> str:
    """kube-apiserver's Forbidden wording for a denied request."""
    a = attributes
    if not a.resource_request:
        message = f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"'
    else:
        resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        # The object part names the resource without its subresource (Kubernetes' NewForbidden).
        target = f'{a.resource}.{a.api_group} "{a.name}"' if a.api_group else f'{a.resource} "{a.name}"'
        if not a.name:
            target = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
        scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
        message = (f'{target} is forbidden: User "{user.name}" cannot {a.verb} resource "{resource}" '
                   f'in API group "{a.api_group}" {scope}')
    return f"{message}: {reason}" if reason else message
