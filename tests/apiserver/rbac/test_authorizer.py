"""The RBAC authorizer over its indexes, fed from watch caches like the apiserver's."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from apiserver.authn import UserInfo
from apiserver.authz import Attributes
from apiserver.rbac.authorizer import RbacAuthorizer
from apiserver.rbac.index import CacheFeed, RbacIndex
from apiserver.storage.interface import EventType, StorageEvent
from apiserver.watchcache import WatchCache
from machinery.resources import lookup_kind

RBAC = "rbac.authorization.k8s.io"
ALICE = UserInfo("alice", ("students", "system:authenticated"))
SA = UserInfo("system:serviceaccount:team:robot", ("system:serviceaccounts", "system:authenticated"))


def cluster_role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}


def role(ns: str, name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Role", "metadata": {"namespace": ns, "name": name}, "rules": list(rules)}


def binding(ns: str, name: str, ref: tuple[str, str], *subjects: dict[str, str]) -> dict[str, Any]:
    kind = "RoleBinding" if ns else "ClusterRoleBinding"
    meta = {"namespace": ns, "name": name} if ns else {"name": name}
    return {"kind": kind, "metadata": meta, "roleRef": {"apiGroup": RBAC, "kind": ref[0], "name": ref[1]},
            "subjects": list(subjects)}


def rule(verbs: list[str], resources: list[str], groups: list[str] | None = None) -> dict[str, Any]:
    return {"verbs": verbs, "apiGroups": groups or [""], "resources": resources}


class Caches:
    """The four RBAC watch caches, written like the apiserver's cache applies storage events."""

    def __init__(self, capacity: int = 100) -> None:
        self.revision = 0
        self.caches = {kind: WatchCache(lookup_kind(f"{RBAC}/v1", kind), capacity=capacity)  # type: ignore[arg-type]
                       for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")}

    def put(self, obj: dict[str, Any]) -> None:
        self._event(EventType.PUT, obj)

    def delete(self, obj: dict[str, Any]) -> None:
        self._event(EventType.DELETE, obj)

    def _event(self, type_: EventType, obj: dict[str, Any]) -> None:
        self.revision += 1
        cache = self.caches[obj["kind"]]
        meta = obj["metadata"]
        key = cache.resource.storage_key(meta.get("namespace"), meta["name"])
        cache.apply(StorageEvent(type_, key, orjson.dumps(obj), self.revision))


@pytest.fixture
def caches() -> Caches:
    return Caches()


@pytest.fixture
def authorizer(caches: Caches) -> RbacAuthorizer:
    index = RbacIndex()
    return RbacAuthorizer(index, CacheFeed(index, caches.caches))


def allowed(authorizer: RbacAuthorizer, user: UserInfo, attributes: Attributes) -> bool:
    return authorizer.decide(user, attributes).allowed


def test_nothing_is_allowed_without_bindings(authorizer: RbacAuthorizer) -> None:
    assert not allowed(authorizer, ALICE, Attributes("get", "pods", namespace="default"))


def test_superuser_group_is_always_allowed(authorizer: RbacAuthorizer) -> None:
    admin = UserInfo("kubernetes-admin", ("system:masters",))
    assert allowed(authorizer, admin, Attributes("delete", "nodes", name="n1"))
    assert allowed(authorizer, admin, Attributes("get", path="/metrics"))


def test_role_binding_grants_in_its_namespace_only(caches: Caches, authorizer: RbacAuthorizer) -> None:
    caches.put(role("a", "reader", rule(["get", "list"], ["pods"])))
    caches.put(binding("a", "alice-reads", ("Role", "reader"), {"kind": "User", "name": "alice"}))
    assert allowed(authorizer, ALICE, Attributes("list", "pods", namespace="a"))
    assert not allowed(authorizer, ALICE, Attributes("list", "pods", namespace="b"))
    assert not allowed(authorizer, ALICE, Attributes("list", "pods"))
    assert not allowed(authorizer, ALICE, Attributes("delete", "pods", namespace="a", name="p"))


def test_cluster_role_through_role_binding_and_cluster_binding(caches: Caches, authorizer: RbacAuthorizer) -> None:
    caches.put(cluster_role("viewer", rule(["get"], ["deployments"], ["apps"])))
    caches.put(binding("a", "students-view", ("ClusterRole", "viewer"), {"kind": "Group", "name": "students"}))
    deployment = Attributes("get", "deployments", api_group="apps", namespace="a", name="d")
    assert allowed(authorizer, ALICE, deployment)
    assert not allowed(authorizer, ALICE, Attributes("get", "deployments", api_group="apps", namespace="b"))
    caches.put(binding("", "all-view", ("ClusterRole", "viewer"), {"kind": "User", "name": "alice"}))
    assert allowed(authorizer, ALICE, Attributes("get", "deployments", api_group="apps", namespace="b"))


def test_service_account_subjects(caches: Caches, authorizer: RbacAuthorizer) -> None:
    caches.put(role("team", "r", rule(["get"], ["configmaps"])))
    caches.put(binding("team", "b", ("Role", "r"), {"kind": "ServiceAccount", "name": "robot"}))
    assert allowed(authorizer, SA, Attributes("get", "configmaps", namespace="team"))
    caches.put(cluster_role("c", rule(["list"], ["nodes"])))
    caches.put(binding("", "cb-no-ns", ("ClusterRole", "c"), {"kind": "ServiceAccount", "name": "robot"}))
    assert not allowed(authorizer, SA, Attributes("list", "nodes")), "a cluster binding's SA needs a namespace"
    caches.put(binding("", "cb", ("ClusterRole", "c"), {"kind": "ServiceAccount", "name": "robot",
                                                         "namespace": "team"}))
    assert allowed(authorizer, SA, Attributes("list", "nodes"))


def test_changes_and_deletes_take_effect(caches: Caches, authorizer: RbacAuthorizer) -> None:
    caches.put(cluster_role("c", rule(["get"], ["pods"])))
    b = binding("a", "b", ("ClusterRole", "c"), {"kind": "User", "name": "alice"})
    caches.put(b)
    pods = Attributes("get", "pods", namespace="a", name="p")
    assert allowed(authorizer, ALICE, pods)
    caches.put(cluster_role("c", rule(["list"], ["pods"])))
    assert not allowed(authorizer, ALICE, pods), "the role's new rules apply"
    caches.put(cluster_role("c", rule(["get"], ["pods"])))
    assert allowed(authorizer, ALICE, pods)
    b2 = binding("a", "b", ("ClusterRole", "c"), {"kind": "User", "name": "bob"})
    caches.put(b2)
    assert not allowed(authorizer, ALICE, pods), "a subject removed from a binding loses its rights"
    caches.put(b)
    caches.delete(b)
    assert not allowed(authorizer, ALICE, pods)


def test_a_ring_that_moved_past_the_feed_is_reloaded() -> None:
    caches = Caches(capacity=2)
    index = RbacIndex()
    authorizer = RbacAuthorizer(index, CacheFeed(index, caches.caches))
    caches.put(cluster_role("c", rule(["get"], ["pods"])))
    assert not allowed(authorizer, ALICE, Attributes("get", "pods", namespace="a"))
    for i in range(5):
        caches.put(binding("a", f"b{i}", ("ClusterRole", "c"), {"kind": "User", "name": f"user{i}"}))
    caches.put(binding("a", "alice", ("ClusterRole", "c"), {"kind": "User", "name": "alice"}))
    assert allowed(authorizer, ALICE, Attributes("get", "pods", namespace="a"))
    assert allowed(authorizer, UserInfo("user0", ()), Attributes("get", "pods", namespace="a"))


def test_rules_for_lists_cluster_and_namespace_rules(caches: Caches, authorizer: RbacAuthorizer) -> None:
    caches.put(cluster_role("c", rule(["get"], ["nodes"])))
    caches.put(role("a", "r", rule(["list"], ["pods"])))
    caches.put(binding("", "cb", ("ClusterRole", "c"), {"kind": "Group", "name": "students"}))
    caches.put(binding("a", "rb", ("Role", "r"), {"kind": "User", "name": "alice"}))
    assert [x.resources for x in authorizer.rules_for(ALICE, "a")] == [("nodes",), ("pods",)]
    assert [x.resources for x in authorizer.rules_for(ALICE, "b")] == [("nodes",)]
