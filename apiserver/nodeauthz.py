"""The Node authorizer: a kubelet reads only what the pods bound to its node use.

Kubernetes runs ``--authorization-mode=Node,RBAC``: requests from a node identity (user
``system:node:<name>`` in the group ``system:nodes``) first meet the Node authorizer, which limits
each kubelet to the objects related to its own node in a graph of pods and what they reference::

    node ◀── pod (spec.nodeName) ◀── secret       (volumes, projected sources, env, envFrom, imagePullSecrets)
                                 ◀── configmap    (volumes, projected sources, env, envFrom)
                                 ◀── pvc          (persistentVolumeClaim volumes, ephemeral volumes)
                                 ◀── serviceaccount (spec.serviceAccountName)

:class:`NodeAuthorizer` decides, for a node:

* ``secrets``, ``configmaps``: ``get`` (and ``list``/``watch`` of one object by
  ``fieldSelector=metadata.name=…``) of an object some pod on the node references;
* ``persistentvolumeclaims``: ``get`` of a referenced claim, ``update``/``patch`` of its ``status``;
* ``serviceaccounts``: only ``create`` of ``serviceaccounts/token`` for an account a pod on the
  node runs as (the kubelet's projected tokens);

and says ``None`` (no opinion) for everything else and for every other caller, so RBAC (the
``system:node`` ClusterRole) decides. Where Kubernetes' Node authorizer answers "no opinion" and
lets RBAC deny, this one denies outright: kubelab's ``system:node`` role grants nodes wider reads
(the node network agent shares the kubelet's identity), and must not reopen what the graph closed.
The reasons are Kubernetes' words (``no relationship found between node 'n' and this object``).

The graph (:class:`NodeGraph`) follows the pods' watch cache (:class:`PodFeed`), synced before
each graph decision without I/O: a pod is related to its node once the watch cache has applied
its binding — before the kubelet, which watches the same cache, can learn of it.
:class:`apiserver.rbac.authorizer.RbacAuthorizer` asks this authorizer first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from apiserver.authn import UserInfo
from apiserver.authz import ALLOW, Attributes, Decision
from apiserver.watchcache import WatchCache, WatchCaches
from machinery.resources import PODS

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"

SECRET, CONFIGMAP, PVC, SERVICEACCOUNT = "secrets", "configmaps", "persistentvolumeclaims", "serviceaccounts"
Ref = tuple[str, str, str]
"""(resource, namespace, name) of an object a pod references."""


def node_identity(user: UserInfo) -> str | None:
    """The node a caller speaks for (``""``: a node of unknown name), or None when it is no node."""
    if NODES_GROUP not in user.groups or not user.name.startswith(NODE_USER_PREFIX):
        return None
    return user.name[len(NODE_USER_PREFIX):]


# --- the graph ----------------------------------------------------------------------------------------------


def _named(value: Any, key: str) -> Iterator[str]:
    if isinstance(value, Mapping) and value.get(key):
        yield str(value[key])


def _volume_refs(pod_name: str, volume: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    yield from ((SECRET, n) for n in _named(volume.get("secret"), "secretName"))
    yield from ((CONFIGMAP, n) for n in _named(volume.get("configMap"), "name"))
    yield from ((PVC, n) for n in _named(volume.get("persistentVolumeClaim"), "claimName"))
    if isinstance(volume.get("ephemeral"), Mapping):  # the claim the ephemeral volume controller makes
        yield PVC, f"{pod_name}-{volume.get('name', '')}"
    projected = volume.get("projected")
    for source in (projected.get("sources") or []) if isinstance(projected, Mapping) else []:
        if isinstance(source, Mapping):
            yield from ((SECRET, n) for n in _named(source.get("secret"), "name"))
            yield from ((CONFIGMAP, n) for n in _named(source.get("configMap"), "name"))


def _container_refs(container: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for source in container.get("envFrom") or []:
        if isinstance(source, Mapping):
            yield from ((SECRET, n) for n in _named(source.get("secretRef"), "name"))
            yield from ((CONFIGMAP, n) for n in _named(source.get("configMapRef"), "name"))
    for env in container.get("env") or []:
        value_from = env.get("valueFrom") if isinstance(env, Mapping) else None
        if isinstance(value_from, Mapping):
            yield from ((SECRET, n) for n in _named(value_from.get("secretKeyRef"), "name"))
            yield from ((CONFIGMAP, n) for n in _named(value_from.get("configMapKeyRef"), "name"))


@dataclass(frozen=True, slots=True)
class PodRefs:
    """A bound pod's node and the objects it references."""

    node: str
    refs: frozenset[Ref]


def pod_refs(pod: Mapping[str, Any]) -> PodRefs | None:
    """What ``pod`` ties to its node; None while it is not bound to one."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    node = str(spec.get("nodeName") or "")
    if not node:
        return None
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    found: set[tuple[str, str]] = {(SERVICEACCOUNT, str(spec.get("serviceAccountName") or "default"))}
    for volume in spec.get("volumes") or []:
        if isinstance(volume, Mapping):
            found.update(_volume_refs(name, volume))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, Mapping):
                found.update(_container_refs(container))
    for secret in spec.get("imagePullSecrets") or []:
        found.update((SECRET, n) for n in _named(secret, "name"))
    return PodRefs(node, frozenset((resource, namespace, ref) for resource, ref in found))


@dataclass
class NodeGraph:
    """Bound pods and, per node, how many of its pods reference each object."""

    pods: dict[tuple[str, str], PodRefs] = field(default_factory=dict)
    edges: dict[str, Counter[Ref]] = field(default_factory=dict)

    def apply(self, pod: Mapping[str, Any], *, deleted: bool = False) -> None:
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        old = self.pods.pop(key, None)
        if old is not None:
            counts = self.edges[old.node]
            counts.subtract(old.refs)
            for ref in old.refs:
                if counts[ref] <= 0:
                    del counts[ref]
            if not counts:
                del self.edges[old.node]
        new = None if deleted else pod_refs(pod)
        if new is not None:
            self.pods[key] = new
            self.edges.setdefault(new.node, Counter()).update(new.refs)

    def clear(self) -> None:
        self.pods.clear()
        self.edges.clear()

    def related(self, node: str, resource: str, namespace: str, name: str) -> bool:
        counts = self.edges.get(node)
        return counts is not None and counts.get((resource, namespace, name), 0) > 0


class PodFeed:
    """Keeps a :class:`NodeGraph` in step with the pods' watch cache (as ``rbac.index.CacheFeed``)."""

    def __init__(self, graph: NodeGraph, cache: WatchCache) -> None:
        self.graph = graph
        self.cache = cache
        self._seen = 0
        self._base = 0

    def sync(self) -> None:
        cache = self.cache
        events = cache.events
        newest = events[-1].revision if events else cache.base_revision
        if newest == self._seen and cache.base_revision == self._base:
            return
        if cache.base_revision > self._seen or cache.base_revision < self._base:
            self.graph.clear()
            for pod in cache.decoded():
                self.graph.apply(pod)
        else:
            fresh = []
            for entry in reversed(events):
                if entry.revision <= self._seen:
                    break
                fresh.append(entry)
            for entry in reversed(fresh):
                raw = entry.raw or entry.prev_raw
                if raw:
                    self.graph.apply(orjson.loads(raw), deleted=entry.type == "DELETED")
        self._base, self._seen = cache.base_revision, newest


# --- decisions ----------------------------------------------------------------------------------------------


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


class NodeAuthorizer:
    """Decides node requests on graph-scoped resources; None (no opinion) for the rest."""

    def __init__(self, graph: NodeGraph, feed: PodFeed | None = None) -> None:
        self.graph = graph
        self.feed = feed

    @classmethod
    def from_caches(cls, caches: WatchCaches) -> NodeAuthorizer:
        graph = NodeGraph()
        return cls(graph, PodFeed(graph, caches.get(PODS)))

    def decide(self, user: UserInfo, a: Attributes) -> Decision | None:
        node = node_identity(user)
        if node is None or not a.resource_request or a.api_group:
            return None
        if not node:
            return _deny(f'unknown node for user "{user.name}"')
        if a.resource in (SECRET, CONFIGMAP):
            return self._read_namespaced(node, a)
        if a.resource == PVC:
            if a.subresource == "status":
                if a.verb not in ("update", "patch"):
                    return _deny("can only get/update/patch this type")
                return self._related(node, a)
            if a.verb != "get":
                return _deny("can only get individual resources of this type")
            if a.subresource:
                return _deny("cannot get subresource")
            return self._related(node, a)
        if a.resource == SERVICEACCOUNT:
            if a.verb != "create" or not a.name:
                return _deny("can only create tokens for individual service accounts")
            if a.subresource != "token":
                return _deny("can only create token subresource of serviceaccount")
            return self._related(node, a)
        return None

    def _read_namespaced(self, node: str, a: Attributes) -> Decision:
        if a.verb not in ("get", "list", "watch"):
            return _deny("can only read resources of this type")
        if a.subresource:
            return _deny("cannot read subresource")
        if not a.namespace:
            return _deny("can only read namespaced object of this type")
        return self._related(node, a)

    def _related(self, node: str, a: Attributes) -> Decision:
        if not a.name:
            return _deny("No Object name found")
        if self.feed is not None:
            self.feed.sync()
        if self.graph.related(node, a.resource, a.namespace, a.name):
            return ALLOW
        return _deny(f"no relationship found between node '{node}' and this object")
