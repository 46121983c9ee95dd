"""The Job controller: runs pods until a Job's completions succeed, or fails it.

Started by ``controllers.manager``; read side by side with Kubernetes' ``job_controller.go``.
Informer handlers only enqueue ``namespace/name`` and record observed creations/deletions in
the expectations. ``sync(key)`` is level-triggered:

1. claim pods (adopt/release by controllerRef), including finished ones;
2. track finished pods as Kubernetes does: each pod carries the ``batch.kubernetes.io/job-tracking``
   finalizer; a finished pod's UID goes to ``status.uncountedTerminatedPods`` (written first),
   then its finalizer is removed, then the UID moves into ``succeeded``/``failed`` (and
   ``completedIndexes``). A pod whose finalizer removal is not yet observed is never counted twice,
   and while the Job informer lags behind the controller's own status write, a sync reads the Job
   as that write left it (else pods whose finalizer is seen removed would be counted nowhere);
3. decide: pod failure policy (FailJob/Ignore/Count/FailIndex), backoff limit, active deadline, failed
   indexes (``controllers.job_perindex``), success policy (``controllers.job_successpolicy``),
   completions → ``FailureTarget``/``SuccessCriteriaMet`` first, active pods deleted, then
   ``Failed``/``Complete`` once no pod is left running or terminating;
4. otherwise keep ``parallelism`` pods running (per index when Indexed), recreating failed pods after
   a backoff of 10 s doubling to 6 min (per index with ``backoffLimitPerIndex``); with
   ``podReplacementPolicy: Failed`` a terminating pod is replaced only once it failed (it counts in
   ``status.terminating`` meanwhile); ``suspend`` deletes the active pods.

Steps 2-4 live in ``controllers.job_sync``; this module owns the informers, the queue, the
expectations, pod creation/deletion and the release of pods whose Job is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controllers import job_util as ju
from controllers.expectations import ControllerExpectations
from controllers.job_sync import JobSync
from controllers.ownership import RefManager, controller_of, is_terminating, labels_of, new_controller_ref, owning_key
from controllers.podcontrol import PodControl
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
from machinery.resources import JOBS, PODS
from machinery.selectors import LabelSelector, from_label_selector

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ORPHAN_PREFIX = "orphan-pod:"


class JobController:
    """Reconciles Jobs with their pods."""

    name = "job"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow, backoff_base: float = ju.DEFAULT_BACKOFF) -> None:
        self.client = client
        self.clock = clock
        self.backoff_base = backoff_base
        self.job_informer = factory.informer(JOBS)
        self.pod_informer = factory.informer(PODS)
        self.queue = settings.workqueue(self.name)
        self.expectations = ControllerExpectations()
        self.finalizers_pending: dict[str, set[str]] = {}
        """Per job: pod UIDs whose finalizer removal was sent but not yet seen by the informer."""
        self.backoff: dict[str, tuple[int, datetime]] = {}
        """Per job: consecutive failures and when the last one happened."""
        self._written: dict[str, tuple[set[str], Obj]] = {}
        """Per job: the last Job this controller wrote, and the resourceVersions it superseded."""
        self.recorder = EventRecorder(client, component="job-controller")
        self.pod_control = PodControl(self)
        self.job_informer.add_handler(on_add=self._job_added, on_update=self._job_updated,
                                      on_delete=self._job_deleted)
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted)

    async def run(self, workers: int) -> None:
        """Sync Jobs with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.job_informer, self.pod_informer)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    # -- event handlers: enqueue only ---------------------------------------------------------

    def _job_added(self, job: Obj) -> None:
        self.queue.add(object_key(job))

    def _job_updated(self, old: Obj, cur: Obj) -> None:
        self.queue.add(object_key(cur))

    def _job_deleted(self, job: Obj) -> None:
        key = object_key(job)
        self.expectations.delete(key)
        self.finalizers_pending.pop(key, None)
        self.backoff.pop(key, None)
        self._written.pop(key, None)
        self.queue.add(key)

    def _owner(self, pod: Obj) -> str | None:
        return owning_key(pod, "Job", self.job_informer.store.get)

    def _orphan_matches(self, pod: Obj) -> list[str]:
        out = []
        for job in self.job_informer.store.by_index(INDEX_NAMESPACE, pod["metadata"].get("namespace", "")):
            sel = _selector(job)
            if sel is not None and not sel.empty() and sel.matches(labels_of(pod)):
                out.append(object_key(job))
        return out

    def _finalizer_seen(self, key: str, pod: Obj) -> None:
        pending = self.finalizers_pending.get(key)
        if pending is not None and not ju.has_finalizer(pod):
            pending.discard(str(pod["metadata"].get("uid")))

    def _orphan_check(self, pod: Obj) -> None:
        """A pod still holding the tracking finalizer whose Job is gone: release it."""
        ref = controller_of(pod)
        if ju.has_finalizer(pod) and (ref is None or ref.get("kind") == "Job"):
            self.queue.add(f"{ORPHAN_PREFIX}{object_key(pod)}")

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner(pod)
        if key is None:
            self._orphan_check(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            if is_terminating(pod):
                self.expectations.deletion_observed(key, object_key(pod))
            self._finalizer_seen(key, pod)
            self.queue.add(key)
            return
        if controller_of(pod) is None:
            for key in self._orphan_matches(pod):
                self.queue.add(key)

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        old_key, key = self._owner(old), self._owner(cur)
        if key is None:
            self._orphan_check(cur)
        if old_key is not None and old_key != key:
            self.queue.add(old_key)
        if key is not None:
            if is_terminating(cur):
                self.expectations.deletion_observed(key, object_key(cur))
            self._finalizer_seen(key, cur)
            self.queue.add(key)
        elif controller_of(cur) is None:
            for k in self._orphan_matches(cur):
                self.queue.add(k)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner(pod)
        if key is None:
            return
        self.expectations.deletion_observed(key, object_key(pod))
        pending = self.finalizers_pending.get(key)
        if pending is not None:
            pending.discard(str(pod["metadata"].get("uid")))
        self.queue.add(key)

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """Reconcile the Job ``key`` (``namespace/name``) from the informer caches."""
        if key.startswith(ORPHAN_PREFIX):
            await self._release_orphan(key.removeprefix(ORPHAN_PREFIX))
            return
        job = self._freshest(key, self.job_informer.store.get(key))
        if job is None:
            self.expectations.delete(key)
            self.finalizers_pending.pop(key, None)
            return
        selector = _selector(job)
        if selector is None:
            log.warning("job %s: invalid selector, skipping", key)
            return
        ns = job["metadata"]["namespace"]
        candidates = list(self.pod_informer.store.by_index(INDEX_NAMESPACE, ns))
        pods = await self._claim(job, selector, candidates)
        if ju.is_finished_job(job):
            await self._remove_finalizers(key, [p for p in pods if ju.has_finalizer(p)])
            return
        await JobSync(self, key, job, pods).run()

    def status_written(self, key: str, before: Obj, after: Obj) -> None:
        """Remember ``after``, the Job as this controller's status write left it (``before`` was the
        copy it wrote over), until the informer catches up."""
        rv = str(before["metadata"].get("resourceVersion"))
        record = self._written.get(key)
        superseded = {rv}
        if record is not None and str(record[1]["metadata"].get("resourceVersion")) == rv:
            superseded |= record[0]
        self._written[key] = (superseded, after)

    def _freshest(self, key: str, cached: Obj | None) -> Obj | None:
        """The cached Job, or the one this controller last wrote while the cache still holds a copy
        that write superseded. A stale status would undercount the pods whose finalizer the cache
        already shows removed, and the Job would run more pods than it needs."""
        record = self._written.get(key)
        if cached is None or record is None:
            return cached
        superseded, latest = record
        if str(cached["metadata"].get("resourceVersion")) in superseded:
            return latest
        del self._written[key]
        return cached

    async def _release_orphan(self, pod_key: str) -> None:
        """Remove the tracking finalizer of a pod whose Job no longer exists (checked in the API)."""
        pod = self.pod_informer.store.get(pod_key)
        if pod is None or not ju.has_finalizer(pod):
            return
        ref = controller_of(pod)
        if ref is not None:
            try:
                job = await self.client.get(JOBS, str(ref.get("name")), namespace=pod["metadata"]["namespace"])
                if job["metadata"].get("uid") == ref.get("uid"):
                    return  # the Job exists: its own sync tracks this pod
            except errors.NotFoundError:
                pass
        await self._remove_finalizers(f"orphans/{pod_key}", [pod])
        self.finalizers_pending.pop(f"orphans/{pod_key}", None)

    async def _claim(self, job: Obj, selector: LabelSelector, candidates: list[Obj]) -> list[Obj]:
        meta = job["metadata"]

        async def patch(namespace: str, name: str, body: Obj) -> Obj:
            return await self.client.patch(PODS, name, body, namespace=namespace)

        async def can_adopt() -> None:
            fresh = await self.client.get(JOBS, meta["name"], namespace=meta["namespace"])
            if fresh["metadata"].get("uid") != meta["uid"] or is_terminating(fresh):
                raise errors.ConflictError(f"job {meta['name']} changed; not adopting pods")

        manager = RefManager(owner=job, selector=selector, owner_api_version="batch/v1", owner_kind="Job",
                             resource=PODS, patch=patch, can_adopt=can_adopt)
        return await manager.claim(candidates)

    async def _remove_finalizers(self, key: str, pods: list[Obj]) -> list[str]:
        """Remove the tracking finalizer from ``pods``; the UIDs whose removal failed."""
        pending = self.finalizers_pending.setdefault(key, set())

        async def remove(pod: Obj) -> str | None:
            meta = pod["metadata"]
            uid = str(meta.get("uid"))
            pending.add(uid)
            # Only the tracking finalizer goes, whatever else changed (the kubelet writes status
            # meanwhile): no resourceVersion precondition, as Kubernetes' controller patches it.
            try:
                await self.client.patch(PODS, meta["name"], {"metadata": {
                    "$deleteFromPrimitiveList/finalizers": [ju.TRACKING_FINALIZER]}},
                    namespace=meta["namespace"], patch_type="strategic")
            except errors.NotFoundError:
                pending.discard(uid)
            except errors.ApiError as exc:
                pending.discard(uid)
                log.info("job %s: removing the finalizer of pod %s: %s", key, meta["name"], exc)
                return uid
            return None

        results = await asyncio.gather(*(remove(p) for p in pods if ju.has_finalizer(p)))
        return [uid for uid in results if uid is not None]

    async def create_pods(self, job: Obj, key: str, indexes: list[int | None],
                          annotations: dict[int, dict[str, str]] | None = None) -> None:
        """Create one pod per entry of ``indexes`` (None: NonIndexed), in slow-start batches;
        ``annotations`` per index are added to that index's pod."""
        owner_ref = new_controller_ref(job, api_version="batch/v1", kind="Job")
        extra = annotations or {}
        await self.pod_control.create_pods(job, key, [
            ju.pod_for(job, owner_ref, i, extra.get(i) if i is not None else None) for i in indexes])


def _selector(job: Obj) -> LabelSelector | None:
    try:
        return from_label_selector((job.get("spec") or {}).get("selector"))
    except errors.ApiError:
        return None
