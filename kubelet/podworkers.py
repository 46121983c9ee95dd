"""Pod workers: one serialized worker per pod, shared by every node of a kubelet process.

``kubelet.hollow.KubeletGroup`` calls :meth:`PodWorkers.update` for every pod event (informer
or runtime) and :meth:`PodWorkers.update_after` for timers (CrashLoopBackOff, periodic
resync). Guarantees, as the kubelet's ``podWorkers``:

* the sync function never runs twice at once for the same key; updates that arrive while it
  runs are coalesced into exactly one more run afterwards (level-triggered: the sync reads
  the latest state itself);
* a task exists only while a pod has work, so idle pods on a thousand hollow nodes cost a dict
  entry, not a coroutine;
* at most ``concurrency`` syncs run at once across all pods (bounded writes to the apiserver);
* a failing sync (an apiserver that is away, a status write that did not land) is retried with
  per-key exponential backoff (``retry_base`` doubling to ``retry_max``) until it succeeds,
  never dropped; its log stays bounded: a traceback for the first :data:`TRACEBACK_FAILURES`
  failures of a key (none for an unreachable apiserver), then one line per retry.

The periodic resync (``KubeletSettings.sync_frequency``) comes from the group's pod informer,
whose resync hands every pod to :meth:`PodWorkers.update` again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from machinery.errors import ServiceUnavailableError

__all__ = ["TRACEBACK_FAILURES", "PodWorkers"]

log = logging.getLogger(__name__)

TRACEBACK_FAILURES = 3
"""Failures of one key logged with a traceback; later ones are one line each."""


class PodWorkers:
    """Serialized, coalescing per-key execution of ``sync(key)``."""

    def __init__(
        self,
        sync: Callable[[str], Awaitable[None]],
        *,
        concurrency: int = 32,
        retry_base: float = 0.2,
        retry_max: float = 30.0,
    ) -> None:
        self._sync = sync
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._failures: dict[str, int] = {}
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._closed = False

    def update(self, key: str) -> None:
        """Make sure ``sync(key)`` runs (again) soon."""
        if self._closed:
            return
        self._pending.add(key)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._work(key), name=f"pod-worker {key}")

    def update_after(self, key: str, delay: float) -> None:
        """Run ``sync(key)`` after ``delay`` seconds (an earlier timer for the key is kept if sooner)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay
        if existing is not None and not existing.cancelled() and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.update(key)

    def busy(self, key: str) -> bool:
        return key in self._tasks

    def scheduled(self, key: str) -> bool:
        """Whether a timer (retry, back-off, requeue) will sync ``key`` later."""
        return key in self._timers

    def __len__(self) -> int:
        return len(self._tasks)

    async def _work(self, key: str) -> None:
        try:
            while key in self._pending and not self._closed:
                self._pending.discard(key)
                async with self._slots:
                    try:
                        await self._sync(key)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        failures = self._failures.get(key, 0) + 1
                        self._failures[key] = failures
                        delay = min(self._retry_base * 2 ** min(failures - 1, 64), self._retry_max)
                        if failures <= TRACEBACK_FAILURES and not isinstance(exc, ServiceUnavailableError):
                            log.exception("sync of pod %s failed (retry %d in %.1fs)", key, failures, delay)
                        else:
                            log.warning("sync of pod %s failed (retry %d in %.1fs): %s: %s", key, failures, delay,
                                        type(exc).__name__, exc)
                        self.update_after(key, delay)
                    else:
                        self._failures.pop(key, None)
        finally:
            self._tasks.pop(key, None)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no worker runs (tests)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop accepting work, cancel timers and running syncs, and wait for them."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
