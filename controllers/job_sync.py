"""One sync of one Job (the decision steps of ``controllers.job``): count finished pods through the
tracking finalizer and ``uncountedTerminatedPods`` (and failed indexes, holding back the finalizer
of an index's last failed pod until its replacement exists), decide success or failure (pod
failure policy, backoff limit, deadline, failed indexes, success policy, completions), finish with
the interim then terminal conditions, honour ``suspend``, or keep ``parallelism`` pods running (per
index when Indexed) after the backoff, counting terminating pods when only failed pods are replaced.

Created by :meth:`controllers.job.JobController.sync` for each sync; it reads the controller's
caches and bookkeeping (expectations, pending finalizer removals, backoff records) and writes
through it.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from controllers import job_perindex as jp
from controllers import job_successpolicy as jsp
from controllers import job_util as ju
from controllers.replicaset_util import is_pod_active, pods_to_delete
from machinery import errors
from machinery.resources import JOBS

if TYPE_CHECKING:
    from controllers.job import JobController

Obj = dict[str, Any]
BURST = 500


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class JobSync:
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
        self.per_index = jp.enabled(self.spec) and self.completions is not None
        self.failed_indexes: set[int] = (ju.parse_indexes(self.status.get("failedIndexes"), self.completions)
                                         if self.per_index else set())
        self.replaced: dict[int, Obj] = {}
        """Per index waiting to run again: its last failed pod (the source of the new pod's counts)."""
        self.terminating = [p for p in pods if ju.is_terminating(p)]

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
                await ctl.pod_control.delete_pods(self.job, key, active)
                active = []
            else:
                self._suspend_condition(False)
                if needs_sync:
                    active = await self._manage(active)
        except errors.ApiError as exc:
            manage_error = exc
        self.status["active"] = len(active)
        self.status["ready"] = ju.count_ready(active)
        self.status["terminating"] = len(self.terminating)
        await self._write_status()
        left = ju.deadline_passed(self.job, self.now)[1] if done is None and not suspended else None
        if left is not None:
            ctl.queue.add_after(key, left + 0.5)
        if manage_error is not None:
            raise manage_error

    # -- step 2: finished pods ------------------------------------------------------------------

    async def _track_finished(self) -> None:
        status, spec = self.status, self.spec
        unc = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = set(unc.get("succeeded") or []), set(unc.get("failed") or [])
        pending = self.ctl.finalizers_pending.get(self.key, set())
        completed = ju.parse_indexes(status.get("completedIndexes"), self.completions)
        policy = spec.get("podFailurePolicy")
        # Once the outcome is decided, every pod still running counts as failed (as ignored when
        # the Job succeeded) and no finalizer is held back.
        finishing = ju.is_true(status, "FailureTarget") or ju.is_true(status, "SuccessCriteriaMet")
        succeeding = ju.is_true(status, "SuccessCriteriaMet")
        seen = pending | unc_s | unc_f
        candidates = [p for p in self.pods if ju.has_finalizer(p) and str(p["metadata"].get("uid")) not in seen]
        delayed = self._delayed(candidates, completed) if self.per_index and not finishing else set()
        drop: list[Obj] = []
        grew = False
        last_failure: datetime | None = None
        new_failures = 0
        by_uid = {str(p["metadata"].get("uid")): p for p in self.pods}
        for pod in candidates:
            uid = str(pod["metadata"].get("uid"))
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
            failed = ju.is_failed(pod, spec)
            if not failed and not (finishing and ju.is_terminating(pod)):
                continue
            if not failed and succeeding:
                drop.append(pod)
                continue
            action, message = ju.match_failure_policy(policy, pod) if ju.phase(pod) == "Failed" else (None, "")
            if action == "FailJob" and self.failure is None:
                self.failure = (ju.REASON_POLICY, message)
            if uid in delayed:
                continue
            if action == "Ignore":
                drop.append(pod)
                continue
            if self.per_index and not finishing and self._index_failed(pod):
                grew = True
            unc_f.add(uid)
            grew = True
            new_failures += 1
            t = ju.finished_at(pod, self.now)
            last_failure = t if last_failure is None or t > last_failure else last_failure
        if new_failures:
            count, _ = self.ctl.backoff.get(self.key, (0, self.now))
            self.ctl.backoff[self.key] = (count + new_failures, last_failure or self.now)
        if self.per_index:
            status["failedIndexes"] = ju.format_indexes(self.failed_indexes)
        if grew:
            status["uncountedTerminatedPods"] = {"succeeded": sorted(unc_s), "failed": sorted(unc_f)}
            await self._write_status()
        targets = [by_uid[u] for u in unc_s | unc_f if u in by_uid and ju.has_finalizer(by_uid[u])] + drop
        failed_uids = set(await self.ctl._remove_finalizers(self.key, targets))
        # Move what is no longer held by a finalizer into the counters.
        done_s, done_f = unc_s - failed_uids, unc_f - failed_uids
        if done_s or done_f:
            status["succeeded"] = int(status.get("succeeded") or 0) + len(done_s)
            status["failed"] = int(status.get("failed") or 0) + len(done_f)
        if self.indexed:
            counted = {ju.pod_index(by_uid[u]) for u in done_s if u in by_uid}
            base = ju.parse_indexes(status.get("completedIndexes"), self.completions)
            status["completedIndexes"] = ju.format_indexes(base | {i for i in counted if i is not None})
        left_s, left_f = unc_s & failed_uids, unc_f & failed_uids
        status["uncountedTerminatedPods"] = {k: sorted(v) for k, v in (("succeeded", left_s),
                                                                       ("failed", left_f)) if v}

    def _index_failed(self, pod: Obj) -> bool:
        """Record the index of the failed ``pod`` as failed when it is; whether it was new."""
        index = ju.pod_index(pod)
        if index is None or self.completions is None or index >= self.completions or index in self.failed_indexes:
            return False
        if not jp.is_index_failed(self.spec, pod):
            return False
        self.failed_indexes.add(index)
        return True

    def _delayed(self, candidates: list[Obj], completed: set[int]) -> set[str]:
        """UIDs of the failed pods whose finalizer waits for their index's replacement (recorded
        in ``self.replaced`` by index)."""
        assert self.completions is not None
        settled = set(completed) | self.failed_indexes
        for pod in candidates:
            index = ju.pod_index(pod)
            if index is None:
                continue
            if ju.succeeded(pod) or is_pod_active(pod) or jp.is_index_failed(self.spec, pod):
                settled.add(index)
        self.replaced = jp.delayed_pods(self.spec, candidates, completions=self.completions, settled=settled,
                                        skip=set())
        return {str(p["metadata"].get("uid")) for p in self.replaced.values()}

    def _succeeded(self) -> int:
        """Succeeded pods: counted, and recorded but still held by their finalizer (as Kubernetes
        counts them: else the Job would run a pod more each time a removal has to be retried)."""
        uncounted = (self.status.get("uncountedTerminatedPods") or {}).get("succeeded") or []
        return int(self.status.get("succeeded") or 0) + len(uncounted)

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
        succeeded = self._succeeded()
        if self.indexed and self.completions is not None:
            done = ju.parse_indexes(status.get("completedIndexes"), self.completions)
            if self.per_index:
                failing = jp.failure_condition(self.spec, self.failed_indexes, done, self.completions)
                if failing is not None:
                    return False, *failing
            matched = jsp.match(self.spec.get("successPolicy"), self.completions, done)
            if matched is not None:
                return True, jsp.REASON, matched
            if len(done) >= self.completions:
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
        await self.ctl.pod_control.delete_pods(self.job, self.key, active)
        # The terminal condition waits for every pod to be gone or terminal (Kubernetes ≥ 1.31).
        # A counted terminal pod whose tracking finalizer is still being removed does not hold it.
        holding = [p for p in self.pods if is_pod_active(p) or ju.is_terminating(p)]
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
        succeeded = self._succeeded()
        if self.indexed:
            return await self._manage_indexed(active, parallelism)
        if self.completions is None:
            want = 0 if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, self.completions - succeeded))
        diff = len(active) - want
        if diff > 0:
            victims = pods_to_delete(active, active, diff)
            await self.ctl.pod_control.delete_pods(self.job, self.key, victims)
            return [p for p in active if p not in victims]
        short = want - len(active) - self._replacing()
        if short > 0 and self._may_create():
            await self.ctl.create_pods(self.job, self.key, [None] * min(short, BURST))
        return active

    def _replacing(self) -> int:
        """Terminating pods that still hold their place (``podReplacementPolicy: Failed``)."""
        return len(self.terminating) if ju.only_replace_failed(self.spec) else 0

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
            await self.ctl.pod_control.delete_pods(self.job, self.key, extra)
            active = [p for p in active if p not in extra]
        busy = completed | seen | self.failed_indexes
        if ju.only_replace_failed(self.spec):
            busy |= {i for i in (ju.pod_index(p) for p in self.terminating) if i is not None}
        missing = [i for i in range(self.completions) if i not in busy]
        room = min(parallelism, self.completions - len(completed)) - len(active) - self._replacing()
        if room <= 0 or not missing:
            return active
        if not self.per_index:
            if self._may_create():
                await self.ctl.create_pods(self.job, self.key, list(missing[:min(room, BURST)]))
            return active
        # Each index has its own backoff, counted from its last failed pod.
        ready: list[int] = []
        wait: float | None = None
        for index in missing:
            left = jp.remaining(self.replaced.get(index), self.now, base=self.ctl.backoff_base)
            if left <= 0:
                ready.append(index)
                if len(ready) >= min(room, BURST):
                    break
            elif wait is None or left < wait:
                wait = left
        if wait is not None:
            self.ctl.queue.add_after(self.key, wait)
        annotations = {i: jp.replacement_annotations(self.spec, self.replaced.get(i)) for i in ready}
        await self.ctl.create_pods(self.job, self.key, list(ready), annotations)
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
            written = await self.ctl.client.update(JOBS, {**self.job, "status": self.status}, subresource="status")
        except errors.NotFoundError:
            return
        self.ctl.status_written(self.key, self.job, written)
        self.job = written


def _norm(status: Obj) -> Obj:
    return {k: v for k, v in status.items() if v not in (0, None, [], {}, "")}


