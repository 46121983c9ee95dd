"""Container restart rules: whether an exited container restarts, and Kubernetes' CrashLoopBackOff.

Used by :mod:`kubelet.sync` (one :class:`CrashLoopBackoff` per kubelet, keyed ``<pod uid>/<container>``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CrashLoopBackoff", "seconds_text", "should_restart"]


def should_restart(policy: str, exit_code: int | None) -> bool:
    """Whether an exited container is restarted under the pod's ``restartPolicy``."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


@dataclass
class _Entry:
    delay: float
    last_update: float


@dataclass
class CrashLoopBackoff:
    """Kubernetes' container restart back-off: the first restart is immediate, then each
    restart waits ``base``, ``2*base``, ... up to ``maximum`` after the previous restart; an
    entry idle for ``2*maximum`` is forgotten (the container ran long enough)."""

    base: float = 10.0
    maximum: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def remaining(self, key: str) -> float:
        """Seconds until ``key`` may restart (0: now)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        elapsed = self.clock() - entry.last_update
        if elapsed > 2 * self.maximum:
            del self._entries[key]
            return 0.0
        return max(entry.delay - elapsed, 0.0)

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def next(self, key: str) -> None:
        """Record a restart of ``key`` now; the following one waits longer."""
        entry = self._entries.get(key)
        delay = self.base if entry is None else min(entry.delay * 2, self.maximum)
        self._entries[key] = _Entry(delay=delay, last_update=self.clock())

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


def seconds_text(value: float) -> str:
    """A delay as Kubernetes prints it in back-off messages (``10s``, ``5m0s``)."""
    return f"{value:g}s" if value < 60 else f"{int(value // 60)}m{int(value % 60)}s"
