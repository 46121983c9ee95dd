"""In-memory indexes of Roles, ClusterRoles and their bindings, kept up to date from the watch caches.

The RBAC authorizer must answer in microseconds, so it never lists bindings on a request. This
module keeps, informer-style, what it needs:

* the rules of every ClusterRole (by name) and Role (by namespace and name);
* ClusterRoleBindings **by subject**: ``subject key -> {binding: cluster role}``;
* RoleBindings **by subject and namespace**: ``(subject key, namespace) -> {binding: role ref}``.

A subject key is ``u:<user name>`` or ``g:<group>``; a ServiceAccount subject is the user
``system:serviceaccount:<ns>:<name>`` it authenticates as (its namespace defaults to the
binding's, as Kubernetes' ``appliesToUser``). A request then costs one dictionary lookup per
name and group of the caller.

:class:`RbacIndex` takes objects (:meth:`RbacIndex.apply`); :class:`CacheFeed` feeds it from the
apiserver's :class:`~apiserver.watchcache.WatchCache` of each RBAC resource. ``sync()`` is called
before each decision: when no RBAC object changed it costs one comparison per resource; otherwise
it applies the ring's new events in order, or reloads a resource whose ring moved past the last
event it saw (a re-list, or a burst longer than the ring).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from apiserver.rbac.rules import PolicyRule, rules_from_api
from apiserver.watchcache import WatchCache

ROLE = "Role"
CLUSTER_ROLE = "ClusterRole"
ROLE_BINDING = "RoleBinding"
CLUSTER_ROLE_BINDING = "ClusterRoleBinding"
RBAC_KINDS = (ROLE, CLUSTER_ROLE, ROLE_BINDING, CLUSTER_ROLE_BINDING)
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"

RoleRef = tuple[str, str]
"""(kind, name) of the role a binding grants."""


def user_key(name: str) -> str:
    return "u:" + name


def group_key(name: str) -> str:
    return "g:" + name


def subject_keys(subjects: object, binding_namespace: str) -> tuple[str, ...]:
    """The subject keys a binding's ``subjects`` name (unknown kinds are skipped)."""
    keys: list[str] = []
    for s in subjects if isinstance(subjects, list) else ():
        if not isinstance(s, dict):
            continue
        kind, name = s.get("kind"), s.get("name")
        if not isinstance(name, str) or not name:
            continue
        if kind == "User":
            keys.append(user_key(name))
        elif kind == "Group":
            keys.append(group_key(name))
        elif kind == "ServiceAccount":
            namespace = s.get("namespace") or binding_namespace
            if namespace:
                keys.append(user_key(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"))
    return tuple(dict.fromkeys(keys))


def _meta(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _role_ref(obj: dict[str, Any]) -> RoleRef:
    ref = obj.get("roleRef") or {}
    return str(ref.get("kind") or ""), str(ref.get("name") or "")


@dataclass
class RbacIndex:
    """Roles' rules and bindings by subject (see the module docstring)."""

    cluster_roles: dict[str, tuple[PolicyRule, ...]] = field(default_factory=dict)
    roles: dict[tuple[str, str], tuple[PolicyRule, ...]] = field(default_factory=dict)
    _crb: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    _crb_by_subject: dict[str, dict[str, str]] = field(default_factory=dict)
    _rb: dict[tuple[str, str], tuple[RoleRef, tuple[str, ...]]] = field(default_factory=dict)
    _rb_by_subject: dict[tuple[str, str], dict[str, RoleRef]] = field(default_factory=dict)

    # ---- updates -----------------------------------------------------------------------------
    def apply(self, kind: str, obj: dict[str, Any], *, deleted: bool = False) -> None:
        """Add, replace or (``deleted``) remove one RBAC object."""
        namespace, name = _meta(obj)
        if kind == CLUSTER_ROLE:
            if deleted:
                self.cluster_roles.pop(name, None)
            else:
                self.cluster_roles[name] = rules_from_api(obj.get("rules"))
        elif kind == ROLE:
            if deleted:
                self.roles.pop((namespace, name), None)
            else:
                self.roles[(namespace, name)] = rules_from_api(obj.get("rules"))
        elif kind == CLUSTER_ROLE_BINDING:
            self._remove_cluster_binding(name)
            ref_kind, ref_name = _role_ref(obj)
            if not deleted and ref_kind == CLUSTER_ROLE:
                keys = subject_keys(obj.get("subjects"), "")
                self._crb[name] = (ref_name, keys)
                for key in keys:
                    self._crb_by_subject.setdefault(key, {})[name] = ref_name
        elif kind == ROLE_BINDING:
            self._remove_binding(namespace, name)
            if not deleted:
                ref = _role_ref(obj)
                keys = subject_keys(obj.get("subjects"), namespace)
                self._rb[(namespace, name)] = (ref, keys)
                for key in keys:
                    self._rb_by_subject.setdefault((key, namespace), {})[name] = ref

    def clear(self, kind: str) -> None:
        """Forget every object of ``kind`` (before reloading it)."""
        if kind == CLUSTER_ROLE:
            self.cluster_roles.clear()
        elif kind == ROLE:
            self.roles.clear()
        elif kind == CLUSTER_ROLE_BINDING:
            self._crb.clear()
            self._crb_by_subject.clear()
        elif kind == ROLE_BINDING:
            self._rb.clear()
            self._rb_by_subject.clear()

    def _remove_cluster_binding(self, name: str) -> None:
        old = self._crb.pop(name, None)
        if old is None:
            return
        for key in old[1]:
            by_binding = self._crb_by_subject.get(key)
            if by_binding is not None:
                by_binding.pop(name, None)
                if not by_binding:
                    del self._crb_by_subject[key]

    def _remove_binding(self, namespace: str, name: str) -> None:
        old = self._rb.pop((namespace, name), None)
        if old is None:
            return
        for key in old[1]:
            by_binding = self._rb_by_subject.get((key, namespace))
            if by_binding is not None:
                by_binding.pop(name, None)
                if not by_binding:
                    del self._rb_by_subject[(key, namespace)]

    # ---- reads -------------------------------------------------------------------------------
    def role_rules(self, ref: RoleRef, namespace: str) -> tuple[PolicyRule, ...]:
        """The rules a binding in ``namespace`` ('' for a cluster binding) grants through ``ref``."""
        kind, name = ref
        if kind == CLUSTER_ROLE:
            return self.cluster_roles.get(name, ())
        if kind == ROLE and namespace:
            return self.roles.get((namespace, name), ())
        return ()

    def cluster_grants(self, keys: tuple[str, ...]) -> Iterator[tuple[str, str]]:
        """(ClusterRoleBinding, ClusterRole) pairs that apply to any of ``keys``."""
        for key in keys:
            by_binding = self._crb_by_subject.get(key)
            if by_binding:
                yield from by_binding.items()

    def namespace_grants(self, keys: tuple[str, ...], namespace: str) -> Iterator[tuple[str, RoleRef]]:
        """(RoleBinding, role ref) pairs in ``namespace`` that apply to any of ``keys``."""
        for key in keys:
            by_binding = self._rb_by_subject.get((key, namespace))
            if by_binding:
                yield from by_binding.items()

    def cluster_role_names(self) -> list[str]:
        return sorted(self.cluster_roles)


@dataclass
class _FeedState:
    base: int = -1
    seen: int = -1


class CacheFeed:
    """Keeps an :class:`RbacIndex` in step with the watch caches of the four RBAC resources."""

    def __init__(self, index: RbacIndex, caches: dict[str, WatchCache]) -> None:
        """``caches`` maps each RBAC kind to its watch cache."""
        self.index = index
        self._caches = caches
        self._state = {kind: _FeedState() for kind in caches}

    def sync(self) -> None:
        for kind, cache in self._caches.items():
            state = self._state[kind]
            events = cache.events
            newest = events[-1].revision if events else cache.base_revision
            if newest == state.seen and cache.base_revision == state.base:
                continue
            if cache.base_revision > state.seen or cache.base_revision < state.base:
                self._reload(kind, cache)
            else:
                fresh = []
                for entry in reversed(events):
                    if entry.revision <= state.seen:
                        break
                    fresh.append(entry)
                for entry in reversed(fresh):
                    raw = entry.raw or entry.prev_raw
                    if raw:
                        self.index.apply(kind, orjson.loads(raw), deleted=entry.type == "DELETED")
            state.base, state.seen = cache.base_revision, newest

    def _reload(self, kind: str, cache: WatchCache) -> None:
        self.index.clear(kind)
        for raw in list(cache.raw.values()):
            self.index.apply(kind, orjson.loads(raw))
