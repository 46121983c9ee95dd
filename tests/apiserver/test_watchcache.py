"""The watch cache over the memory store: replay windows, 410 Expired, selector transitions."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from apiserver.storage.memory import MemoryStorage
from apiserver.watchcache import WatchCache
from machinery.errors import GoneError
from machinery.resources import lookup


def _cm(name: str, labels: dict[str, str] | None = None) -> bytes:
    return orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": name, "namespace": "ns", "labels": labels or {}}})


async def _cache(storage: MemoryStorage, capacity: int) -> WatchCache:
    resource = lookup("", "v1", "configmaps")
    assert resource is not None
    cache = WatchCache(resource, storage, capacity=capacity)
    await cache.start()
    await cache.wait_ready()
    return cache


async def _settle(cache: WatchCache, revision: int) -> None:
    async with asyncio.timeout(5):
        while cache.revision < revision:
            await asyncio.sleep(0.01)


async def test_resume_older_than_window_is_gone() -> None:
    storage = MemoryStorage()
    await storage.start()
    cache = await _cache(storage, capacity=3)
    revisions = [await storage.create(f"/registry/configmaps/ns/c{i}", _cm(f"c{i}")) for i in range(6)]
    await _settle(cache, revisions[-1])
    with pytest.raises(GoneError, match="too old resource version"):
        cache.watch(None, lambda o: True, after_revision=revisions[0])
    watcher, replay = cache.watch(None, lambda o: True, after_revision=revisions[3])
    assert [e.object["metadata"]["name"] for e in replay] == ["c4", "c5"]
    cache.unwatch(watcher)
    await cache.stop()
    await storage.close()


async def test_restart_refills_history_from_the_store() -> None:
    storage = MemoryStorage()
    await storage.start()
    first = await storage.create("/registry/configmaps/ns/a", _cm("a"))
    await storage.create("/registry/configmaps/ns/b", _cm("b"))
    last = await storage.delete("/registry/configmaps/ns/a")
    cache = await _cache(storage, capacity=100)
    await _settle(cache, last.mod_revision)
    _, replay = cache.watch(None, lambda o: True, after_revision=first)
    assert [(e.type, e.object["metadata"]["name"]) for e in replay] == [("ADDED", "b"), ("DELETED", "a")]
    await cache.stop()
    await storage.close()


async def test_selector_transitions_become_added_and_deleted() -> None:
    storage = MemoryStorage()
    await storage.start()
    cache = await _cache(storage, capacity=100)
    key = "/registry/configmaps/ns/s"
    rev = await storage.create(key, _cm("s", {"team": "a"}))
    await _settle(cache, rev)
    watcher, initial = cache.watch("ns", lambda o: o["metadata"]["labels"].get("team") == "b", after_revision=None)
    assert initial == []
    rev = await storage.update(key, _cm("s", {"team": "b"}), expected_revision=rev)
    rev = await storage.update(key, _cm("s", {"team": "c"}), expected_revision=rev)
    await _settle(cache, rev)
    got = [watcher.queue.get_nowait() for _ in range(2)]
    assert [e.type for e in got if e is not None] == ["ADDED", "DELETED"]
    await cache.stop()
    await storage.close()
