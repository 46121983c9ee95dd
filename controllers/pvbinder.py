"""The PersistentVolume binder (Kubernetes' ``persistentvolume-binder`` controller, in short).

Started by ``controllers.manager``. One workqueue holds claims (``pvc:<ns>/<name>``) and volumes
(``pv:<name>``); handlers only enqueue, ``sync`` reads the informer caches and writes through the API
(a 409 requeues the key).

A claim without ``volumeName`` is matched against free volumes (:mod:`machinery.volumebinding`): for
a ``WaitForFirstConsumer`` class only once the scheduler put ``volume.kubernetes.io/selected-node`` on
it, and then only among volumes reachable from that node. Binding writes the volume's ``claimRef``,
then the claim's ``volumeName`` (annotated ``pv.kubernetes.io/bind-completed``), then both statuses
(``Bound``; the claim's status carries the volume's capacity and access modes). With no match the claim
stays ``Pending`` with Kubernetes' event: ``WaitForFirstConsumer``, ``ExternalProvisioning`` (the
claim is annotated ``volume.kubernetes.io/storage-provisioner`` for the class's provisioner),
``ProvisioningFailed`` (``storageclass.storage.k8s.io "x" not found``) or ``FailedBinding``.

A volume is ``Available`` while free, ``Bound`` while its claim (same UID) names it, ``Released`` once
that claim is gone. A released ``Retain`` volume stays so; ``Delete`` volumes are deleted by their
provisioner (``controllers.localpath`` for ``rancher.io/local-path``); a ``Delete``/``Recycle`` volume
no provisioner owns becomes ``Failed`` with Kubernetes' message.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from controllers.ownership import is_terminating
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import ApiClient, InformerFactory, run_workers, wait_for_cache_sync
from machinery.client.events import EventRecorder
from machinery.meta import object_key
from machinery.resources import NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES
from machinery.volumebinding import (
    BETA_STORAGE_PROVISIONER,
    BIND_COMPLETED,
    BOUND_BY_CONTROLLER,
    PROVISIONED_BY,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    WAIT_FOR_FIRST_CONSUMER,
    annotations_of,
    claim_class,
    find_matching_volume,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"
"""Provisioners whose volumes another controller deletes (so Delete does not mean Failed here)."""
DELETING_PROVISIONERS = frozenset({LOCAL_PATH_PROVISIONER})


def _phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


class PersistentVolumeBinderController:
    """Binds claims to volumes and keeps both phases."""

    name = "persistentvolume-binder"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings) -> None:
        self.client = client
        self.claims = factory.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = factory.informer(PERSISTENTVOLUMES)
        self.classes = factory.informer(STORAGECLASSES)
        self.nodes = factory.informer(NODES)
        self.queue = settings.workqueue(self.name)
        self.recorder = EventRecorder(client, component="persistentvolume-controller")
        self.claims.add_handler(on_add=self._claim_changed, on_update=lambda old, cur: self._claim_changed(cur),
                                on_delete=self._claim_deleted)
        self.volumes.add_handler(on_add=self._volume_changed, on_update=lambda old, cur: self._volume_changed(cur),
                                 on_delete=self._volume_changed)
        self.classes.add_handler(on_add=lambda sc: self._pending_claims(),
                                 on_update=lambda old, cur: self._pending_claims())

    # -- handlers: enqueue only ---------------------------------------------------------------------
    def _claim_changed(self, claim: Obj) -> None:
        self.queue.add("pvc:" + object_key(claim))
        volume = (claim.get("spec") or {}).get("volumeName")
        if volume:
            self.queue.add("pv:" + str(volume))

    def _claim_deleted(self, claim: Obj) -> None:
        volume = (claim.get("spec") or {}).get("volumeName")
        if volume:
            self.queue.add("pv:" + str(volume))
        for pv in self.volumes.store.list():
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if ref.get("uid") and ref.get("uid") == (claim.get("metadata") or {}).get("uid"):
                self.queue.add("pv:" + pv["metadata"]["name"])

    def _volume_changed(self, volume: Obj) -> None:
        self.queue.add("pv:" + volume["metadata"]["name"])
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            self.queue.add(f"pvc:{ref.get('namespace', '')}/{ref['name']}")
        else:
            self._pending_claims()

    def _pending_claims(self) -> None:
        for claim in self.claims.store.list():
            if not (claim.get("spec") or {}).get("volumeName"):
                self.queue.add("pvc:" + object_key(claim))

    # -- running ------------------------------------------------------------------------------------
    async def run(self, workers: int) -> None:
        await wait_for_cache_sync(self.claims, self.volumes, self.classes, self.nodes)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    async def sync(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "pvc":
            claim = self.claims.store.get(name)
            if claim is not None and not is_terminating(claim):
                await self.sync_claim(claim)
        elif kind == "pv":
            volume = self.volumes.store.get(name)
            if volume is not None:
                await self.sync_volume(volume)

    # -- claims -------------------------------------------------------------------------------------
    async def sync_claim(self, claim: Obj) -> None:
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if volume_name:
            await self._sync_named_claim(claim, str(volume_name))
            return
        class_name = claim_class(claim)
        storage_class = self.classes.store.get(class_name) if class_name else None
        node: tuple[str, dict[str, str]] | None = None
        if storage_class is not None and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER:
            selected = annotations_of(claim).get(SELECTED_NODE)
            if not selected:
                self.recorder.event(claim, "Normal", "WaitForFirstConsumer",
                                    "waiting for first consumer to be created before binding")
                return
            node_obj = self.nodes.store.get(selected) or {}
            node = (selected, dict((node_obj.get("metadata") or {}).get("labels") or {}))
        volume = find_matching_volume(claim, self.volumes.store.list(), node=node)
        if volume is not None:
            await self._bind(claim, volume)
            return
        if storage_class is None:
            if class_name:
                self.recorder.event(claim, "Warning", "ProvisioningFailed",
                                    f'storageclass.storage.k8s.io "{class_name}" not found')
            else:
                self.recorder.event(claim, "Normal", "FailedBinding",
                                    "no persistent volumes available for this claim and no storage class is set")
            return
        provisioner = str(storage_class.get("provisioner") or "")
        if annotations_of(claim).get(STORAGE_PROVISIONER) != provisioner:
            await self.client.patch(PERSISTENTVOLUMECLAIMS, claim["metadata"]["name"],
                                    {"metadata": {"annotations": {STORAGE_PROVISIONER: provisioner,
                                                                  BETA_STORAGE_PROVISIONER: provisioner}}},
                                    namespace=claim["metadata"]["namespace"])
        self.recorder.event(claim, "Normal", "ExternalProvisioning",
                            f"Waiting for a volume to be created either by the external provisioner '{provisioner}' "
                            "or manually by the system administrator. If volume creation is delayed, please verify "
                            "that the provisioner is running and correctly registered.")

    async def _sync_named_claim(self, claim: Obj, volume_name: str) -> None:
        volume = self.volumes.store.get(volume_name)
        if volume is None:
            if _phase(claim) == "Bound":
                await self._set_phase(PERSISTENTVOLUMECLAIMS, claim, "Lost")
                self.recorder.event(claim, "Warning", "ClaimLost",
                                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            return
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        uid = claim["metadata"].get("uid")
        if not ref or (ref.get("name") == claim["metadata"]["name"]
                       and ref.get("namespace") == claim["metadata"]["namespace"]
                       and ref.get("uid") in (None, "", uid)):
            await self._bind(claim, volume)
            return
        self.recorder.event(claim, "Warning", "FailedBinding",
                            f'volume "{volume_name}" already bound to a different claim.')

    async def _bind(self, claim: Obj, volume: Obj) -> None:
        """Volume side first (claimRef, Bound), then the claim (volumeName, Bound) — Kubernetes' order."""
        meta = claim["metadata"]
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") != meta.get("uid"):
            volume = copy.deepcopy(volume)
            volume["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                          "namespace": meta["namespace"], "name": meta["name"],
                                          "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}
            if not ref:
                volume["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
            volume = await self.client.update(PERSISTENTVOLUMES, volume)
            log.info("volume %s bound to claim %s/%s", volume["metadata"]["name"], meta["namespace"], meta["name"])
        if _phase(volume) != "Bound":
            await self._set_phase(PERSISTENTVOLUMES, volume, "Bound")
        claim_annotations = annotations_of(claim)
        if (claim.get("spec") or {}).get("volumeName") != volume["metadata"]["name"] or \
                claim_annotations.get(BIND_COMPLETED) != "yes":
            claim = copy.deepcopy(claim)
            if not claim["spec"].get("volumeName"):
                claim["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
            claim["spec"]["volumeName"] = volume["metadata"]["name"]
            claim["metadata"].setdefault("annotations", {})[BIND_COMPLETED] = "yes"
            claim = await self.client.update(PERSISTENTVOLUMECLAIMS, claim)
        status = claim.get("status") or {}
        spec = volume.get("spec") or {}
        wanted = {"phase": "Bound", "accessModes": spec.get("accessModes") or [],
                  "capacity": spec.get("capacity") or {}}
        if any(status.get(k) != v for k, v in wanted.items()):
            claim = copy.deepcopy(claim)
            claim["status"] = {**status, **wanted}
            await self.client.update(PERSISTENTVOLUMECLAIMS, claim, subresource="status")

    # -- volumes ------------------------------------------------------------------------------------
    async def sync_volume(self, volume: Obj) -> None:
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if not ref or not ref.get("uid"):
            if _phase(volume) != "Available" and not is_terminating(volume):
                await self._set_phase(PERSISTENTVOLUMES, volume, "Available")
            return
        claim = self.claims.store.get(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
        if claim is not None and claim["metadata"].get("uid") == ref.get("uid"):
            named = (claim.get("spec") or {}).get("volumeName")
            if named == volume["metadata"]["name"]:
                if _phase(volume) != "Bound":
                    await self._set_phase(PERSISTENTVOLUMES, volume, "Bound")
            elif named:
                await self._unbind(volume)  # the claim went to another volume
            return
        if claim is None:
            try:  # the cache may lag behind a claim just created: ask before releasing
                fresh = await self.client.get(PERSISTENTVOLUMECLAIMS, str(ref.get("name")),
                                              namespace=str(ref.get("namespace")))
                if fresh["metadata"].get("uid") == ref.get("uid"):
                    return
            except errors.NotFoundError:
                pass
        await self._release(volume)

    async def _unbind(self, volume: Obj) -> None:
        if annotations_of(volume).get(BOUND_BY_CONTROLLER) != "yes":
            return
        volume = copy.deepcopy(volume)
        volume["spec"].pop("claimRef", None)
        volume["metadata"]["annotations"].pop(BOUND_BY_CONTROLLER, None)
        await self.client.update(PERSISTENTVOLUMES, volume)

    async def _release(self, volume: Obj) -> None:
        phase = _phase(volume)
        if phase not in ("Released", "Failed"):
            volume = await self._set_phase(PERSISTENTVOLUMES, volume, "Released")
            phase = "Released"
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        if phase != "Released" or policy == "Retain":
            return
        if policy == "Delete" and annotations_of(volume).get(PROVISIONED_BY) in DELETING_PROVISIONERS:
            return  # its provisioner deletes it
        name = volume["metadata"]["name"]
        message = (f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
                   if policy == "Delete" else f'no volume plugin matched name: recycler for volume "{name}"')
        await self._set_phase(PERSISTENTVOLUMES, volume, "Failed", message=message)
        self.recorder.event(volume, "Warning", "VolumeFailedDelete" if policy == "Delete" else "VolumeFailedRecycle",
                            message)

    async def _set_phase(self, resource: Any, obj: Obj, phase: str, *, message: str = "") -> Obj:
        obj = copy.deepcopy(obj)
        status = dict(obj.get("status") or {})
        status["phase"] = phase
        if message:
            status["message"] = message
        else:
            status.pop("message", None)
        obj["status"] = status
        result: Obj = await self.client.update(resource, obj, subresource="status")
        return result
