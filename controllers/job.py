"""The Job controller: runs pods until a Job's completions succeed, or fails it.

Started by ``controllers.manager``; read side by side with Kubernetes' ``job_controller.go``.
Informer handlers only enqueue ``namespace/name`` and record observed creations/deletions in
the expectations. ``sync(key)`` is level-triggered:

1. claim pods (adopt/release by controllerRef), including finished ones;
2. track finished pods as Kubernetes does: each pod carries the ``batch.kubernetes.io/job-tracking``
   finalizer; a finished pod's UID goes to ``status.uncountedTerminatedPods`` (written first),
   then its finalizer is removed, then the UID moves into ``succeeded``/``failed`` (and
   ``completedIndexes``). A pod whose finalizer removal is not yet observed is never counted twice;
3. decide: pod failure policy (FailJob/Ignore/Count), backoff limit, active deadline, completions
   → ``FailureTarget``/``SuccessCriteriaMet`` first, active pods deleted, then ``Failed``/``Complete``
   once no pod is left running;
4. otherwise keep ``parallelism`` pods running (per index when Indexed), recreating failed pods after
   a backoff of 10 s doubling to 6 min; ``suspend`` deletes the active pods.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controllers import job_util as ju
from controllers.expectations import ControllerExpectations
from controllers.ownership import RefManager, controller_of, is_terminating, labels_of, new_controller_ref
from controllers.replicaset_util import is_pod_active, pods_to_delete, slow_start_batches
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
BURST = 500
ORPHAN_PREFIX = "orphan-pod:"


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


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
        self.recorder = EventRecorder(client, component="job-controller")
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
        self.queue.add(key)

    def _owner(self, pod: Obj, ref: Obj | None = None) -> str | None:
        ref = ref if ref is not None else controller_of(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        key = f"{pod['metadata'].get('namespace', '')}/{ref.get('name')}"
        job = self.job_informer.store.get(key)
        if job is None or job["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

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
        job = self.job_informer.store.get(key)
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
        await _JobSync(self, key, job, pods).run()

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
            rest = [f for f in meta.get("finalizers") or [] if f != ju.TRACKING_FINALIZER]
            try:
                await self.client.patch(PODS, meta["name"], {"metadata": {
                    "finalizers": rest or None, "resourceVersion": meta["resourceVersion"]}},
                    namespace=meta["namespace"])
            except errors.NotFoundError:
                pending.discard(uid)
            except errors.ApiError as exc:
                pending.discard(uid)
                log.info("job %s: removing the finalizer of pod %s: %s", key, meta["name"], exc)
                return uid
            return None

        results = await asyncio.gather(*(remove(p) for p in pods if ju.has_finalizer(p)))
        return [uid for uid in results if uid is not None]

    async def create_pods(self, job: Obj, key: str, indexes: list[int | None]) -> None:
        """Create one pod per entry of ``indexes`` (None: NonIndexed), in slow-start batches."""
        owner_ref = new_controller_ref(job, api_version="batch/v1", kind="Job")
        ns = job["metadata"]["namespace"]
        self.expectations.expect_creations(key, len(indexes))
        created = 0
        todo = list(indexes)
        for size in slow_start_batches(len(todo)):
            batch, todo = todo[:size], todo[size:]
            results = await asyncio.gather(*(self.client.create(PODS, ju.pod_for(job, owner_ref, i), namespace=ns)
                                             for i in batch), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if not isinstance(r, BaseException):
                    self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {r['metadata']['name']}")
            created += len(batch) - len(failures)
            if failures:
                self.expectations.lower_creations(key, len(indexes) - created)
                first = failures[0]
                if isinstance(first, errors.ApiError):
                    raise first
                raise errors.ServiceUnavailableError(str(first)) from first

    async def delete_pods(self, job: Obj, key: str, victims: list[Obj]) -> None:
        """Delete ``victims`` (UID preconditions), expecting their deletions."""
        if not victims:
            return
        self.expectations.expect_deletions(key, [object_key(p) for p in victims])

        async def delete(pod: Obj) -> None:
            meta = pod["metadata"]
            try:
                await self.client.delete(PODS, meta["name"], namespace=meta["namespace"],
                                         preconditions={"uid": meta["uid"]})
                self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")
            except errors.NotFoundError:
                self.expectations.deletion_observed(key, object_key(pod))
            except errors.ApiError:
                self.expectations.deletion_observed(key, object_key(pod))
                raise

        results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
        for r in results:
            if isinstance(r, errors.ApiError):
                raise r
            if isinstance(r, BaseException):
                raise errors.ServiceUnavailableError(str(r)) from r


class _JobSync:
    """One sync of one Job: the steps of ``JobController.sync`` with their shared state."""

    def __init__(self, ctl: JobController, key: str, job: Obj, pods: list[Obj]) -> None:
        self.ctl = ctl
        self.key = key
        self.job = job
        self.pods = pods
        self.spec: Obj = job.get("spec") or {}
        self.status: Obj = copy.deepcopy(job.get("status") or {})
        self.now = ctl.clock()
        self.now_s = _rfc3339(self.now)
        self.indexed = self.spec.get("completionMode") == "Indexed"
        completions = self.spec.get("completions")
        self.completions: int | None = None if completions is None else int(completions)
        self.failure: tuple[str, str] | None = None

    async def run(self) -> None:
        ctl, key = self.ctl, self.key
        needs_sync = ctl.expectations.satisfied(key)
        suspended = bool(self.spec.get("suspend"))
        if not suspended and not self.status.get("startTime"):
            self.status["startTime"] = self.now_s
        await self._track_finished()
        active = [p for p in self.pods if is_pod_active(p)]
        done = self._decide()
        manage_error: errors.ApiError | None = None
        try:
            if done is not None:
                active = await self._finish(done, active)
            elif suspended:
                self._suspend_condition(True)
                self.status.pop("startTime", None)
                await ctl.delete_pods(self.job, key, active)
                active = []
            else:
                self._suspend_condition(False)
                if needs_sync:
                    active = await self._manage(active)
        except errors.ApiError as exc:
            manage_error = exc
        self.status["active"] = len(active)
        self.status["ready"] = ju.count_ready(active)
        self.status["terminating"] = sum(1 for p in self.pods
                                         if is_terminating(p) and ju.phase(p) not in ("Succeeded", "Failed"))
        await self._write_status()
        left = ju.deadline_passed(self.job, self.now)[1] if done is None and not suspended else None
        if left is not None:
            ctl.queue.add_after(key, left + 0.5)
        if manage_error is not None:
            raise manage_error

    # -- step 2: finished pods ------------------------------------------------------------------

    async def _track_finished(self) -> None:
        unc = self.status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = set(unc.get("succeeded") or []), set(unc.get("failed") or [])
        pending = self.ctl.finalizers_pending.get(self.key, set())
        completed = ju.parse_indexes(self.status.get("completedIndexes"), self.completions)
        policy = self.spec.get("podFailurePolicy")
        drop: list[Obj] = []
        grew = False
        last_failure: datetime | None = None
        new_failures = 0
        by_uid = {str(p["metadata"].get("uid")): p for p in self.pods}
        for pod in self.pods:
            uid = str(pod["metadata"].get("uid"))
            if not ju.has_finalizer(pod) or uid in pending or uid in unc_s or uid in unc_f or not ju.is_finished(pod):
                continue
            if ju.succeeded(pod):
                index = ju.pod_index(pod) if self.indexed else None
                if self.indexed and (index is None or index in completed or
                                     (self.completions is not None and index >= self.completions)):
                    drop.append(pod)
                    continue
                if index is not None:
                    completed.add(index)
                unc_s.add(uid)
                grew = True
                self.ctl.backoff.pop(self.key, None)
                continue
            action, message = ju.match_failure_policy(policy, pod) if ju.phase(pod) == "Failed" else (None, "")
            if action == "Ignore":
                drop.append(pod)
                continue
            if action == "FailJob" and self.failure is None:
                self.failure = (ju.REASON_POLICY, message)
            unc_f.add(uid)
            grew = True
            new_failures += 1
            t = ju.finished_at(pod, self.now)
            last_failure = t if last_failure is None or t > last_failure else last_failure
        if new_failures:
            count, _ = self.ctl.backoff.get(self.key, (0, self.now))
            self.ctl.backoff[self.key] = (count + new_failures, last_failure or self.now)
        if grew:
            self.status["uncountedTerminatedPods"] = {"succeeded": sorted(unc_s), "failed": sorted(unc_f)}
            await self._write_status()
        targets = [by_uid[u] for u in unc_s | unc_f if u in by_uid and ju.has_finalizer(by_uid[u])] + drop
        failed_uids = set(await self.ctl._remove_finalizers(self.key, targets))
        # Move what is no longer held by a finalizer into the counters.
        done_s, done_f = unc_s - failed_uids, unc_f - failed_uids
        if done_s or done_f:
            self.status["succeeded"] = int(self.status.get("succeeded") or 0) + len(done_s)
            self.status["failed"] = int(self.status.get("failed") or 0) + len(done_f)
        if self.indexed:
            counted = {ju.pod_index(by_uid[u]) for u in done_s if u in by_uid}
            base = ju.parse_indexes(self.status.get("completedIndexes"), self.completions)
            self.status["completedIndexes"] = ju.format_indexes(base | {i for i in counted if i is not None})
        left_s, left_f = unc_s & failed_uids, unc_f & failed_uids
        self.status["uncountedTerminatedPods"] = {k: sorted(v) for k, v in (("succeeded", left_s),
                                                                            ("failed", left_f)) if v}

    # -- step 3: decide ---------------------------------------------------------------------------

    def _decide(self) -> tuple[bool, str, str] | None:
        """(succeeded?, reason, message) when the Job reached a terminal state."""
        status = self.status
        for ctype, ok in (("FailureTarget", False), ("SuccessCriteriaMet", True)):
            cond = ju.condition(status, ctype)
            if cond is not None and cond.get("status") == "True":
                return ok, str(cond.get("reason")), str(cond.get("message"))
        if self.failure is not None:
            return False, *self.failure
        failed = int(status.get("failed") or 0)
        limit = self.spec.get("backoffLimit")
        if failed > (6 if limit is None else int(limit)):
            return False, ju.REASON_BACKOFF, ju.MESSAGE_BACKOFF
        if not self.spec.get("suspend") and ju.deadline_passed({**self.job, "status": status}, self.now)[0]:
            return False, ju.REASON_DEADLINE, ju.MESSAGE_DEADLINE
        succeeded = int(status.get("succeeded") or 0)
        if self.indexed and self.completions is not None:
            if len(ju.parse_indexes(status.get("completedIndexes"), self.completions)) >= self.completions:
                return True, ju.REASON_COMPLETIONS, ju.MESSAGE_COMPLETIONS
        elif self.completions is not None:
            if succeeded >= self.completions:
                return True, ju.REASON_COMPLETIONS, ju.MESSAGE_COMPLETIONS
        elif succeeded > 0 and not any(is_pod_active(p) for p in self.pods):
            return True, ju.REASON_COMPLETIONS, ju.MESSAGE_COMPLETIONS
        return None

    async def _finish(self, done: tuple[bool, str, str], active: list[Obj]) -> list[Obj]:
        ok, reason, message = done
        interim, final = ("SuccessCriteriaMet", "Complete") if ok else ("FailureTarget", "Failed")
        if ju.set_condition(self.status, interim, "True", reason, message, self.now_s) and not ok:
            self.ctl.recorder.event(self.job, "Warning", reason, message)
        await self.ctl.delete_pods(self.job, self.key, active)
        holding = [p for p in self.pods if ju.has_finalizer(p) or is_pod_active(p)]
        if holding or self.status.get("uncountedTerminatedPods"):
            return active
        ju.set_condition(self.status, final, "True", reason, message, self.now_s)
        if ok:
            self.status["completionTime"] = self.now_s
            self.ctl.recorder.event(self.job, "Normal", "Completed", "Job completed")
        self.ctl.backoff.pop(self.key, None)
        return []

    def _suspend_condition(self, suspended: bool) -> None:
        cond = ju.condition(self.status, "Suspended")
        if suspended:
            if ju.set_condition(self.status, "Suspended", "True", "JobSuspended", "Job suspended", self.now_s):
                self.ctl.recorder.event(self.job, "Normal", "Suspended", "Job suspended")
        elif cond is not None and cond.get("status") == "True":
            ju.set_condition(self.status, "Suspended", "False", "JobResumed", "Job resumed", self.now_s)
            self.ctl.recorder.event(self.job, "Normal", "Resumed", "Job resumed")

    # -- step 4: keep parallelism pods ------------------------------------------------------------

    def _backoff_left(self) -> float:
        record = self.ctl.backoff.get(self.key)
        if record is None:
            return 0.0
        failures, last = record
        delay = ju.backoff_delay(failures, base=self.ctl.backoff_base)
        return max(0.0, (last + timedelta(seconds=delay) - self.now).total_seconds())

    async def _manage(self, active: list[Obj]) -> list[Obj]:
        raw = self.spec.get("parallelism")
        parallelism = 1 if raw is None else int(raw)
        succeeded = int(self.status.get("succeeded") or 0)
        if self.indexed:
            return await self._manage_indexed(active, parallelism)
        if self.completions is None:
            want = 0 if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, self.completions - succeeded))
        diff = len(active) - want
        if diff > 0:
            victims = pods_to_delete(active, active, diff)
            await self.ctl.delete_pods(self.job, self.key, victims)
            return [p for p in active if p not in victims]
        if diff < 0 and self._may_create():
            await self.ctl.create_pods(self.job, self.key, [None] * min(-diff, BURST))
        return active

    async def _manage_indexed(self, active: list[Obj], parallelism: int) -> list[Obj]:
        assert self.completions is not None
        completed = ju.parse_indexes(self.status.get("completedIndexes"), self.completions)
        seen: set[int] = set()
        extra: list[Obj] = []
        for pod in sorted(active, key=lambda p: str(p["metadata"].get("creationTimestamp", ""))):
            index = ju.pod_index(pod)
            if index is None or index in completed or index in seen or index >= self.completions:
                extra.append(pod)
            else:
                seen.add(index)
        if extra:
            await self.ctl.delete_pods(self.job, self.key, extra)
            active = [p for p in active if p not in extra]
        missing = [i for i in range(self.completions) if i not in completed and i not in seen]
        room = parallelism - len(active)
        if room > 0 and missing and self._may_create():
            await self.ctl.create_pods(self.job, self.key, list(missing[:min(room, BURST)]))
        return active

    def _may_create(self) -> bool:
        left = self._backoff_left()
        if left > 0:
            self.ctl.queue.add_after(self.key, left)
            return False
        return True

    async def _write_status(self) -> None:
        old = self.job.get("status") or {}
        if _norm(old) == _norm(self.status):
            return
        try:
            self.job = await self.ctl.client.update(JOBS, {**self.job, "status": self.status}, subresource="status")
        except errors.NotFoundError:
            return


def _norm(status: Obj) -> Obj:
    return {k: v for k, v in status.items() if v not in (0, None, [], {}, "")}


def _selector(job: Obj) -> LabelSelector | None:
    try:
        return from_label_selector((job.get("spec") or {}).get("selector"))
    except errors.ApiError:
        return None
