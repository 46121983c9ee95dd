"""A Storage wrapper that records each operation's latency in the apiserver's metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from apiserver.metrics import ApiMetrics
from apiserver.storage.interface import KeyValue, ListResult, Storage, StorageEvent


class InstrumentedStorage:
    """Delegates to ``inner``; observes ``apiserver_storage_operation_duration_seconds``."""

    def __init__(self, inner: Storage, metrics: ApiMetrics) -> None:
        self.inner = inner
        h = metrics.storage_latency
        self._get = h.labels("get")
        self._list = h.labels("list")
        self._create = h.labels("create")
        self._update = h.labels("update")
        self._delete = h.labels("delete")

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def compacted_revision(self) -> int:
        return await self.inner.compacted_revision()

    async def get(self, key: str) -> KeyValue | None:
        t = time.perf_counter()
        try:
            return await self.inner.get(key)
        finally:
            self._get.observe(time.perf_counter() - t)

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = "") -> ListResult:
        t = time.perf_counter()
        try:
            return await self.inner.list(prefix, revision=revision, limit=limit, start_after=start_after)
        finally:
            self._list.observe(time.perf_counter() - t)

    async def count(self, prefix: str) -> int:
        return await self.inner.count(prefix)

    async def create(self, key: str, value: bytes) -> int:
        t = time.perf_counter()
        try:
            return await self.inner.create(key, value)
        finally:
            self._create.observe(time.perf_counter() - t)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        t = time.perf_counter()
        try:
            return await self.inner.update(key, value, expected_revision=expected_revision)
        finally:
            self._update.observe(time.perf_counter() - t)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        t = time.perf_counter()
        try:
            return await self.inner.delete(key, expected_revision=expected_revision)
        finally:
            self._delete.observe(time.perf_counter() - t)

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[StorageEvent]:
        return self.inner.watch(prefix, after_revision=after_revision)

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)
