"""VolumeBinding: pods that use PersistentVolumeClaims go where their volumes can be reached
(Kubernetes' plugin of that name, without its assume cache: the PV binder does the binding).

Filter, per ``persistentVolumeClaim`` volume of the pod:

- a missing claim, or one being deleted, rejects every node (unresolvable);
- a bound claim's volume must allow the node (``nodeAffinity``): else "node(s) had volume node
  affinity conflict";
- an unbound claim of an ``Immediate`` class (or of no class) waits for the binder: "pod has unbound
  immediate PersistentVolumeClaims";
- an unbound ``WaitForFirstConsumer`` claim fits a node when a free matching volume is reachable from
  it, or when its class has a provisioner (``kubernetes.io/no-provisioner`` means none): else
  "node(s) didn't find available persistent volumes to bind".

PreBind (:meth:`VolumeBinding.pre_bind`, called by the scheduler before it binds the pod): each unbound
``WaitForFirstConsumer`` claim is annotated ``volume.kubernetes.io/selected-node: <node>``, which lets
the binder and the provisioner act; the kubelet then holds the pod in ContainerCreating until the
claim is Bound. The claims, volumes and classes come from informers the scheduler starts through
:meth:`VolumeBinding.watch`; a change to any of them retries unschedulable pods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from machinery.client import ApiClient, InformerFactory, SharedInformer
from machinery.errors import NotFoundError
from machinery.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES
from machinery.volumebinding import (
    SELECTED_NODE,
    WAIT_FOR_FIRST_CONSUMER,
    annotations_of,
    claim_class,
    find_matching_volume,
    node_affinity_allows,
    pod_claim_names,
)
from scheduler.cache import NodeInfo
from scheduler.framework import SKIP, CycleState, Status, unschedulable
from scheduler.podinfo import PodInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NO_PROVISIONER = "kubernetes.io/no-provisioner"
CONFLICT = "node(s) had volume node affinity conflict"
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NO_VOLUMES = "node(s) didn't find available persistent volumes to bind"


class VolumeBinding:
    name = "VolumeBinding"

    def __init__(self) -> None:
        self._claims: SharedInformer | None = None
        self._volumes: SharedInformer | None = None
        self._classes: SharedInformer | None = None

    def watch(self, factory: InformerFactory, on_change: Callable[[], None]) -> None:
        """Start following claims, volumes and classes (before the factory starts)."""
        self._claims = factory.informer(PERSISTENTVOLUMECLAIMS)
        self._volumes = factory.informer(PERSISTENTVOLUMES)
        self._classes = factory.informer(STORAGECLASSES)
        for informer in (self._claims, self._volumes, self._classes):
            informer.add_handler(on_add=lambda obj: on_change(), on_update=lambda old, cur: on_change())

    def _claim(self, namespace: str, name: str) -> Obj | None:
        return self._claims.store.get(f"{namespace}/{name}") if self._claims is not None else None

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        names = pod_claim_names(pod.obj)
        if not names or self._claims is None:
            return SKIP
        claims = []
        for name in names:
            claim = self._claim(pod.namespace, name)
            if claim is None:
                return unschedulable(self.name, f'persistentvolumeclaim "{name}" not found', resolvable=False)
            if (claim.get("metadata") or {}).get("deletionTimestamp"):
                return unschedulable(self.name, f'persistentvolumeclaim "{name}" is being deleted', resolvable=False)
            if not (claim.get("spec") or {}).get("volumeName") and not self._waits_for_consumer(claim):
                return unschedulable(self.name, UNBOUND_IMMEDIATE, resolvable=False)
            claims.append(claim)
        state["VolumeBinding.claims"] = claims
        return None

    def _class(self, claim: Obj) -> Obj | None:
        name = claim_class(claim)
        return self._classes.store.get(name) if name and self._classes is not None else None

    def _waits_for_consumer(self, claim: Obj) -> bool:
        storage_class = self._class(claim)
        return storage_class is not None and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        claims: list[Obj] = state.get("VolumeBinding.claims") or []
        volumes = self._volumes.store if self._volumes is not None else None
        for claim in claims:
            volume_name = (claim.get("spec") or {}).get("volumeName")
            if volume_name:
                volume = volumes.get(str(volume_name)) if volumes is not None else None
                if volume is not None and not node_affinity_allows(volume, node.name, node.labels):
                    return unschedulable(self.name, CONFLICT, resolvable=False)
                continue
            storage_class = self._class(claim) or {}
            if storage_class.get("provisioner") not in (None, "", NO_PROVISIONER):
                continue
            candidates = volumes.list() if volumes is not None else []
            if find_matching_volume(claim, candidates, node=(node.name, node.labels)) is None:
                return unschedulable(self.name, NO_VOLUMES)
        return None

    async def pre_bind(self, client: ApiClient, pod: Obj, node_name: str) -> None:
        """Annotate the pod's unbound WaitForFirstConsumer claims with the chosen node."""
        namespace = str((pod.get("metadata") or {}).get("namespace") or "")
        for name in pod_claim_names(pod):
            claim = self._claim(namespace, name)
            if claim is None or (claim.get("spec") or {}).get("volumeName") or not self._waits_for_consumer(claim):
                continue
            if annotations_of(claim).get(SELECTED_NODE) == node_name:
                continue
            try:
                patch = {"metadata": {"annotations": {SELECTED_NODE: node_name}}}
                await client.patch(PERSISTENTVOLUMECLAIMS, name, patch, namespace=namespace)
            except NotFoundError:
                continue
            log.info("claim %s/%s: selected node %s", namespace, name, node_name)
