"""The CronJob controller: creates a Job at every scheduled time of every CronJob (Kubernetes'
``cronjob_controllerv2.go``).

Started by ``controllers.manager``. Job and CronJob events enqueue the owning CronJob; ``sync``:

1. reconciles ``status.active`` with the Jobs the CronJob controls (finished ones leave it; a
   successful one sets ``lastSuccessfulTime``) and deletes finished Jobs beyond the history limits
   (``successfulJobsHistoryLimit`` 3, ``failedJobsHistoryLimit`` 1), oldest first;
2. unless suspended, finds the most recent unmet schedule time since ``lastScheduleTime`` (or
   creation), bounded by ``startingDeadlineSeconds``; more than 100 missed times is reported and
   only the latest is run;
3. applies ``concurrencyPolicy`` (Allow; Forbid skips while a Job runs; Replace deletes the
   running ones) and creates ``<cronjob>-<scheduled time in Unix minutes>`` with the
   ``batch.kubernetes.io/cronjob-scheduled-timestamp`` annotation; the deterministic name means
   a retried sync can never start one time twice;
4. requeues itself for the next scheduled time. The clock is injectable for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from controllers.job_util import condition, is_finished_job
from controllers.ownership import controller_of, is_terminating, new_controller_ref
from controllers.settings import ControllerManagerSettings
from machinery import cronschedule, errors
from machinery.client import (
    INDEX_NAMESPACE,
    ApiClient,
    EventRecorder,
    InformerFactory,
    run_workers,
    wait_for_cache_sync,
)
from machinery.meta import object_key, parse_rfc3339, utcnow
from machinery.resources import CRONJOBS, JOBS

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MISSED_LIMIT = 100


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_name(cronjob: str, scheduled: datetime) -> str:
    """``<cronjob>-<scheduled time in minutes since the epoch>``."""
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cj: Obj, scheduled: datetime, zone: Any) -> Obj:
    """The Job a CronJob creates for ``scheduled``."""
    meta = cj["metadata"]
    template = (cj.get("spec") or {}).get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    local = scheduled.astimezone(zone) if zone is not None else scheduled.astimezone(UTC)
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = local.isoformat().replace("+00:00", "Z")
    job_meta: Obj = {"name": job_name(meta["name"], scheduled), "namespace": meta["namespace"],
                     "annotations": annotations,
                     "ownerReferences": [new_controller_ref(cj, api_version="batch/v1", kind="CronJob")]}
    if tmeta.get("labels"):
        job_meta["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": dict(template.get("spec") or {})}


def _ref(job: Obj) -> Obj:
    m = job["metadata"]
    return {"kind": "Job", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
            "apiVersion": "batch/v1", "resourceVersion": m.get("resourceVersion", "")}


def _finished_at(job: Obj) -> datetime:
    status = job.get("status") or {}
    cond = condition(status, "Complete") or condition(status, "Failed") or {}
    raw = status.get("completionTime") or cond.get("lastTransitionTime") or job["metadata"].get("creationTimestamp")
    return parse_rfc3339(str(raw)) if raw else datetime.fromtimestamp(0, UTC)


class CronJobController:
    """Runs Jobs on CronJobs' schedules."""

    name = "cronjob"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.cj_informer = factory.informer(CRONJOBS)
        self.job_informer = factory.informer(JOBS)
        self.queue = settings.workqueue(self.name)
        self.recorder = EventRecorder(client, component="cronjob-controller")
        self.cj_informer.add_handler(on_add=self._enqueue, on_update=lambda old, cur: self._enqueue(cur),
                                     on_delete=self._enqueue)
        self.job_informer.add_handler(on_add=self._job_event, on_update=lambda old, cur: self._job_event(cur),
                                      on_delete=self._job_event)

    async def run(self, workers: int) -> None:
        """Sync CronJobs with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.cj_informer, self.job_informer)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    def _enqueue(self, cj: Obj) -> None:
        self.queue.add(object_key(cj))

    def _job_event(self, job: Obj) -> None:
        ref = controller_of(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata'].get('namespace', '')}/{ref.get('name')}")

    def _jobs_of(self, cj: Obj) -> list[Obj]:
        uid = cj["metadata"].get("uid")
        return [j for j in self.job_informer.store.by_index(INDEX_NAMESPACE, cj["metadata"]["namespace"])
                if (controller_of(j) or {}).get("uid") == uid]

    async def sync(self, key: str) -> None:
        """Reconcile the CronJob ``key`` (``namespace/name``)."""
        cj = self.cj_informer.store.get(key)
        if cj is None:
            return
        jobs = self._jobs_of(cj)
        status: Obj = dict(cj.get("status") or {})
        self._reconcile_active(cj, status, jobs)
        await self._clean_history(cj, jobs)
        requeue: float | None = None
        if not is_terminating(cj) and not (cj.get("spec") or {}).get("suspend"):
            requeue = await self._schedule(cj, status, jobs)
        if _norm(status) != _norm(cj.get("status") or {}):
            try:
                await self.client.update(CRONJOBS, {**cj, "status": status}, subresource="status")
            except errors.NotFoundError:
                return
        if requeue is not None:
            self.queue.add_after(key, requeue)

    def _reconcile_active(self, cj: Obj, status: Obj, jobs: list[Obj]) -> None:
        by_uid = {j["metadata"]["uid"]: j for j in jobs}
        active: list[Obj] = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid"))
            if job is None:
                self.recorder.event(cj, "Normal", "MissingJob", f"Active job went missing: {ref.get('name')}")
                continue
            if is_finished_job(job):
                self._saw_finished(cj, status, job)
                continue
            active.append(ref)
        listed = {r.get("uid") for r in active}
        for job in jobs:
            if not is_finished_job(job) and job["metadata"]["uid"] not in listed:
                active.append(_ref(job))
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    def _saw_finished(self, cj: Obj, status: Obj, job: Obj) -> None:
        job_status = job.get("status") or {}
        if condition(job_status, "Complete") is not None and job_status.get("completionTime"):
            last = status.get("lastSuccessfulTime")
            if not last or parse_rfc3339(str(last)) < parse_rfc3339(str(job_status["completionTime"])):
                status["lastSuccessfulTime"] = job_status["completionTime"]
        kind = "Complete" if condition(job_status, "Complete") is not None else "Failed"
        self.recorder.event(cj, "Normal", "SawCompletedJob",
                            f"Saw completed job: {job['metadata']['name']}, condition: {kind}")

    async def _clean_history(self, cj: Obj, jobs: list[Obj]) -> None:
        spec = cj.get("spec") or {}
        finished = sorted((j for j in jobs if is_finished_job(j) and not is_terminating(j)), key=_finished_at)
        good = [j for j in finished if condition(j.get("status") or {}, "Complete") is not None]
        bad = [j for j in finished if condition(j.get("status") or {}, "Complete") is None]
        for group, limit in ((good, spec.get("successfulJobsHistoryLimit")), (bad, spec.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            for job in group[:max(0, len(group) - int(limit))]:
                await self._delete_job(cj, job)

    async def _delete_job(self, cj: Obj, job: Obj) -> None:
        m = job["metadata"]
        try:
            await self.client.delete(JOBS, m["name"], namespace=m["namespace"], propagation_policy="Background",
                                     preconditions={"uid": m["uid"]})
            self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {m['name']}")
        except (errors.NotFoundError, errors.ConflictError):
            pass

    async def _schedule(self, cj: Obj, status: Obj, jobs: list[Obj]) -> float | None:
        """Start the Job of the latest unmet schedule time; seconds until the next one."""
        spec = cj.get("spec") or {}
        key = object_key(cj)
        try:
            schedule = cronschedule.parse(str(spec.get("schedule", "")), spec.get("timeZone"))
        except cronschedule.ScheduleError as exc:
            self.recorder.event(cj, "Warning", "UnparseableSchedule", f"unparseable schedule: {exc}")
            return None
        now = self.clock()
        last = status.get("lastScheduleTime") or cj["metadata"].get("creationTimestamp")
        earliest = parse_rfc3339(str(last)) if last else now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - timedelta(seconds=int(deadline)))
        scheduled, count = schedule.most_recent(earliest, now, limit=MISSED_LIMIT)
        nxt = schedule.next_after(now)
        wait = None if nxt is None else max(0.0, (nxt - now).total_seconds()) + 0.1
        if count > MISSED_LIMIT:
            self.recorder.event(cj, "Warning", "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or "
                                "check clock skew")
        if scheduled is None:
            return wait
        if deadline is not None and scheduled + timedelta(seconds=int(deadline)) < now:
            self.recorder.event(cj, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {_rfc3339(scheduled)}")
            return wait
        policy = spec.get("concurrencyPolicy") or "Allow"
        active = status.get("active") or []
        if policy == "Forbid" and active:
            log.info("cronjob %s: a job is still running; skipping %s (Forbid)", key, _rfc3339(scheduled))
            self.recorder.event(cj, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and concurrency policy "
                                "is Forbid")
            return wait
        if policy == "Replace":
            by_uid = {j["metadata"]["uid"]: j for j in jobs}
            for ref in active:
                job = by_uid.get(ref.get("uid"))
                if job is not None:
                    await self._delete_job(cj, job)
            status.pop("active", None)
        body = job_from_template(cj, scheduled, schedule.zone)
        try:
            job = await self.client.create(JOBS, body, namespace=cj["metadata"]["namespace"])
            self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {job['metadata']['name']}")
        except errors.AlreadyExistsError:
            job = None  # made by an earlier attempt at this time
        except errors.ApiError as exc:
            self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {exc}")
            raise
        if job is not None:
            status["active"] = [*(status.get("active") or []), _ref(job)]
        status["lastScheduleTime"] = _rfc3339(scheduled)
        return wait


def _norm(status: Obj) -> Obj:
    return {k: v for k, v in status.items() if v not in (None, [], {})}
