"""The TTL-after-finished controller: deletes finished Jobs ``ttlSecondsAfterFinished`` seconds
after they finished (Kubernetes' ``ttlafterfinished`` controller).

Started by ``controllers.manager``. Handlers enqueue finished Jobs that carry a TTL; ``sync``
re-reads the Job from the API before deleting (the cache may be stale, the TTL may have changed)
and deletes with ``Foreground`` propagation and a UID precondition, so the Job's pods go first and
a re-created Job of the same name is never hit. A Job not yet expired is re-queued for the moment
it expires. The finish time is the ``Complete``/``Failed`` condition's ``lastTransitionTime``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controllers.job_util import condition, is_finished_job
from controllers.ownership import is_terminating
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import ApiClient, InformerFactory, run_workers, wait_for_cache_sync
from machinery.meta import object_key, parse_rfc3339, utcnow
from machinery.resources import JOBS

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def expires_at(job: Obj) -> datetime | None:
    """When a finished Job with a TTL expires (None: no TTL, not finished, or being deleted)."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or not is_finished_job(job) or is_terminating(job):
        return None
    status = job.get("status") or {}
    cond = condition(status, "Complete") or condition(status, "Failed") or {}
    finished = cond.get("lastTransitionTime") or status.get("completionTime")
    if not finished:
        return None
    return parse_rfc3339(str(finished)) + timedelta(seconds=int(ttl))


class TTLAfterFinishedController:
    """Deletes finished Jobs once their TTL has passed."""

    name = "ttl-after-finished"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.informer = factory.informer(JOBS)
        self.queue = settings.workqueue(self.name)
        self.informer.add_handler(on_add=self._enqueue, on_update=lambda old, cur: self._enqueue(cur))

    def _enqueue(self, job: Obj) -> None:
        if expires_at(job) is not None:
            self.queue.add(object_key(job))

    async def run(self, workers: int) -> None:
        """Sync expired Jobs with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.informer)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    async def sync(self, key: str) -> None:
        """Delete the Job ``key`` when expired, else requeue it for its expiry."""
        cached = self.informer.store.get(key)
        if cached is None or self._requeue(key, cached):
            return
        namespace, name = key.split("/", 1)
        try:
            fresh = await self.client.get(JOBS, name, namespace=namespace)
        except errors.NotFoundError:
            return
        if self._requeue(key, fresh):
            return
        log.info("job %s: ttlSecondsAfterFinished passed, deleting", key)
        try:
            await self.client.delete(JOBS, name, namespace=namespace, propagation_policy="Foreground",
                                     preconditions={"uid": fresh["metadata"]["uid"]})
        except (errors.NotFoundError, errors.ConflictError):
            return

    def _requeue(self, key: str, job: Obj) -> bool:
        """True when ``job`` is not (yet) to be deleted; requeues it for later when it will be."""
        at = expires_at(job)
        if at is None:
            return True
        left = (at - self.clock()).total_seconds()
        if left > 0:
            self.queue.add_after(key, left)
            return True
        return False
