"""meshd's view of the cluster: informers over Services, EndpointSlices, Pods, Namespaces and Istio's
kinds, and the immutable :class:`MeshSnapshot` the compiler reads.

Called by :mod:`meshd.control.server`; the discovery server (:mod:`meshd.control.push`) asks for
:meth:`MeshModel.snapshot` when it pushes, and :mod:`meshd.control.status` analyses the same
snapshot. Every informer event bumps :attr:`MeshModel.generation` and calls the ``on_change``
callbacks (the push debouncer): handlers only signal, nothing is compiled on the event path.

A snapshot is built at most once per generation and shared by every proxy compiled from it;
objects inside are the informers' dicts and must not be changed. A Service's endpoints come
from its ``discovery.k8s.io/v1`` EndpointSlices (as istiod reads them): every slice labelled
``kubernetes.io/service-name: <service>`` in the Service's namespace, whoever manages it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from machinery.client import InformerFactory, SharedInformer
from machinery.resources import ENDPOINTSLICES, NAMESPACES, PODS, SERVICES, ResourceInfo
from meshd.control.crds import (
    AUTHORIZATION_POLICIES,
    DESTINATION_RULES,
    PEER_AUTHENTICATIONS,
    SIDECARS,
    VIRTUAL_SERVICES,
)

__all__ = ["SERVICE_NAME_LABEL", "Key", "MeshModel", "MeshSnapshot", "Obj", "key_of"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]
"""(namespace, name)."""

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""The label naming the Service an EndpointSlice belongs to."""


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


@dataclass(frozen=True)
class MeshSnapshot:
    """Everything a compile reads, at one generation."""

    generation: int = 0
    services: dict[Key, Obj] = field(default_factory=dict)
    endpoint_slices: dict[Key, tuple[Obj, ...]] = field(default_factory=dict)
    """Service key → its EndpointSlices (by name)."""
    pods: dict[Key, Obj] = field(default_factory=dict)
    namespaces: dict[str, Obj] = field(default_factory=dict)
    virtual_services: tuple[Obj, ...] = ()
    destination_rules: tuple[Obj, ...] = ()
    peer_authentications: tuple[Obj, ...] = ()
    sidecars: tuple[Obj, ...] = ()
    authorization_policies: tuple[Obj, ...] = ()
    pods_by_ip: dict[str, Obj] = field(default_factory=dict)

    @classmethod
    def build(cls, *, generation: int = 0, services: Sequence[Obj] = (), endpoint_slices: Sequence[Obj] = (),
              pods: Sequence[Obj] = (), namespaces: Sequence[Obj] = (), virtual_services: Sequence[Obj] = (),
              destination_rules: Sequence[Obj] = (), peer_authentications: Sequence[Obj] = (),
              sidecars: Sequence[Obj] = (), authorization_policies: Sequence[Obj] = ()) -> MeshSnapshot:
        """A snapshot of plain lists (tests build them this way; the model from its stores)."""
        by_ip: dict[str, Obj] = {}
        for pod in pods:
            status = pod.get("status") or {}
            # A finished pod keeps reporting its podIP after the node gave the address to a new pod.
            if status.get("podIP") and status.get("phase") not in ("Succeeded", "Failed"):
                by_ip[str(status["podIP"])] = pod
        return cls(
            generation=generation,
            services={key_of(o): o for o in services},
            endpoint_slices=_slices_by_service(endpoint_slices),
            pods={key_of(o): o for o in pods},
            namespaces={key_of(o)[1]: o for o in namespaces},
            virtual_services=_ordered(virtual_services),
            destination_rules=_ordered(destination_rules),
            peer_authentications=_ordered(peer_authentications),
            sidecars=_ordered(sidecars),
            authorization_policies=_ordered(authorization_policies),
            pods_by_ip=by_ip,
        )

    def find(self, kind: str, namespace: str, name: str) -> Obj | None:
        """An Istio object of this snapshot by kind (``VirtualService`` …) and key."""
        pool = {"VirtualService": self.virtual_services, "DestinationRule": self.destination_rules,
                "PeerAuthentication": self.peer_authentications, "Sidecar": self.sidecars,
                "AuthorizationPolicy": self.authorization_policies}.get(kind, ())
        return next((o for o in pool if key_of(o) == (namespace, name)), None)


def _slices_by_service(slices: Sequence[Obj]) -> dict[Key, tuple[Obj, ...]]:
    grouped: dict[Key, list[Obj]] = {}
    for item in slices:
        namespace = key_of(item)[0]
        service = ((item.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            grouped.setdefault((namespace, str(service)), []).append(item)
    return {k: tuple(sorted(v, key=lambda o: key_of(o)[1])) for k, v in grouped.items()}


def _ordered(objs: Sequence[Obj]) -> tuple[Obj, ...]:
    """Oldest first (Istio's rule: of conflicting resources, the oldest wins), then by name."""
    return tuple(sorted(objs, key=lambda o: (str((o.get("metadata") or {}).get("creationTimestamp") or ""),
                                             key_of(o))))


class MeshModel:
    """The informers meshd runs and the snapshot built from them."""

    WATCHED: tuple[ResourceInfo, ...] = (SERVICES, ENDPOINTSLICES, PODS, NAMESPACES, VIRTUAL_SERVICES,
                                         DESTINATION_RULES, PEER_AUTHENTICATIONS, SIDECARS, AUTHORIZATION_POLICIES)

    def __init__(self, factory: InformerFactory) -> None:
        self.factory = factory
        self.informers: dict[ResourceInfo, SharedInformer] = {r: factory.informer(r) for r in self.WATCHED}
        self.generation = 0
        self._snapshot: MeshSnapshot | None = None
        self._listeners: list[Callable[[], None]] = []
        for resource, informer in self.informers.items():
            changed, updated = self._handlers(resource)
            informer.add_handler(on_add=changed, on_update=updated, on_delete=changed)

    def _handlers(self, resource: ResourceInfo) -> tuple[Callable[[Obj], None], Callable[[Obj, Obj], None]]:
        def changed(obj: Obj) -> None:
            self._changed(resource, obj)

        def updated(_old: Obj, new: Obj) -> None:
            self._changed(resource, new)

        return changed, updated

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _changed(self, resource: ResourceInfo, obj: Obj) -> None:
        if resource is PODS and _pod_unchanged_for_mesh(obj, self._snapshot):
            return
        self.generation += 1
        for callback in self._listeners:
            callback()

    def store(self, resource: ResourceInfo) -> list[Obj]:
        return self.informers[resource].store.list()

    def snapshot(self) -> MeshSnapshot:
        if self._snapshot is None or self._snapshot.generation != self.generation:
            self._snapshot = MeshSnapshot.build(
                generation=self.generation,
                services=self.store(SERVICES), endpoint_slices=self.store(ENDPOINTSLICES),
                pods=self.store(PODS),
                namespaces=self.store(NAMESPACES), virtual_services=self.store(VIRTUAL_SERVICES),
                destination_rules=self.store(DESTINATION_RULES),
                peer_authentications=self.store(PEER_AUTHENTICATIONS), sidecars=self.store(SIDECARS),
                authorization_policies=self.store(AUTHORIZATION_POLICIES))
        return self._snapshot


def _pod_unchanged_for_mesh(pod: Obj, snapshot: MeshSnapshot | None) -> bool:
    """A pod update that changes nothing the compiler reads (status churn) triggers no push."""
    if snapshot is None:
        return False
    old = snapshot.pods.get(key_of(pod))
    if old is None:
        return False
    return _mesh_view(old) == _mesh_view(pod)


def _mesh_view(pod: Obj) -> tuple[Any, ...]:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    return (meta.get("labels"), meta.get("ownerReferences"), meta.get("deletionTimestamp"),
            spec.get("serviceAccountName"), [c.get("name") for c in spec.get("containers") or []],
            [c.get("name") for c in spec.get("initContainers") or []],
            [c.get("ports") for c in spec.get("containers") or []], status.get("podIP"))
