"""client-go's rate-limited workqueue, on asyncio.

Informer handlers ``add`` object keys; controller workers (:func:`machinery.client.controller.run_workers`)
``get`` a key, sync it, then call ``done``. The semantics are client-go's ``util/workqueue``:

- *dirty* holds keys waiting to be processed, *processing* the keys a worker holds; a key is in the
  queue at most once, and never handed to two workers at once;
- a key added while it is being processed is marked dirty and re-queued by ``done``;
- ``add_after`` schedules an ``add`` (the earliest pending schedule of a key wins);
- ``add_rate_limited`` waits ``max(per-key exponential backoff, overall token bucket)``: the per-key
  delay is ``base_delay * 2**requeues`` capped at ``max_delay``; ``forget`` resets it;
- after ``shutdown`` every ``get`` raises :class:`ShutDown` and adds are ignored.

Not thread-safe: everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from machinery.client.ratelimit import TokenBucket

__all__ = ["RateLimitingQueue", "ShutDown"]


class ShutDown(Exception):
    """The queue was shut down: the worker should return."""


class RateLimitingQueue:
    """client-go's rate-limited workqueue: a key is never processed by two workers at once; a key added
    while processing is re-queued after done(); per-key exponential backoff + an overall token bucket."""

    def __init__(self, *, name: str, base_delay: float = 0.005, max_delay: float = 1000.0,
                 qps: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._bucket = TokenBucket(qps=qps, burst=burst, clock=clock)
        self._clock = clock
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._requeues: dict[str, int] = {}
        self._shutting_down = False

    # -- adding -----------------------------------------------------------------------------------

    def add(self, key: str) -> None:
        """Queue ``key`` unless it is already waiting; a key being processed is re-queued by ``done``."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        """``add(key)`` after ``delay`` seconds (at once when ``delay <= 0``)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready = self._clock() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self._timers[key] = (ready, handle)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def when(self, key: str) -> float:
        """The rate limiter's delay for ``key`` (and count one more requeue), as client-go's ``When``."""
        requeues = self._requeues.get(key, 0)
        self._requeues[key] = requeues + 1
        backoff = self.max_delay if requeues >= 64 else min(self.base_delay * 2.0**requeues, self.max_delay)
        return max(backoff, self._bucket.reserve())

    def add_rate_limited(self, key: str) -> None:
        """Re-queue ``key`` after its backoff (exponential per key, and the overall token bucket)."""
        self.add_after(key, self.when(key))

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff (after a successful sync)."""
        self._requeues.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._requeues.get(key, 0)

    # -- processing -------------------------------------------------------------------------------

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def get(self) -> str:
        """The next key to process (waits for one); raises :class:`ShutDown` after ``shutdown``."""
        while not self._queue and not self._shutting_down:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # A wake-up meant for us must not be lost: pass it on.
                if waiter.done() and not waiter.cancelled() and self._queue:
                    self._wake_one()
                raise
        if self._shutting_down:
            raise ShutDown(self.name)
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        """The worker finished ``key``; it is re-queued if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        """Stop: waiting and future ``get`` calls raise :class:`ShutDown`; pending delayed adds are dropped."""
        self._shutting_down = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        return len(self._queue)
