"""Controller expectations: how many creations/deletions a controller still waits to see.

Used by the ReplicaSet controller (and any controller that creates or deletes pods). After
issuing N creates, a controller must not create again until its informer has seen them (else it
would double-create from a stale cache). Expectations expire after five minutes so a lost watch
event cannot wedge a controller forever. Deletions are tracked by pod key (UID tracking), so a
pod observed twice (terminating, then gone) is counted once. Pure bookkeeping; clock injectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

EXPECTATIONS_TIMEOUT = 300.0


@dataclass
class _Expectation:
    add: int = 0
    delete_keys: set[str] = field(default_factory=set)
    timestamp: float = 0.0

    def fulfilled(self) -> bool:
        return self.add <= 0 and not self.delete_keys


class ControllerExpectations:
    """Per-controller-key pending creations (a counter) and deletions (a set of pod keys)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self._clock = clock
        self._timeout = timeout
        self._items: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        """True when the controller may act on ``key`` (nothing pending, expired, or never set)."""
        exp = self._items.get(key)
        if exp is None:
            return True
        if exp.fulfilled():
            return True
        return self._clock() - exp.timestamp > self._timeout

    def expect_creations(self, key: str, count: int) -> None:
        """Record that ``count`` creations were issued for ``key`` (replaces older expectations)."""
        self._items[key] = _Expectation(add=count, timestamp=self._clock())

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        """Record that the pods ``pod_keys`` are being deleted for ``key``."""
        self._items[key] = _Expectation(delete_keys=set(pod_keys), timestamp=self._clock())

    def creation_observed(self, key: str) -> None:
        """The informer saw one pod created for ``key`` (or a create failed)."""
        exp = self._items.get(key)
        if exp is not None and exp.add > 0:
            exp.add -= 1

    def lower_creations(self, key: str, count: int) -> None:
        """``count`` creations will never be observed (they were skipped or failed)."""
        for _ in range(count):
            self.creation_observed(key)

    def deletion_observed(self, key: str, pod_key: str) -> None:
        """The informer saw ``pod_key`` deleted or terminating (or its delete failed)."""
        exp = self._items.get(key)
        if exp is not None:
            exp.delete_keys.discard(pod_key)

    def delete(self, key: str) -> None:
        """Forget ``key`` (its controller object is gone)."""
        self._items.pop(key, None)

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected for ``key`` (for logs and tests)."""
        exp = self._items.get(key)
        return (0, 0) if exp is None else (max(exp.add, 0), len(exp.delete_keys))
