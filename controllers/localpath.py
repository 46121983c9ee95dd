"""The local-path provisioner: k3s's ``rancher.io/local-path``, as a controller of the controller-manager.

Started by ``controllers.manager``. A claim whose class names this provisioner and that the binder
annotated for it (``volume.kubernetes.io/storage-provisioner``) gets a PersistentVolume named
``pvc-<claim uid>`` once a node is known — the scheduler's ``volume.kubernetes.io/selected-node`` for
``WaitForFirstConsumer`` classes (the class k3s and kubelab ship); an ``Immediate`` class gets k3s's
"no node was specified" error. The volume is a ``hostPath`` directory (``DirectoryOrCreate``)
``<storage_dir>/<pv>_<namespace>_<claim>`` (k3s's layout), pinned to the node by
``kubernetes.io/hostname`` node affinity, pre-bound to the claim (``claimRef`` with its UID), with the
class's reclaim policy; the binder finishes the binding.

Why here and not in the kubelet: every kubelab node of a cluster runs on one host (Docker nodes share
the host's disk; hollow nodes have none), so the controller-manager on that host can remove a released
volume's directory itself, where k3s has to start a helper pod on the node. The kubelet creates the
directory when it first mounts the volume (``DirectoryOrCreate``), so a hollow node never creates one.

A released ``Delete`` volume of this provisioner is removed: its directory (only if it lies under
``storage_dir``), then the PersistentVolume. ``Retain`` keeps both, as on k3s.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from controllers.ownership import is_terminating
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import ApiClient, InformerFactory, run_workers, wait_for_cache_sync
from machinery.client.events import EventRecorder
from machinery.meta import object_key
from machinery.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES
from machinery.volumebinding import (
    PROVISIONED_BY,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    WAIT_FOR_FIRST_CONSUMER,
    annotations_of,
    claim_class,
    hostname_affinity,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PROVISIONER = "rancher.io/local-path"
SELECTED_NODE_ANNOTATION = "local.path.provisioner/selected-node"


def volume_name(claim: Obj) -> str:
    """``pvc-<claim uid>``, the name Kubernetes' provisioners give a claim's volume."""
    return f"pvc-{claim['metadata']['uid']}"


def volume_dir(storage_dir: Path, pv_name: str, claim: Obj) -> Path:
    """``<storage_dir>/<pv>_<namespace>_<claim>``."""
    meta = claim["metadata"]
    return storage_dir / f"{pv_name}_{meta['namespace']}_{meta['name']}"


def provisioned_volume(claim: Obj, storage_class: Obj, node: str, storage_dir: Path) -> Obj:
    """The PersistentVolume this provisioner makes for ``claim`` on ``node``."""
    meta = claim["metadata"]
    spec = claim.get("spec") or {}
    name = volume_name(claim)
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER, SELECTED_NODE_ANNOTATION: node}},
        "spec": {
            "capacity": {"storage": str(((spec.get("resources") or {}).get("requests") or {}).get("storage"))},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta["namespace"],
                         "name": meta["name"], "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion")},
            "hostPath": {"path": str(volume_dir(storage_dir, name, claim)), "type": "DirectoryOrCreate"},
            "nodeAffinity": hostname_affinity(node),
        },
    }


def remove_volume_dir(storage_dir: Path, path: str) -> bool:
    """Remove a volume directory if it lies inside ``storage_dir`` (True when nothing is left)."""
    target = Path(path).resolve()
    root = storage_dir.resolve()
    if root not in target.parents:
        return False
    shutil.rmtree(target, ignore_errors=True)
    return not target.exists()


class LocalPathProvisioner:
    """Makes and removes ``rancher.io/local-path`` volumes."""

    name = "local-path-provisioner"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings) -> None:
        self.client = client
        self.storage_dir = settings.storage_dir
        self.claims = factory.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = factory.informer(PERSISTENTVOLUMES)
        self.classes = factory.informer(STORAGECLASSES)
        self.queue = settings.workqueue(self.name)
        self.recorder = EventRecorder(client, component=f"{PROVISIONER}_kubelab")
        self.claims.add_handler(on_add=self._claim, on_update=lambda old, cur: self._claim(cur))
        self.volumes.add_handler(on_add=self._volume, on_update=lambda old, cur: self._volume(cur))

    def _claim(self, claim: Obj) -> None:
        if annotations_of(claim).get(STORAGE_PROVISIONER) == PROVISIONER and not (claim.get("spec") or {}).get(
                "volumeName"):
            self.queue.add("pvc:" + object_key(claim))

    def _volume(self, volume: Obj) -> None:
        if annotations_of(volume).get(PROVISIONED_BY) == PROVISIONER and \
                (volume.get("status") or {}).get("phase") == "Released":
            self.queue.add("pv:" + volume["metadata"]["name"])

    async def run(self, workers: int) -> None:
        await wait_for_cache_sync(self.claims, self.volumes, self.classes)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    async def sync(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "pvc":
            claim = self.claims.store.get(name)
            if claim is not None and not is_terminating(claim):
                await self.provision(claim)
        else:
            volume = self.volumes.store.get(name)
            if volume is not None:
                await self.delete(volume)

    async def provision(self, claim: Obj) -> None:
        if (claim.get("spec") or {}).get("volumeName") or \
                annotations_of(claim).get(STORAGE_PROVISIONER) != PROVISIONER:
            return
        if self.volumes.store.get(volume_name(claim)) is not None:
            return
        storage_class = self.classes.store.get(claim_class(claim))
        if storage_class is None or storage_class.get("provisioner") != PROVISIONER:
            return
        node = annotations_of(claim).get(SELECTED_NODE)
        if not node:
            if storage_class.get("volumeBindingMode") != WAIT_FOR_FIRST_CONSUMER:
                self.recorder.event(claim, "Warning", "ProvisioningFailed",
                                    "failed to provision volume with StorageClass "
                                    f"\"{storage_class['metadata']['name']}\": configuration error, "
                                    "no node was specified")
            return
        key = object_key(claim)
        self.recorder.event(claim, "Normal", "Provisioning",
                            f'External provisioner is provisioning volume for claim "{key}"')
        volume = provisioned_volume(claim, storage_class, node, self.storage_dir)
        try:
            await self.client.create(PERSISTENTVOLUMES, volume)
        except errors.AlreadyExistsError:
            return
        log.info("provisioned %s for claim %s on node %s", volume["metadata"]["name"], key, node)
        self.recorder.event(claim, "Normal", "ProvisioningSucceeded",
                            f"Successfully provisioned volume {volume['metadata']['name']}")

    async def delete(self, volume: Obj) -> None:
        spec = volume.get("spec") or {}
        if annotations_of(volume).get(PROVISIONED_BY) != PROVISIONER or \
                (volume.get("status") or {}).get("phase") != "Released" or \
                spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = str((spec.get("hostPath") or spec.get("local") or {}).get("path") or "")
        if path and not await asyncio.to_thread(remove_volume_dir, self.storage_dir, path):
            log.warning("volume %s: directory %s is not under %s or could not be removed; kept",
                        volume["metadata"]["name"], path, self.storage_dir)
        try:
            await self.client.delete(PERSISTENTVOLUMES, volume["metadata"]["name"],
                                     preconditions={"uid": volume["metadata"]["uid"]})
        except (errors.NotFoundError, errors.ConflictError):
            return
        log.info("deleted released volume %s (%s)", volume["metadata"]["name"], path)
