"""RateLimitingQueue and run_workers: client-go workqueue semantics on asyncio."""

from __future__ import annotations

import asyncio

import pytest

from machinery.client.controller import run_workers
from machinery.client.ratelimit import TokenBucket
from machinery.client.workqueue import RateLimitingQueue, ShutDown
from machinery.errors import ConflictError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_add_deduplicates_waiting_keys() -> None:
    q = RateLimitingQueue(name="t")
    for key in ("a", "b", "a", "a"):
        q.add(key)
    assert len(q) == 2
    assert [await q.get(), await q.get()] == ["a", "b"]


async def test_key_added_while_processing_is_requeued_after_done() -> None:
    q = RateLimitingQueue(name="t")
    q.add("a")
    key = await q.get()
    q.add("a")
    assert len(q) == 0, "a key being processed must not be handed out again"
    q.done(key)
    assert len(q) == 1
    assert await q.get() == "a"


async def test_done_without_readd_does_not_requeue() -> None:
    q = RateLimitingQueue(name="t")
    q.add("a")
    q.done(await q.get())
    assert len(q) == 0


async def test_get_waits_for_add() -> None:
    q = RateLimitingQueue(name="t")
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_shutdown_wakes_getters_and_ignores_adds() -> None:
    q = RateLimitingQueue(name="t")
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.shutdown()
    for getter in getters:
        with pytest.raises(ShutDown):
            await asyncio.wait_for(getter, 1)
    q.add("late")
    assert len(q) == 0
    with pytest.raises(ShutDown):
        await q.get()


async def test_add_after_delays_and_earliest_wins() -> None:
    q = RateLimitingQueue(name="t")
    q.add_after("a", 0.05)
    q.add_after("a", 5.0)  # later schedule of the same key is ignored
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 1) == "a"


@pytest.mark.parametrize(
    ("base", "cap", "expected"),
    [
        pytest.param(0.005, 1000.0, [0.005, 0.01, 0.02, 0.04, 0.08], id="doubling"),
        pytest.param(1.0, 3.0, [1.0, 2.0, 3.0, 3.0], id="capped"),
    ],
)
def test_per_key_backoff_grows_exponentially(base: float, cap: float, expected: list[float]) -> None:
    q = RateLimitingQueue(name="t", base_delay=base, max_delay=cap, qps=0)
    assert [q.when("k") for _ in expected] == pytest.approx(expected)
    assert q.num_requeues("k") == len(expected)
    assert q.when("other") == pytest.approx(base), "backoff is per key"
    q.forget("k")
    assert q.num_requeues("k") == 0
    assert q.when("k") == pytest.approx(base)


def test_overall_bucket_delay_wins_when_larger() -> None:
    clock = FakeClock()
    q = RateLimitingQueue(name="t", base_delay=0.001, qps=10, burst=2, clock=clock)
    delays = [q.when(f"k{i}") for i in range(4)]
    assert delays == pytest.approx([0.001, 0.001, 0.1, 0.2])


@pytest.mark.parametrize(
    ("qps", "burst", "advance", "expected"),
    [
        pytest.param(0.0, 0, 0.0, [0.0, 0.0, 0.0], id="unlimited"),
        pytest.param(2.0, 1, 0.0, [0.0, 0.5, 1.0], id="queue-up"),
        pytest.param(2.0, 1, 0.5, [0.0, 0.0, 0.0], id="refilled"),
    ],
)
def test_token_bucket(qps: float, burst: int, advance: float, expected: list[float]) -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=qps, burst=burst, clock=clock)
    delays = []
    for _ in expected:
        delays.append(bucket.reserve())
        clock.now += advance
    assert delays == pytest.approx(expected)


async def test_one_key_is_never_processed_concurrently() -> None:
    q = RateLimitingQueue(name="t")
    active: set[str] = set()
    overlaps = 0
    synced: list[str] = []

    async def sync(key: str) -> None:
        nonlocal overlaps
        if key in active:
            overlaps += 1
        active.add(key)
        await asyncio.sleep(0.01)
        active.discard(key)
        synced.append(key)

    runner = asyncio.create_task(run_workers(q, sync, workers=4, name="t"))
    for _ in range(5):
        for key in ("a", "b"):
            q.add(key)
        await asyncio.sleep(0.003)
    await asyncio.sleep(0.1)
    q.shutdown()
    await asyncio.wait_for(runner, 2)
    assert overlaps == 0
    assert {"a", "b"} <= set(synced)
    assert synced.count("a") >= 2, "adds during processing must lead to another sync"


async def test_run_workers_retries_then_succeeds() -> None:
    q = RateLimitingQueue(name="t", base_delay=0.001, max_delay=0.01)
    calls = 0
    done = asyncio.Event()

    async def sync(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ConflictError("stale") if calls % 2 else RuntimeError("boom")
        done.set()

    runner = asyncio.create_task(run_workers(q, sync, workers=2, name="t"))
    q.add("ns/x")
    await asyncio.wait_for(done.wait(), 10)
    q.shutdown()
    await asyncio.wait_for(runner, 10)
    assert calls == 4
    assert q.num_requeues("ns/x") == 0, "a success forgets the backoff"


async def test_run_workers_cancel_stops_workers() -> None:
    q = RateLimitingQueue(name="t")
    runner = asyncio.create_task(run_workers(q, lambda key: asyncio.sleep(10), workers=3, name="t"))
    q.add("a")
    await asyncio.sleep(0.01)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("t-worker-")]
