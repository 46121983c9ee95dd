"""Escalation prevention: nobody grants, through a Role or a binding, rights they do not hold.

Kubernetes' RBAC storage rules (``pkg/registry/rbac``), run as the mutating-admission step of
the four RBAC registries (:func:`install_checks`):

* creating or changing the rules of a Role or ClusterRole needs every permission it grants
  (``covers``), unless the caller may ``escalate`` on ``roles``/``clusterroles``; an
  ``aggregationRule`` (which can gather anything) needs every permission there is;
* creating or changing a RoleBinding or ClusterRoleBinding needs the permissions of the role it
  names, unless the caller may ``bind`` that role; a role that does not exist cannot be bound
  (except by the superuser group);
* ``system:masters`` may do all of it. Writes the apiserver makes itself (bootstrap policy) carry
  no caller and are not checked.

The caller comes from :data:`REQUEST_USER`, which the authorisation step sets for the request's
task. A refusal is Kubernetes' 403: ``roles.rbac.authorization.k8s.io "x" is forbidden: user "bob"
(groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:``
followed by one line per missing rule.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from apiserver.authn import UserInfo
from apiserver.authz import Attributes
from apiserver.context import ApiContext
from apiserver.rbac.authorizer import SUPERUSER_GROUP, RbacAuthorizer
from apiserver.rbac.index import CLUSTER_ROLE, ROLE
from apiserver.rbac.rules import PolicyRule, compact, compact_string, covers, go_quoted, rules_from_api
from machinery.errors import ForbiddenError
from machinery.resources import lookup_kind

RBAC_GROUP = "rbac.authorization.k8s.io"
REQUEST_USER: ContextVar[UserInfo | None] = ContextVar("kubelab_rbac_request_user", default=None)
FULL_AUTHORITY = (PolicyRule(("*",), ("*",), ("*",)), PolicyRule(("*",), non_resource_urls=("*",)))
_PLURALS = {"Role": "roles", "ClusterRole": "clusterroles", "RoleBinding": "rolebindings",
            "ClusterRoleBinding": "clusterrolebindings"}


def _meta(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or meta.get("generateName") or "")


def _forbidden(kind: str, name: str, why: str) -> ForbiddenError:
    plural = _PLURALS[kind]
    return ForbiddenError(f'{plural}.{RBAC_GROUP} "{name}" is forbidden: {why}', name=name, group=RBAC_GROUP,
                          kind=plural)


def not_held_message(user: UserInfo, missing: list[PolicyRule]) -> str:
    lines = sorted({compact_string(rule) for rule in compact(missing)})
    return (f"user \"{user.name}\" (groups={go_quoted(user.groups)}) is attempting to grant RBAC permissions "
            "not currently held:\n" + "\n".join(lines))


class EscalationCheck:
    """The admission step of the RBAC registries (see the module docstring)."""

    def __init__(self, authorizer: RbacAuthorizer) -> None:
        self.authorizer = authorizer

    def _exempt(self, user: UserInfo | None) -> bool:
        return user is None or SUPERUSER_GROUP in user.groups

    def _may(self, user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> bool:
        attributes = Attributes(verb, resource, api_group=RBAC_GROUP, namespace=namespace, name=name)
        return self.authorizer.decide(user, attributes).allowed

    def _confirm(self, user: UserInfo, kind: str, name: str, namespace: str, rules: tuple[PolicyRule, ...]) -> None:
        ok, missing = covers(self.authorizer.rules_for(user, namespace), rules)
        if not ok:
            raise _forbidden(kind, name, not_held_message(user, missing))

    async def role(self, obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        user = REQUEST_USER.get()
        if user is None or self._exempt(user):
            return
        kind = str(obj.get("kind"))
        if old is not None and old.get("rules") == obj.get("rules") and \
                old.get("aggregationRule") == obj.get("aggregationRule"):
            return
        namespace, name = _meta(obj)
        if self._may(user, "escalate", _PLURALS[kind], namespace, name):
            return
        self._confirm(user, kind, name, namespace, rules_from_api(obj.get("rules")))
        if obj.get("aggregationRule") or (old is not None and old.get("aggregationRule")):
            ok, _ = covers(self.authorizer.rules_for(user, namespace), FULL_AUTHORITY)
            if not ok:
                raise _forbidden(kind, name, "must have cluster-admin privileges to use the aggregationRule")

    async def binding(self, obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        user = REQUEST_USER.get()
        if user is None or self._exempt(user):
            return
        if old is not None and old.get("roleRef") == obj.get("roleRef") and \
                old.get("subjects") == obj.get("subjects"):
            return
        kind = str(obj.get("kind"))
        namespace, name = _meta(obj)
        ref = obj.get("roleRef") or {}
        ref_kind, ref_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        if ref_kind not in (ROLE, CLUSTER_ROLE):
            return  # validation refuses it with Kubernetes' message
        if self._may(user, "bind", _PLURALS[ref_kind], namespace, ref_name):
            return
        self.authorizer.sync()
        index = self.authorizer.index
        exists = (ref_name in index.cluster_roles if ref_kind == CLUSTER_ROLE
                  else (namespace, ref_name) in index.roles)
        if not exists:
            raise _forbidden(kind, name, f'{_PLURALS[ref_kind]}.{RBAC_GROUP} "{ref_name}" not found')
        self._confirm(user, kind, name, namespace, index.role_rules((ref_kind, ref_name), namespace))


def install_checks(ctx: ApiContext, authorizer: RbacAuthorizer) -> None:
    """Make the escalation checks the admission step of the four RBAC registries."""
    check = EscalationCheck(authorizer)
    for kind, hook in (("Role", check.role), ("ClusterRole", check.role), ("RoleBinding", check.binding),
                       ("ClusterRoleBinding", check.binding)):
        resource = lookup_kind(f"{RBAC_GROUP}/v1", kind)
        assert resource is not None, kind
        ctx.registry(resource).mutating_admission = hook
