"""Which rules apply to a user in a namespace (Kubernetes' ``DefaultRuleResolver``).

Reads the :class:`~apiserver.rbac.index.RbacIndex` only. Used by the authorizer's decisions
(:func:`allows`), by escalation checks (:func:`rules_for`: what the caller holds) and by
SelfSubjectRulesReview (``kubectl auth can-i --list``). Cluster-wide grants come from
ClusterRoleBindings; in a namespace, RoleBindings there add theirs.
"""

from __future__ import annotations

from apiserver.authn import UserInfo
from apiserver.authz import Attributes
from apiserver.rbac.index import RbacIndex, group_key, user_key
from apiserver.rbac.rules import PolicyRule


def keys_of(user: UserInfo) -> tuple[str, ...]:
    """The subject keys a user matches: its name and each of its groups."""
    return (user_key(user.name), *(group_key(g) for g in user.groups))


def allows(index: RbacIndex, user: UserInfo, attributes: Attributes) -> bool:
    """Whether some binding grants ``user`` what ``attributes`` ask (stops at the first rule that does)."""
    keys = keys_of(user)
    for _, cluster_role in index.cluster_grants(keys):
        for rule in index.cluster_roles.get(cluster_role, ()):
            if rule.allows(attributes):
                return True
    namespace = attributes.namespace
    if namespace:
        for _, ref in index.namespace_grants(keys, namespace):
            for rule in index.role_rules(ref, namespace):
                if rule.allows(attributes):
                    return True
    return False


def rules_for(index: RbacIndex, user: UserInfo, namespace: str = "") -> list[PolicyRule]:
    """Every rule granted to ``user`` cluster-wide and, with ``namespace``, in that namespace."""
    keys = keys_of(user)
    rules: list[PolicyRule] = []
    seen: set[PolicyRule] = set()
    sources = [index.cluster_roles.get(role, ()) for _, role in index.cluster_grants(keys)]
    if namespace:
        sources += [index.role_rules(ref, namespace) for _, ref in index.namespace_grants(keys, namespace)]
    for role_rules in sources:
        for rule in role_rules:
            if rule not in seen:
                seen.add(rule)
                rules.append(rule)
    return rules
