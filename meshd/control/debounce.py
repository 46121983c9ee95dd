"""Debouncing: many changes in a burst become one push (Istio's ``PILOT_DEBOUNCE_AFTER`` / ``_MAX``).

:class:`Debouncer` calls its ``fire`` coroutine once a burst of :meth:`Debouncer.trigger` calls has
been quiet for ``quiet`` seconds, or ``max_wait`` seconds after the burst's first trigger, whichever
comes first; triggers arriving while ``fire`` runs start the next burst. Used by
:mod:`meshd.control.push`, triggered by :class:`meshd.control.model.MeshModel` changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["Debouncer"]

log = logging.getLogger(__name__)


class Debouncer:
    def __init__(self, fire: Callable[[int, float], Awaitable[None]], *, quiet: float, max_wait: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``fire(changes, first_change_at)``."""
        self.fire = fire
        self.quiet = quiet
        self.max_wait = max_wait
        self.clock = clock
        self._event = asyncio.Event()
        self._count = 0
        self._first = 0.0
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None
        self.fired = 0

    def trigger(self) -> None:
        now = self.clock()
        if self._count == 0:
            self._first = now
        self._count += 1
        self._last = now
        self._event.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="meshd:debounce")
            self._task.add_done_callback(self._guard)

    def _guard(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("debouncer died", exc_info=task.exception())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._event.wait()
            while True:
                self._event.clear()
                deadline = min(self._last + self.quiet, self._first + self.max_wait)
                remaining = deadline - self.clock()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), remaining)
            count, first = self._count, self._first
            self._count = 0
            self._event.clear()
            self.fired += 1
            try:
                await self.fire(count, first)
            except Exception:
                log.exception("push after %d change(s) failed", count)
