"""Queue transitions and cache assume/confirm/forget/expire, with an injected clock."""

from __future__ import annotations

import pytest

from scheduler.cache import SchedulerCache
from scheduler.queue import SchedulingQueue
from tests.scheduler.helpers import info, node, pod


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_active_orders_by_priority_then_fifo() -> None:
    q = SchedulingQueue(clock=Clock())
    for name, prio in (("a", 0), ("b", 10), ("c", 0)):
        q.add(info(pod(name, priority=prio)))
    assert [q.pop_nowait().name for _ in range(3)] == ["b", "a", "c"]  # type: ignore[union-attr]
    assert q.pop_nowait() is None


@pytest.mark.parametrize(("attempts", "expected"), [
    pytest.param(1, 1.0, id="first"), pytest.param(2, 2.0, id="second"), pytest.param(4, 8.0, id="fourth"),
    pytest.param(9, 10.0, id="capped"),
])
def test_backoff_doubles_and_caps(attempts: int, expected: float) -> None:
    assert SchedulingQueue().backoff_duration(attempts) == expected


def test_error_goes_to_backoff_then_active() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(info(pod("a")))
    assert q.pop_nowait() is not None
    q.requeue_error("default/a")
    assert q.counts() == {"active": 0, "backoff": 1, "unschedulable": 0}
    assert q.pop_nowait() is None
    clock.now += 1.0
    assert q.pop_nowait() is not None


def test_unschedulable_moves_on_cluster_event_and_timeout() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(info(pod("a")))
    q.pop_nowait()
    q.requeue_unschedulable("default/a")
    assert q.counts()["unschedulable"] == 1
    clock.now += 5
    q.move_all_to_active()
    assert q.counts()["active"] == 1
    q.pop_nowait()
    q.requeue_unschedulable("default/a")
    clock.now += 59
    assert q.pop_nowait() is None
    clock.now += 2
    assert q.pop_nowait() is not None


def test_cluster_event_during_cycle_sends_pod_to_backoff() -> None:
    q = SchedulingQueue(clock=Clock())
    q.add(info(pod("a")))
    q.pop_nowait()
    q.move_all_to_active()  # a node arrived while "a" was being scheduled
    q.requeue_unschedulable("default/a")
    assert q.counts() == {"active": 0, "backoff": 1, "unschedulable": 0}


def test_delete_removes_everywhere() -> None:
    q = SchedulingQueue(clock=Clock())
    q.add(info(pod("a")))
    q.delete("default/a")
    assert q.pop_nowait() is None and len(q) == 0


def test_cache_assume_confirm_forget_expire() -> None:
    clock = Clock()
    cache = SchedulerCache(clock=clock, assume_ttl=30)
    cache.set_node(node("n", cpu="2"))
    p = info(pod("a", cpu="1"))
    cache.assume(p, "n")
    assert cache.nodes["n"].requested_cpu == 1000 and cache.is_assumed("default/a")
    cache.forget("default/a")
    assert cache.nodes["n"].requested_cpu == 0
    cache.assume(p, "n")
    cache.finish_binding("default/a")
    clock.now += 29
    assert cache.cleanup_expired() == []
    clock.now += 2
    assert cache.cleanup_expired() == ["default/a"]
    assert cache.nodes["n"].requested_cpu == 0
    cache.assume(p, "n")
    cache.finish_binding("default/a")
    cache.add_pod(info(pod("a", cpu="1", node_name="n")))  # the watch confirms it
    clock.now += 100
    assert cache.cleanup_expired() == [] and not cache.is_assumed("default/a")
    assert cache.nodes["n"].requested_cpu == 1000
