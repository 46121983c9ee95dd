"""Worker loops of a controller: keys from a :class:`RateLimitingQueue` into an idempotent ``sync(key)``.

Controllers (replicaset, deployment, endpoints, ...) and the scheduler call :func:`run_workers`
after their informers have synced. Guarantees: ``workers`` named tasks; a key is synced by one
worker at a time (the queue's guarantee); a failing sync is logged with the key and retried with
per-key backoff up to ``max_retries`` times, then dropped; a successful sync resets the backoff;
returns when the queue shuts down; cancelling ``run_workers`` cancels and awaits its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from machinery.client.workqueue import RateLimitingQueue, ShutDown
from machinery.errors import ConflictError

__all__ = ["process_next", "run_workers"]

log = logging.getLogger(__name__)


async def process_next(queue: RateLimitingQueue, sync: Callable[[str], Awaitable[None]], *, name: str,
                       max_retries: int = 15) -> None:
    """Take one key, sync it, and handle the outcome (raises :class:`ShutDown` when the queue is shut down)."""
    key = await queue.get()
    try:
        await sync(key)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        retries = queue.num_requeues(key)
        if retries < max_retries:
            # A conflict is routine (our cache was behind): no traceback.
            if isinstance(exc, ConflictError):
                log.info("%s: conflict syncing %r, retrying: %s", name, key, exc)
            else:
                log.warning("%s: error syncing %r (retry %d/%d)", name, key, retries + 1, max_retries,
                            exc_info=True)
            queue.add_rate_limited(key)
        else:
            log.error("%s: dropping %r after %d retries: %s", name, key, retries, exc)
            queue.forget(key)
    else:
        queue.forget(key)
    finally:
        queue.done(key)


async def _worker(queue: RateLimitingQueue, sync: Callable[[str], Awaitable[None]], name: str,
                  max_retries: int) -> None:
    while True:
        try:
            await process_next(queue, sync, name=name, max_retries=max_retries)
        except ShutDown:
            return


async def run_workers(queue: RateLimitingQueue, sync: Callable[[str], Awaitable[None]], *, workers: int,
                      name: str, max_retries: int = 15) -> None:
    """Run ``workers`` worker tasks until the queue shuts down (or this coroutine is cancelled)."""
    tasks = [asyncio.create_task(_worker(queue, sync, name, max_retries), name=f"{name}-worker-{i}")
             for i in range(max(workers, 1))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
