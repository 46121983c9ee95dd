"""The backoff between replacements of a node's failed daemon pod (the DaemonSet controller's
``failedPodsBackoff``, client-go's ``flowcontrol.Backoff``).

Owned by ``controllers.daemonset``. A kubelet that rejects a daemon pod (a host port taken, a
missing resource) fails it at once; deleting and recreating it at every sync would be a hot loop.
So a failed pod is deleted only when its key — DaemonSet UID, observed generation and node, so a
new template starts afresh — is out of backoff; each deletion starts the next period, 1 s
doubling to 15 min. A key left alone for twice the cap starts again from 1 s; :meth:`gc` drops
such keys. Time comes from an injectable monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

INITIAL = 1.0
CAP = 900.0


@dataclass
class _Entry:
    delay: float
    last: float


def key_for(ds: Obj, node: str) -> str:
    """The backoff key of ``ds`` on ``node``."""
    generation = int((ds.get("status") or {}).get("observedGeneration") or 0)
    return f"{ds['metadata'].get('uid')}/{generation}/{node}"


class FailedPodsBackoff:
    """Per key: the current period and when it started."""

    def __init__(self, *, initial: float = INITIAL, cap: float = CAP,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial = initial
        self.cap = cap
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def remaining(self, key: str) -> float:
        """Seconds left in the key's current period (0: not in backoff)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        elapsed = self.clock() - entry.last
        return max(0.0, entry.delay - elapsed) if elapsed <= 2 * self.cap else 0.0

    def next(self, key: str) -> float:
        """Start the key's next period (the first, or double the last up to the cap); its length."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None or now - entry.last > 2 * self.cap:
            entry = self._entries[key] = _Entry(self.initial, now)
        else:
            entry.delay = min(entry.delay * 2, self.cap)
            entry.last = now
        return entry.delay

    def gc(self) -> None:
        """Forget keys idle for more than twice the cap."""
        now = self.clock()
        for key in [k for k, e in self._entries.items() if now - e.last > 2 * self.cap]:
            del self._entries[key]

    def forget(self, uid: str) -> None:
        """Forget every key of the DaemonSet with ``uid`` (it was deleted)."""
        for key in [k for k in self._entries if k.startswith(f"{uid}/")]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
