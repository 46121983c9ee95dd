"""Storage object in-use protection: Kubernetes' ``pvc-protection`` and ``pv-protection`` controllers.

Started by ``controllers.manager``. Every claim carries the ``kubernetes.io/pvc-protection`` finalizer
and every volume ``kubernetes.io/pv-protection``: the apiserver's StorageObjectInUseProtection
admission adds them at create (``apiserver.admission_storageprotection``), and this controller adds
them to live objects that lack them (stored before that admission existed, or stripped by a
client), as Kubernetes' controllers do. A deleted claim keeps its
finalizer while any pod that is not finished (phase neither ``Succeeded`` nor ``Failed``) names it in a
``persistentVolumeClaim`` volume — the cache is asked first, then the API, so a pod just created is
not missed; a deleted volume keeps its finalizer while it is ``Bound``. Removing the finalizer lets the
apiserver finish the delete.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from controllers.ownership import is_terminating
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import ApiClient, InformerFactory, run_workers, wait_for_cache_sync
from machinery.meta import object_key
from machinery.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS
from machinery.volumebinding import PV_PROTECTION, PVC_PROTECTION, pod_claim_names

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _finalizers(obj: Obj) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def pod_uses_claim(pod: Obj, claim_name: str) -> bool:
    """Whether a pod that is not finished names the claim."""
    if ((pod.get("status") or {}).get("phase")) in ("Succeeded", "Failed"):
        return False
    return claim_name in pod_claim_names(pod)


class StorageProtectionController:
    """Adds and removes the pvc-protection and pv-protection finalizers."""

    name = "storage-protection"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings) -> None:
        self.client = client
        self.claims = factory.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = factory.informer(PERSISTENTVOLUMES)
        self.pods = factory.informer(PODS)
        self.queue = settings.workqueue(self.name)
        self.claims.add_handler(on_add=self._claim, on_update=lambda old, cur: self._claim(cur))
        self.volumes.add_handler(on_add=self._volume, on_update=lambda old, cur: self._volume(cur))
        self.pods.add_handler(on_update=lambda old, cur: self._pod(cur), on_delete=self._pod)

    def _claim(self, claim: Obj) -> None:
        self.queue.add("pvc:" + object_key(claim))

    def _volume(self, volume: Obj) -> None:
        self.queue.add("pv:" + volume["metadata"]["name"])

    def _pod(self, pod: Obj) -> None:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        for name in pod_claim_names(pod):
            self.queue.add(f"pvc:{namespace}/{name}")

    async def run(self, workers: int) -> None:
        await wait_for_cache_sync(self.claims, self.volumes, self.pods)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    async def sync(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "pvc":
            claim = self.claims.store.get(name)
            if claim is not None:
                await self._sync_claim(claim)
        else:
            volume = self.volumes.store.get(name)
            if volume is not None:
                await self._sync_volume(volume)

    async def _sync_claim(self, claim: Obj) -> None:
        present = PVC_PROTECTION in _finalizers(claim)
        if not is_terminating(claim):
            if not present:
                await self._set_finalizer(PERSISTENTVOLUMECLAIMS, claim, PVC_PROTECTION, add=True)
            return
        if present and not await self._in_use(claim):
            log.info("claim %s is no longer used by any pod: removing %s", object_key(claim), PVC_PROTECTION)
            await self._set_finalizer(PERSISTENTVOLUMECLAIMS, claim, PVC_PROTECTION, add=False)

    async def _in_use(self, claim: Obj) -> bool:
        namespace, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
        if any(pod_uses_claim(p, name) for p in self.pods.store.list()
               if (p.get("metadata") or {}).get("namespace") == namespace):
            return True
        listed = await self.client.list(PODS, namespace=namespace)
        return any(pod_uses_claim(p, name) for p in listed.get("items") or [])

    async def _sync_volume(self, volume: Obj) -> None:
        present = PV_PROTECTION in _finalizers(volume)
        if not is_terminating(volume):
            if not present:
                await self._set_finalizer(PERSISTENTVOLUMES, volume, PV_PROTECTION, add=True)
            return
        if present and (volume.get("status") or {}).get("phase") != "Bound":
            await self._set_finalizer(PERSISTENTVOLUMES, volume, PV_PROTECTION, add=False)

    async def _set_finalizer(self, resource: Any, obj: Obj, finalizer: str, *, add: bool) -> None:
        obj = copy.deepcopy(obj)
        finalizers = [f for f in _finalizers(obj) if f != finalizer]
        if add:
            finalizers.append(finalizer)
        obj["metadata"]["finalizers"] = finalizers
        try:
            await self.client.update(resource, obj)
        except errors.NotFoundError:
            return
