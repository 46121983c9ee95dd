"""Worker loops of a controller: keys from a :class:`RateLimitingQueue` into an idempotent ``sync(key)``.

Controllers (replicaset, deployment, endpoints, ...) call :func:`run_workers` after their
informers have synced. Guarantees: ``workers`` named tasks; a key is synced by one worker at a
time (the queue's guarantee); a failing sync is retried with the queue's rate limiter (client-go's
default controller rate limiter: per-key ``5 ms * 2**failures`` capped at 1000 s, and an overall
10 qps / 100 burst bucket) for as long as it fails — a level-triggered loop never gives a key up,
so a controller heals after an apiserver or storage outage of any length; a successful sync
resets the key's backoff; returns when the queue shuts down; cancelling ``run_workers`` cancels
and awaits its workers.

Logs stay bounded however long a key keeps failing: a conflict (our cache was behind) is one
info line; an apiserver that cannot be reached (:class:`ServiceUnavailableError`, routine during
a restart) one warning line per retry; other errors log a traceback for the first
:data:`TRACEBACK_RETRIES` failures of a key, then one warning line per retry (whose rate the
backoff already bounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from machinery.client.workqueue import RateLimitingQueue, ShutDown
from machinery.errors import ConflictError, ServiceUnavailableError

__all__ = ["TRACEBACK_RETRIES", "process_next", "run_workers"]

log = logging.getLogger(__name__)

TRACEBACK_RETRIES = 3
"""Failures of one key logged with a traceback before the retries are logged as one line each."""


def _log_failure(name: str, key: str, failures: int, exc: Exception) -> None:
    if isinstance(exc, ConflictError):
        log.info("%s: conflict syncing %r, retrying: %s", name, key, exc)
    elif failures <= TRACEBACK_RETRIES and not isinstance(exc, ServiceUnavailableError):
        log.warning("%s: error syncing %r (failure %d), retrying", name, key, failures, exc_info=exc)
    else:
        log.warning("%s: error syncing %r (failure %d), retrying: %s: %s", name, key, failures,
                    type(exc).__name__, exc)


async def process_next(queue: RateLimitingQueue, sync: Callable[[str], Awaitable[None]], *, name: str) -> None:
    """Take one key, sync it, and handle the outcome (raises :class:`ShutDown` when the queue is shut down)."""
    key = await queue.get()
    try:
        await sync(key)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        _log_failure(name, key, queue.num_requeues(key) + 1, exc)
        queue.add_rate_limited(key)
    else:
        queue.forget(key)
    finally:
        queue.done(key)


async def _worker(queue: RateLimitingQueue, sync: Callable[[str], Awaitable[None]], name: str) -> None:
    while True:
        try:
            await process_next(queue, sync, name=name)
        except ShutDown:
            return


async def run_workers(queue: RateLimitingQueue, sync: Callable[[str], Awaitable[None]], *, workers: int,
                      name: str) -> None:
    """Run ``workers`` worker tasks until the queue shuts down (or this coroutine is cancelled)."""
    tasks = [asyncio.create_task(_worker(queue, sync, name), name=f"{name}-worker-{i}")
             for i in range(max(workers, 1))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
