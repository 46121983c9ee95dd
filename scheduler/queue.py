"""The scheduling queue: active (priority, then FIFO), backoff, unschedulable.

Fed by the scheduler's pod informer handlers (:meth:`add`, :meth:`update`, :meth:`delete`), by the
scheduling loop (:meth:`pop`, :meth:`requeue_unschedulable`, :meth:`requeue_error`) and by cluster
events (:meth:`move_all_to_active`). Guarantees:

- a pod is in at most one sub-queue, and never handed out twice at once (popped pods are "in flight"
  until they are requeued or :meth:`done`);
- a failed pod waits ``1 s * 2^(attempts-1)`` (capped at 10 s) in backoff before it is active again;
- an unschedulable pod stays parked until a node is added/updated or a pod deleted
  (:meth:`move_all_to_active`), and at most ``unschedulable_timeout`` (60 s) in any case;
- a cluster event that arrives while a pod is in flight sends that pod to backoff, not to the
  unschedulable list (it may fit now: Kubernetes' moveRequestCycle).
The clock is injectable (monotonic seconds).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.podinfo import PodInfo

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
UNSCHEDULABLE_TIMEOUT = 60.0


@dataclass(slots=True)
class QueuedPod:
    pod: PodInfo
    attempts: int = 0
    timestamp: float = 0.0  # when it entered its current sub-queue
    cycle: int = 0  # the scheduling cycle that popped it last


class SchedulingQueue:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, initial_backoff: float = INITIAL_BACKOFF,
                 max_backoff: float = MAX_BACKOFF, unschedulable_timeout: float = UNSCHEDULABLE_TIMEOUT) -> None:
        self._clock = clock
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._unschedulable_timeout = unschedulable_timeout
        self._seq = itertools.count()
        self._active: list[tuple[int, int, str]] = []  # (-priority, seq, key); stale entries skipped on pop
        self._active_keys: dict[str, int] = {}  # key -> seq of its live heap entry
        self._backoff: list[tuple[float, int, str]] = []
        self._backoff_keys: dict[str, int] = {}
        self._unschedulable: dict[str, QueuedPod] = {}
        self._pods: dict[str, QueuedPod] = {}
        self._in_flight: dict[str, QueuedPod] = {}
        self._cycle = 0
        self._move_request_cycle = -1
        self._wakeup = asyncio.Event()
        self._last_sweep = 0.0

    # -- sizes --------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Pending pods per sub-queue (the ``scheduler_pending_pods`` gauge)."""
        return {"active": len(self._active_keys), "backoff": len(self._backoff_keys),
                "unschedulable": len(self._unschedulable)}

    def __len__(self) -> int:
        return len(self._pods)

    def __contains__(self, key: str) -> bool:
        return key in self._pods or key in self._in_flight

    # -- informer side ---------------------------------------------------------------------
    def _push_active(self, entry: QueuedPod) -> None:
        key = entry.pod.key
        self._backoff_keys.pop(key, None)
        self._unschedulable.pop(key, None)
        seq = next(self._seq)
        self._active_keys[key] = seq
        entry.timestamp = self._clock()
        heapq.heappush(self._active, (-entry.pod.priority, seq, key))
        self._wakeup.set()

    def _push_backoff(self, entry: QueuedPod) -> None:
        key = entry.pod.key
        self._active_keys.pop(key, None)
        self._unschedulable.pop(key, None)
        seq = next(self._seq)
        self._backoff_keys[key] = seq
        entry.timestamp = self._clock()
        heapq.heappush(self._backoff, (entry.timestamp + self.backoff_duration(entry.attempts), seq, key))
        self._wakeup.set()

    def backoff_duration(self, attempts: int) -> float:
        if attempts <= 0:
            return 0.0
        return min(self._initial_backoff * float(2 ** (attempts - 1)), self._max_backoff)

    def add(self, pod: PodInfo) -> None:
        """A new pending pod (or one seen again): active unless already queued or in flight."""
        key = pod.key
        if key in self._in_flight:
            self._in_flight[key].pod = pod
            return
        if key in self._pods:
            self.update(pod)
            return
        entry = QueuedPod(pod)
        self._pods[key] = entry
        self._push_active(entry)

    def update(self, pod: PodInfo) -> None:
        """A newer version of a queued pod; a parked pod whose spec changed goes back to active."""
        entry = self._pods.get(pod.key) or self._in_flight.get(pod.key)
        if entry is None:
            self.add(pod)
            return
        spec_changed = entry.pod.obj.get("spec") != pod.obj.get("spec") or entry.pod.labels != pod.labels
        entry.pod = pod
        if pod.key in self._unschedulable and spec_changed:
            self._push_active(entry)

    def delete(self, key: str) -> None:
        self._pods.pop(key, None)
        self._in_flight.pop(key, None)
        self._active_keys.pop(key, None)
        self._backoff_keys.pop(key, None)
        self._unschedulable.pop(key, None)

    def move_all_to_active(self) -> None:
        """A cluster change that may make parked pods fit: unschedulable -> active (or backoff)."""
        self._move_request_cycle = self._cycle
        now = self._clock()
        for entry in list(self._unschedulable.values()):
            if now < entry.timestamp + self.backoff_duration(entry.attempts):
                self._push_backoff(entry)
            else:
                self._push_active(entry)

    # -- scheduling loop side ---------------------------------------------------------------
    def _flush(self) -> float | None:
        """Move due backoff/unschedulable pods to active; return seconds until the next is due."""
        now = self._clock()
        while self._backoff:
            ready, seq, key = self._backoff[0]
            if self._backoff_keys.get(key) != seq:
                heapq.heappop(self._backoff)
                continue
            if ready > now:
                break
            heapq.heappop(self._backoff)
            self._push_active(self._pods[key])
        if self._unschedulable and now - self._last_sweep >= 1.0:  # a sweep is O(parked pods): once a second
            self._last_sweep = now
            for entry in list(self._unschedulable.values()):
                if now - entry.timestamp >= self._unschedulable_timeout:
                    self._push_active(entry)
        waits = [self._backoff[0][0] - now] if self._backoff else []
        if self._unschedulable:
            waits.append(1.0)
        return max(min(waits), 0.0) if waits else None

    def pop_nowait(self) -> PodInfo | None:
        """The next active pod (highest priority, then oldest), or None."""
        self._flush()
        while self._active:
            _, seq, key = heapq.heappop(self._active)
            if self._active_keys.get(key) != seq:
                continue
            del self._active_keys[key]
            entry = self._pods.pop(key)
            self._cycle += 1
            entry.cycle = self._cycle
            entry.attempts += 1
            self._in_flight[key] = entry
            return entry.pod
        return None

    async def pop(self) -> PodInfo:
        """Wait for the next active pod."""
        while True:
            pod = self.pop_nowait()
            if pod is not None:
                return pod
            self._wakeup.clear()
            delay = self._flush()
            if self._active_keys:
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay if delay is not None else 1.0)
            except TimeoutError:
                pass

    def done(self, key: str) -> None:
        """The pod was placed (or dropped): forget it."""
        self._in_flight.pop(key, None)

    def requeue_unschedulable(self, key: str) -> None:
        """No node fits: park the pod (or back it off if the cluster changed meanwhile)."""
        entry = self._in_flight.pop(key, None)
        if entry is None:
            return
        self._pods[key] = entry
        if self._move_request_cycle >= entry.cycle:
            self._push_backoff(entry)
        else:
            self._active_keys.pop(key, None)
            self._backoff_keys.pop(key, None)
            entry.timestamp = self._clock()
            self._unschedulable[key] = entry

    def requeue_error(self, key: str) -> None:
        """An error (or a failed bind): retry after backoff."""
        entry = self._in_flight.pop(key, None)
        if entry is None:
            return
        self._pods[key] = entry
        self._push_backoff(entry)
