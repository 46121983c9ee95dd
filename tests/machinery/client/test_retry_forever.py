"""Controller workers never give a key up: a sync that keeps failing is retried until it succeeds.

client-go's controllers requeue a failing key with ``AddRateLimited`` for as long as it fails;
the logs stay bounded (a traceback for the first failures only).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from machinery.client.controller import TRACEBACK_RETRIES, run_workers
from machinery.client.workqueue import RateLimitingQueue
from machinery.errors import ServiceUnavailableError

FAILURES = 40
"""Far more than the 15 retries after which a key used to be dropped."""


async def test_key_failing_many_times_is_still_synced(caplog: pytest.LogCaptureFixture) -> None:
    q = RateLimitingQueue(name="t", base_delay=0.0005, max_delay=0.005, qps=0)
    calls = 0
    synced = asyncio.Event()

    async def sync(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls <= FAILURES:
            raise RuntimeError(f"storage unavailable ({calls})")
        synced.set()

    caplog.set_level(logging.INFO, logger="machinery.client.controller")
    runner = asyncio.create_task(run_workers(q, sync, workers=2, name="t"))
    try:
        q.add("ns/rs")
        await asyncio.wait_for(synced.wait(), 30)
    finally:
        q.shutdown()
        await asyncio.wait_for(runner, 10)
    assert calls == FAILURES + 1
    assert q.num_requeues("ns/rs") == 0, "the success forgets the backoff"
    records = [r for r in caplog.records if r.name == "machinery.client.controller"]
    assert len(records) == FAILURES, "one log record per failure"
    assert sum(r.exc_info is not None for r in records) == TRACEBACK_RETRIES, "tracebacks only for the first"
    assert "failure 40" in records[-1].getMessage()


async def test_backoff_grows_to_the_cap_and_stays() -> None:
    """client-go's ItemExponentialFailureRateLimiter: base * 2**n, capped, never a give-up."""
    q = RateLimitingQueue(name="t", base_delay=0.005, max_delay=1000.0, qps=0)
    delays = [q.when("k") for _ in range(30)]
    assert delays[:3] == [0.005, 0.01, 0.02]
    assert delays[-1] == 1000.0
    assert q.num_requeues("k") == 30


async def test_an_unreachable_apiserver_is_one_line_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    q = RateLimitingQueue(name="t", base_delay=0.0005, max_delay=0.005, qps=0)
    calls = 0
    synced = asyncio.Event()

    async def sync(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise ServiceUnavailableError("POST /api/v1/namespaces/default/pods: connection refused")
        synced.set()

    caplog.set_level(logging.INFO, logger="machinery.client.controller")
    runner = asyncio.create_task(run_workers(q, sync, workers=1, name="t"))
    try:
        q.add("ns/rs")
        await asyncio.wait_for(synced.wait(), 30)
    finally:
        q.shutdown()
        await asyncio.wait_for(runner, 10)
    records = [r for r in caplog.records if r.name == "machinery.client.controller"]
    assert len(records) == 5
    assert all(r.exc_info is None and "connection refused" in r.getMessage() for r in records)
