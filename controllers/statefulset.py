"""The StatefulSet controller: pods with stable names, ordinals, DNS identities and claims,
created, deleted and updated in order (Kubernetes' ``stateful_set_control.go``).

Started by ``controllers.manager``. Handlers only enqueue; ``sync(key)``:

1. claims pods (selector and ``<set>-<n>`` names), records the template as a ControllerRevision
   (``controllers.controllerrevision``);
2. creates the claims from ``volumeClaimTemplates`` and the missing pods of ordinals
   ``[start, start+replicas)``, lowest first. ``OrderedReady`` waits for each pod to be Running and
   Ready before the next and deletes surplus ordinals highest first, one at a time, only while
   every pod is healthy; ``Parallel`` does both at once. A Failed pod is deleted and recreated;
3. RollingUpdate replaces pods not at the update revision from the highest ordinal down to
   ``partition``, at most ``maxUnavailable`` (1) at a time and only when the others are healthy;
   OnDelete leaves that to the user;
4. writes the status (``currentRevision`` becomes the update revision once every pod has it) and
   trims the revision history. ``persistentVolumeClaimRetentionPolicy`` Delete makes the set
   (whenDeleted) or the condemned pod (whenScaled) own the claims, so the garbage collector
   removes them. Expectations keep a stale cache from repeating creations and deletions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controllers import statefulset_util as su
from controllers.controllerrevision import History, Revisions
from controllers.expectations import ControllerExpectations
from controllers.ownership import RefManager, controller_of, is_terminating, labels_of, new_controller_ref, owning_key
from controllers.podcontrol import PodControl
from controllers.replicaset_util import is_pod_available
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import (
    INDEX_NAMESPACE,
    ApiClient,
    EventRecorder,
    InformerFactory,
    run_workers,
    wait_for_cache_sync,
)
from machinery.meta import object_key, utcnow
from machinery.resources import CONTROLLERREVISIONS, PODS, STATEFULSETS, lookup
from machinery.selectors import LabelSelector, from_label_selector

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class StatefulSetController:
    """Reconciles StatefulSets with their pods, claims and revisions."""

    name = "statefulset"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.sts_informer = factory.informer(STATEFULSETS)
        self.pod_informer = factory.informer(PODS)
        self.history = History(client, factory.informer(CONTROLLERREVISIONS), api_version="apps/v1",
                               kind="StatefulSet")
        self.queue = settings.workqueue(self.name)
        self.expectations = ControllerExpectations()
        self.recorder = EventRecorder(client, component="statefulset-controller")
        self.pod_control = PodControl(self)
        self.sts_informer.add_handler(on_add=self._enqueue, on_update=lambda old, cur: self._enqueue(cur),
                                      on_delete=self._sts_deleted)
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted)

    async def run(self, workers: int) -> None:
        """Sync StatefulSets with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.sts_informer, self.pod_informer, self.history.informer)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    # -- event handlers: enqueue only ---------------------------------------------------------

    def _enqueue(self, sts: Obj) -> None:
        self.queue.add(object_key(sts))

    def _sts_deleted(self, sts: Obj) -> None:
        self.expectations.delete(object_key(sts))
        self.queue.add(object_key(sts))

    def _owner(self, pod: Obj) -> str | None:
        return owning_key(pod, "StatefulSet", self.sts_informer.store.get)

    def _orphan_keys(self, pod: Obj) -> list[str]:
        keys = []
        for sts in self.sts_informer.store.by_index(INDEX_NAMESPACE, pod["metadata"].get("namespace", "")):
            sel = _selector(sts)
            if sel is not None and not sel.empty() and sel.matches(labels_of(pod)):
                keys.append(object_key(sts))
        return keys

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            if is_terminating(pod):
                self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)
        elif controller_of(pod) is None:
            for k in self._orphan_keys(pod):
                self.queue.add(k)

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        key = self._owner(cur)
        if key is not None:
            if is_terminating(cur):
                self.expectations.deletion_observed(key, object_key(cur))
            self.queue.add(key)
            min_ready = int(((self.sts_informer.store.get(key) or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready > 0:
                self.queue.add_after(key, float(min_ready) + 0.5)
        elif controller_of(cur) is None:
            for k in self._orphan_keys(cur):
                self.queue.add(k)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner(pod)
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """Reconcile the StatefulSet ``key`` (``namespace/name``) from the informer caches."""
        sts = self.sts_informer.store.get(key)
        if sts is None:
            self.expectations.delete(key)
            return
        selector = _selector(sts)
        if selector is None or selector.empty():
            log.warning("statefulset %s: invalid selector, skipping", key)
            return
        name = sts["metadata"]["name"]
        candidates = [p for p in self.pod_informer.store.by_index(INDEX_NAMESPACE, sts["metadata"]["namespace"])
                      if su.ordinal_of(name, p) is not None]
        pods = await self._claim(sts, selector, candidates)
        revisions = await self.history.sync(sts)
        error: errors.ApiError | None = None
        if self.expectations.satisfied(key) and not is_terminating(sts):
            try:
                await _Update(self, key, sts, pods, revisions).run()
            except errors.ApiError as exc:
                error = exc
        await self._write_status(sts, pods, revisions)
        keep = {revisions.current["metadata"]["name"], revisions.update["metadata"]["name"]}
        keep |= {su.revision_of(p) for p in pods}
        await self.history.truncate(sts, keep)
        if error is not None:
            raise error

    async def _claim(self, sts: Obj, selector: LabelSelector, candidates: list[Obj]) -> list[Obj]:
        meta = sts["metadata"]

        async def patch(namespace: str, name: str, body: Obj) -> Obj:
            return await self.client.patch(PODS, name, body, namespace=namespace)

        async def can_adopt() -> None:
            fresh = await self.client.get(STATEFULSETS, meta["name"], namespace=meta["namespace"])
            if fresh["metadata"].get("uid") != meta["uid"] or is_terminating(fresh):
                raise errors.ConflictError(f"statefulset {meta['name']} changed; not adopting pods")

        manager = RefManager(owner=sts, selector=selector, owner_api_version="apps/v1", owner_kind="StatefulSet",
                             resource=PODS, patch=patch, can_adopt=can_adopt)
        return await manager.claim(candidates)

    async def _write_status(self, sts: Obj, pods: list[Obj], revisions: Revisions) -> None:
        current = revisions.current["metadata"]["name"]
        update = revisions.update["metadata"]["name"]
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        now = self.clock()
        live = [p for p in pods if not is_terminating(p)]
        available = sum(1 for p in live if su.is_running_and_ready(p) and is_pod_available(p, min_ready, now))
        status = su.compute_status(sts, pods, current, update, revisions.collision_count, available)
        if status["updatedReplicas"] == su.replicas(sts) and status["readyReplicas"] == su.replicas(sts) \
                and status["replicas"] == su.replicas(sts):
            status["currentRevision"] = update
            status["currentReplicas"] = status["updatedReplicas"]
        old = sts.get("status") or {}
        if {k: v for k, v in old.items() if k != "conditions"} == status:
            return
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        try:
            await self.client.update(STATEFULSETS, {**sts, "status": status}, subresource="status")
        except errors.NotFoundError:
            return


class _Update:
    """One pass of ``UpdateStatefulSet`` over one set: creations, scale-down, rolling update."""

    def __init__(self, ctl: StatefulSetController, key: str, sts: Obj, pods: list[Obj], revisions: Revisions) -> None:
        self.ctl, self.key, self.sts, self.revisions = ctl, key, sts, revisions
        self.spec: Obj = sts.get("spec") or {}
        self.name = str(sts["metadata"]["name"])
        self.ordered = self.spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        start = su.start_ordinal(sts)
        self.valid = range(start, start + su.replicas(sts))
        self.by_ordinal: dict[int, Obj] = {}
        self.condemned: list[Obj] = []
        for pod in pods:
            o = su.ordinal_of(self.name, pod)
            if o is not None and o in self.valid:
                self.by_ordinal[o] = pod
            else:
                self.condemned.append(pod)
        self.condemned.sort(key=lambda p: su.ordinal_of(self.name, p) or 0, reverse=True)
        self.owner_ref = new_controller_ref(sts, api_version="apps/v1", kind="StatefulSet")

    def _healthy(self, pod: Obj) -> bool:
        return su.is_running_and_ready(pod) and not is_terminating(pod)

    async def run(self) -> None:
        if not await self._create_and_replace():
            return
        if not await self._scale_down():
            return
        await self._rolling_update()

    async def _create_and_replace(self) -> bool:
        """Missing and failed pods, lowest ordinal first; False when an ordered set must wait."""
        for ordinal in self.valid:
            pod = self.by_ordinal.get(ordinal)
            if pod is None:
                await self._create(ordinal)
                if self.ordered:
                    return False
                continue
            if su.is_failed(pod) and not is_terminating(pod):
                await self._delete(pod, f"delete Pod {pod['metadata']['name']} in StatefulSet {self.name} "
                                        "successful (failed pod)")
                if self.ordered:
                    return False
                continue
            if self.ordered and not self._healthy(pod):
                return False
        return True

    async def _scale_down(self) -> bool:
        for pod in self.condemned:
            if is_terminating(pod):
                if self.ordered:
                    return False
                continue
            if self.ordered and any(not self._healthy(p) for p in self.by_ordinal.values()):
                return False
            await self._retain_or_release_claims(pod)
            await self._delete(pod, f"delete Pod {pod['metadata']['name']} in StatefulSet {self.name} successful")
            if self.ordered:
                return False
        return True

    async def _rolling_update(self) -> None:
        strategy = self.spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        rolling = strategy.get("rollingUpdate") or {}
        partition = int(rolling.get("partition") or 0)
        max_unavailable = _max_unavailable(rolling.get("maxUnavailable"), len(self.valid))
        update = self.revisions.update["metadata"]["name"]
        unavailable = sum(1 for p in self.by_ordinal.values() if not self._healthy(p))
        for ordinal in reversed(self.valid):
            if ordinal < partition + self.valid.start:
                break
            pod = self.by_ordinal.get(ordinal)
            if pod is None or is_terminating(pod):
                continue
            if su.revision_of(pod) != update:
                if unavailable >= max_unavailable and self._healthy(pod):
                    return
                log.info("statefulset %s: replacing pod %s for revision %s", self.key, pod["metadata"]["name"],
                         update)
                await self._delete(pod, f"delete Pod {pod['metadata']['name']} in StatefulSet {self.name} "
                                        "successful")
                unavailable += 1 if self._healthy(pod) else 0
                if unavailable >= max_unavailable:
                    return
            elif not self._healthy(pod) and unavailable >= max_unavailable:
                return

    def _revision_for(self, ordinal: int) -> Obj:
        strategy = self.spec.get("updateStrategy") or {}
        partition = int(((strategy.get("rollingUpdate") or {}).get("partition")) or 0)
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and ordinal < partition:
            return self.revisions.current
        return self.revisions.update

    async def _create(self, ordinal: int) -> None:
        await self._create_claims(ordinal)
        pod = su.pod_for(self.sts, ordinal, self._revision_for(ordinal), self.owner_ref)
        self.ctl.expectations.expect_creations(self.key, 1)
        try:
            await self.ctl.client.create(PODS, pod, namespace=self.sts["metadata"]["namespace"])
        except errors.AlreadyExistsError:
            self.ctl.expectations.lower_creations(self.key, 1)
            return
        except errors.ApiError as exc:
            self.ctl.expectations.lower_creations(self.key, 1)
            self.ctl.recorder.event(self.sts, "Warning", "FailedCreate",
                                    f"create Pod {pod['metadata']['name']} in StatefulSet {self.name} failed "
                                    f"error: {exc}")
            raise
        self.ctl.recorder.event(self.sts, "Normal", "SuccessfulCreate",
                                f"create Pod {pod['metadata']['name']} in StatefulSet {self.name} successful")

    async def _create_claims(self, ordinal: int) -> None:
        claims = su.claims_for(self.sts, ordinal)
        if not claims:
            return
        resource = lookup("", "v1", "persistentvolumeclaims")
        if resource is None:
            self.ctl.recorder.event(self.sts, "Warning", "FailedCreate",
                                    f"create Claim {claims[0]['metadata']['name']} for Pod {self.name}-{ordinal} in "
                                    f"StatefulSet {self.name} skipped: persistentvolumeclaims are not served")
            return
        retention = self.spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for claim in claims:
            if retention.get("whenDeleted") == "Delete":
                ref = {**self.owner_ref, "controller": False, "blockOwnerDeletion": True}
                claim["metadata"]["ownerReferences"] = [ref]
            try:
                await self.ctl.client.create(resource, claim, namespace=self.sts["metadata"]["namespace"])
            except errors.AlreadyExistsError:
                continue
            self.ctl.recorder.event(self.sts, "Normal", "SuccessfulCreate",
                                    f"create Claim {claim['metadata']['name']} Pod {self.name}-{ordinal} in "
                                    f"StatefulSet {self.name} success")

    async def _retain_or_release_claims(self, pod: Obj) -> None:
        """whenScaled Delete: the condemned pod owns its claims, so they go with it."""
        retention = self.spec.get("persistentVolumeClaimRetentionPolicy") or {}
        resource = lookup("", "v1", "persistentvolumeclaims")
        ordinal = su.ordinal_of(self.name, pod)
        if retention.get("whenScaled") != "Delete" or resource is None or ordinal is None:
            return
        meta = pod["metadata"]
        ref = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"], "controller": False,
               "blockOwnerDeletion": True}
        for claim in su.claims_for(self.sts, ordinal):
            try:
                live = await self.ctl.client.get(resource, claim["metadata"]["name"], namespace=meta["namespace"])
                refs = [r for r in live["metadata"].get("ownerReferences") or [] if r.get("uid") != meta["uid"]]
                await self.ctl.client.patch(resource, claim["metadata"]["name"],
                                            {"metadata": {"ownerReferences": [*refs, ref]}},
                                            namespace=meta["namespace"])
            except errors.NotFoundError:
                continue

    async def _delete(self, pod: Obj, message: str) -> None:
        await self.ctl.pod_control.delete_pods(self.sts, self.key, [pod], message=lambda _: message)


def _max_unavailable(value: Any, replicas: int) -> int:
    if isinstance(value, int):
        return max(1, value)
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return max(1, replicas * int(value[:-1]) // 100)
    return 1


def _selector(sts: Obj) -> LabelSelector | None:
    try:
        return from_label_selector((sts.get("spec") or {}).get("selector"))
    except errors.ApiError:
        return None
