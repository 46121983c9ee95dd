"""Token buckets: the client-side rate limit of the REST client and the overall limit of workqueues.

Shaped like Go's ``rate.Limiter`` reservations: :meth:`TokenBucket.reserve` takes one token now
and answers how long the caller must wait before using it (tokens may go negative, so callers
queue up fairly). Used by :mod:`machinery.client.rest` (``qps``/``burst``) and
:mod:`machinery.client.workqueue` (``add_rate_limited``). No I/O; the clock is injectable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """``qps`` tokens per second, at most ``burst`` stored; ``qps <= 0`` means unlimited."""

    def __init__(self, *, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps = qps
        self.burst = max(burst, 1)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0

    def reserve(self) -> float:
        """Take one token; returns the seconds to wait before acting on it (0.0 when one was available)."""
        if self.unlimited:
            return 0.0
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    async def wait(self) -> None:
        """Sleep until a token is ours."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
