"""The RBAC authorizer: Kubernetes' ``--authorization-mode=RBAC`` behind :class:`apiserver.authz.Authorizer`.

A request is allowed when the caller is in ``system:masters`` (Kubernetes' superuser group, checked
before any policy) or some ClusterRoleBinding, or RoleBinding in the request's namespace, grants a
rule that allows it (:mod:`apiserver.rbac.rules`). Everything else is denied with no reason, which
the middleware words as Kubernetes' Forbidden message.

Decisions read only the in-memory :class:`~apiserver.rbac.index.RbacIndex`, brought up to date
from the watch caches before each decision (no I/O, no await): a Role or binding written through
the apiserver takes effect once the watch cache has applied it, as with Kubernetes' informers.
"""

from __future__ import annotations

from apiserver.authn import UserInfo
from apiserver.authz import ALLOW, Attributes, Decision
from apiserver.nodeauthz import NodeAuthorizer
from apiserver.rbac import resolver
from apiserver.rbac.index import RBAC_KINDS, CacheFeed, RbacIndex
from apiserver.rbac.rules import PolicyRule
from apiserver.watchcache import WatchCaches
from machinery.resources import lookup_kind

SUPERUSER_GROUP = "system:masters"
DENY = Decision(False)


class RbacAuthorizer:
    """Answers from an :class:`RbacIndex`; ``feed`` (when given) refreshes it before each answer."""

    def __init__(self, index: RbacIndex, feed: CacheFeed | None = None, *,
                 node: NodeAuthorizer | None = None) -> None:
        self.index = index
        self.feed = feed
        self.node = node

    @classmethod
    def from_caches(cls, caches: WatchCaches, *, node_authorizer: bool = False) -> RbacAuthorizer:
        """An authorizer fed by the apiserver's watch caches of the RBAC resources (and of pods, for
        the Node authorizer in front of it when ``node_authorizer``)."""
        by_kind = {}
        for kind in RBAC_KINDS:
            resource = lookup_kind("rbac.authorization.k8s.io/v1", kind)
            assert resource is not None, kind
            by_kind[kind] = caches.get(resource)
        index = RbacIndex()
        node = NodeAuthorizer.from_caches(caches) if node_authorizer else None
        return cls(index, CacheFeed(index, by_kind), node=node)

    def sync(self) -> None:
        if self.feed is not None:
            self.feed.sync()

    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision:
        return self.decide(user, attributes)

    def decide(self, user: UserInfo, attributes: Attributes) -> Decision:
        """The decision, synchronously (the benchmark times this)."""
        if SUPERUSER_GROUP in user.groups:
            return ALLOW
        if self.node is not None:
            decision = self.node.decide(user, attributes)
            if decision is not None:
                return decision
        self.sync()
        return ALLOW if resolver.allows(self.index, user, attributes) else DENY

    def rules_for(self, user: UserInfo, namespace: str = "") -> list[PolicyRule]:
        """The rules ``user`` holds (cluster-wide, plus ``namespace``'s); everything for a superuser."""
        if SUPERUSER_GROUP in user.groups:
            return [PolicyRule(("*",), ("*",), ("*",)), PolicyRule(("*",), non_resource_urls=("*",))]
        self.sync()
        return resolver.rules_for(self.index, user, namespace)
