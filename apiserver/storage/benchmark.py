"""Raw write throughput of a storage backend, below the apiserver (``bench/storage.py`` reports it).

:func:`measure_create_rate` drives any started :class:`~apiserver.storage.interface.Storage`
with plain creates, so the figure is the store's own (no admission, encoding or watch cache).
"""

from __future__ import annotations

import asyncio
import time

from apiserver.storage.interface import Storage


async def measure_create_rate(
    storage: Storage, *, count: int = 5000, concurrency: int = 1, prefix: str = "/bench/raw/"
) -> float:
    """Create ``count`` fresh keys (~300-byte values) with ``concurrency`` tasks; creates/s.

    Works on any started store; the keys stay (use a fresh store or prefix per run). E.g.::

        store = SqliteStorage(tmp / "bench.db"); await store.start()
        print(await measure_create_rate(store, count=20000, concurrency=16))
    """
    value = b'{"kind":"Pod","metadata":{"name":"x"}}'.ljust(300, b" ")
    run = f"{prefix}{time.monotonic_ns()}/"
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await storage.create(f"{run}{i:08d}", value)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return count / (time.perf_counter() - started)
