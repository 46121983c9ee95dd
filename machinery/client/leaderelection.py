"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's ``tools/leaderelection``.

The scheduler and the controller-manager run several replicas; :class:`LeaderElector` makes
exactly one of them run its ``lead`` coroutine. The Lease's ``spec`` holds ``holderIdentity``,
``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` (MicroTime) and ``leaseTransitions``.

Guarantees:
- every write carries the ``resourceVersion`` it read (compare-and-swap); a 409 means another
  candidate won that round, never an overwrite;
- a lease is taken over only when it has no holder or ``renewTime + leaseDurationSeconds`` has
  passed (by the injectable clock);
- the leader renews every ``retry_period``; if it cannot renew within ``renew_deadline`` it
  cancels ``lead`` and goes back to candidate; if ``lead`` ends by itself the lease is released
  and the elector competes again;
- cancelling :meth:`LeaderElector.run` cancels ``lead`` and releases the lease (empty
  ``holderIdentity``) so another candidate takes over at its next retry.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from machinery.client.rest import ApiClient
from machinery.errors import AlreadyExistsError, ApiError, ConflictError, NotFoundError
from machinery.meta import parse_rfc3339, utcnow
from machinery.resources import LEASES

__all__ = ["LeaderElector", "format_micro_time"]

log = logging.getLogger(__name__)


def format_micro_time(moment: datetime) -> str:
    """Kubernetes MicroTime: ``2024-01-01T00:00:00.000000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires and renews one Lease; runs ``lead`` while it holds it."""

    def __init__(self, client: ApiClient, *, lease_name: str, namespace: str = "kube-system", identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        if not retry_period < renew_deadline <= lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline <= lease_duration")
        self.client = client
        self.lease_name = lease_name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self.is_leader = False
        self._lease: dict[str, Any] | None = None  # the last Lease we read or wrote

    @property
    def _duration_seconds(self) -> int:
        return max(1, math.ceil(self.lease_duration))

    # -- one round --------------------------------------------------------------------------------

    def _spec(self, previous: dict[str, Any], now: str) -> dict[str, Any]:
        spec = dict(previous)
        if previous.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            # As client-go: every change of holder on an existing lease is a transition.
            spec["leaseTransitions"] = int(previous.get("leaseTransitions") or 0) + (1 if previous else 0)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self._duration_seconds, renewTime=now)
        return spec

    def _held_by_other(self, spec: dict[str, Any]) -> bool:
        holder = spec.get("holderIdentity")
        if not holder or holder == self.identity:
            return False
        renew = spec.get("renewTime") or spec.get("acquireTime")
        if not renew:
            return False
        try:
            expires = parse_rfc3339(str(renew)) + timedelta(seconds=float(spec.get("leaseDurationSeconds") or 0))
        except ValueError:
            return False
        return expires > self._clock()

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when we hold the lease afterwards."""
        now = format_micro_time(self._clock())
        try:
            lease = await self.client.get(LEASES, self.lease_name, namespace=self.namespace)
        except NotFoundError:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.lease_name, "namespace": self.namespace},
                    "spec": self._spec({}, now)}
            try:
                self._lease = await self.client.create(LEASES, body)
            except (AlreadyExistsError, ConflictError):
                return False
            return True
        spec = lease.get("spec") or {}
        if self._held_by_other(spec):
            self._lease = lease
            return False
        updated = copy.deepcopy(lease)
        updated["spec"] = self._spec(spec, now)
        try:
            self._lease = await self.client.update(LEASES, updated)
        except ConflictError:
            return False
        return True

    async def _round(self) -> bool:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result of a call that
            # ends as the caller is cancelled, losing the cancellation (a stopped elector went on).
            async with asyncio.timeout(self.renew_deadline):
                return await self.try_acquire_or_renew()
        except asyncio.CancelledError:
            raise
        except (ApiError, TimeoutError) as exc:
            log.warning("leader election %s/%s (%s): %s", self.namespace, self.lease_name, self.identity, exc)
            return False

    async def release(self) -> None:
        """Give the lease up (only if we still hold it; a conflict means someone else already has it)."""
        lease = self._lease
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        released = copy.deepcopy(lease)
        now = format_micro_time(self._clock())
        released["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
        try:
            async with asyncio.timeout(self.renew_deadline):
                self._lease = await self.client.update(LEASES, released)
            log.info("leader election %s/%s: %s released the lease", self.namespace, self.lease_name,
                     self.identity)
        except (ApiError, TimeoutError) as exc:
            log.info("leader election %s/%s: release failed: %s", self.namespace, self.lease_name, exc)

    # -- the loop ---------------------------------------------------------------------------------

    async def _sleep_retry(self) -> None:
        await asyncio.sleep(self.retry_period * (1 + 0.2 * random.random()))

    async def _acquire(self) -> None:
        while not await self._round():
            await self._sleep_retry()

    async def _hold(self, task: asyncio.Task[None]) -> None:
        """Renew until the lease is lost or ``lead`` ends."""
        loop = asyncio.get_running_loop()
        last_renew = loop.time()
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.retry_period)
            if done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("leader election %s/%s: lead failed", self.namespace, self.lease_name,
                              exc_info=task.exception())
                else:
                    log.info("leader election %s/%s: lead returned", self.namespace, self.lease_name)
                await self.release()
                return
            if await self._round():
                last_renew = loop.time()
            elif loop.time() - last_renew >= self.renew_deadline or self._lost():
                log.warning("leader election %s/%s: %s lost the lease", self.namespace, self.lease_name,
                            self.identity)
                return

    def _lost(self) -> bool:
        spec = (self._lease or {}).get("spec") or {}
        return self._held_by_other(spec)

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Compete forever; while leader, run ``lead()`` as a task (cancel ``run`` to stop and release)."""

        async def leading() -> None:
            await lead()

        try:
            while True:
                await self._acquire()
                self.is_leader = True
                log.info("leader election %s/%s: %s is the leader", self.namespace, self.lease_name,
                         self.identity)
                task = asyncio.create_task(leading(), name=f"leader:{self.lease_name}:{self.identity}")
                try:
                    await self._hold(task)
                finally:
                    self.is_leader = False
                    await _finish(task)
                await self._sleep_retry()
        except asyncio.CancelledError:
            await self.release()
            raise


async def _finish(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for its end, whatever it raised; a cancellation of the caller while it
    waits goes on to the caller (a suppressed one would keep a stopped elector competing forever)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: its failure was already handled by _hold
