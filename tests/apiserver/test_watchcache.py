"""The watch caches over the memory store: replay windows, 410 Expired, restart refill,
selector transitions and consistent-read waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from apiserver.storage.memory import MemoryStorage
from apiserver.watchcache import OlderThanCache, WatchCache, WatchCaches, event_from_storage, match_all
from machinery.resources import RESOURCES, lookup

CONFIGMAPS = lookup("", "v1", "configmaps")
assert CONFIGMAPS is not None


def _cm(name: str, labels: dict[str, str] | None = None) -> bytes:
    return orjson.dumps({"metadata": {"name": name, "namespace": "ns", "labels": labels or {}},
                         "apiVersion": "v1", "kind": "ConfigMap"})


@pytest.fixture
async def storage() -> AsyncIterator[MemoryStorage]:
    store = MemoryStorage()
    await store.start()
    yield store
    await store.close()


async def _caches(storage: MemoryStorage, capacity: int = 100) -> WatchCaches:
    caches = WatchCaches(RESOURCES, storage, capacity=capacity)
    await caches.start()
    await caches.wait_ready()
    return caches


def _configmaps(caches: WatchCaches) -> WatchCache:
    assert CONFIGMAPS is not None
    return caches.get(CONFIGMAPS)


async def test_resume_older_than_ring_is_left_to_the_store(storage: MemoryStorage) -> None:
    caches = await _caches(storage, capacity=3)
    revisions = [await storage.create(f"/registry/configmaps/ns/c{i}", _cm(f"c{i}")) for i in range(6)]
    assert await caches.wait_for_revision(revisions[-1], timeout=5)
    cache = _configmaps(caches)
    with pytest.raises(OlderThanCache):
        cache.watch(None, lambda o: True, after_revision=revisions[0])
    watcher, replay = cache.watch(None, lambda o: True, after_revision=revisions[3])
    assert [e.object["metadata"]["name"] for e in replay] == ["c4", "c5"]
    cache.unwatch(watcher)
    await caches.stop()


async def test_after_restart_history_comes_from_the_store(storage: MemoryStorage) -> None:
    first = await storage.create("/registry/configmaps/ns/a", _cm("a"))
    await storage.create("/registry/pods/ns/p", b'{"metadata":{"name":"p","namespace":"ns"}}')
    await storage.create("/registry/configmaps/ns/b", _cm("b"))
    last = await storage.delete("/registry/configmaps/ns/a")
    caches = await _caches(storage)
    assert await caches.wait_for_revision(last.mod_revision, timeout=5)
    with pytest.raises(OlderThanCache):
        _configmaps(caches).watch(None, lambda o: True, after_revision=first)
    replay = []
    async for ev in storage.watch("/registry/configmaps/", after_revision=first):
        replay.append(event_from_storage(ev))
        if ev.revision == last.mod_revision:
            break
    assert [(e.type, e.object["metadata"]["name"]) for e in replay] == [("ADDED", "b"), ("DELETED", "a")]
    await caches.stop()


async def test_selector_transitions_become_added_and_deleted(storage: MemoryStorage) -> None:
    caches = await _caches(storage)
    cache = _configmaps(caches)
    key = "/registry/configmaps/ns/s"
    rev = await storage.create(key, _cm("s", {"team": "a"}))
    assert await caches.wait_for_revision(rev, timeout=5)
    watcher, initial = cache.watch("ns", lambda o: o["metadata"]["labels"].get("team") == "b", after_revision=None)
    assert initial == []
    rev = await storage.update(key, _cm("s", {"team": "b"}), expected_revision=rev)
    rev = await storage.update(key, _cm("s", {"team": "c"}), expected_revision=rev)
    assert await caches.wait_for_revision(rev, timeout=5)
    assert [e.type for e in watcher.take()] == ["ADDED", "DELETED"]
    await caches.stop()


async def test_cache_revision_follows_every_resource(storage: MemoryStorage) -> None:
    caches = await _caches(storage)
    rev = await storage.create("/registry/pods/ns/p", b'{"metadata":{"name":"p","namespace":"ns"}}')
    assert await caches.wait_for_revision(rev, timeout=5)
    keys, revision = _configmaps(caches).snapshot(None, None)
    assert keys == [] and revision == rev
    assert not await caches.wait_for_revision(rev + 1, timeout=0.1)
    await caches.stop()


async def test_objects_carry_their_resource_version_in_json(storage: MemoryStorage) -> None:
    caches = await _caches(storage)
    rev = await storage.create("/registry/configmaps/ns/j", _cm("j"))
    assert await caches.wait_for_revision(rev, timeout=5)
    cache = _configmaps(caches)
    assert orjson.loads(cache.raw["/registry/configmaps/ns/j"])["metadata"]["resourceVersion"] == str(rev)
    current = cache.get("/registry/configmaps/ns/j")
    assert current is not None
    assert current["metadata"]["resourceVersion"] == str(rev)
    await caches.stop()


async def test_the_cache_hands_out_copies_and_decodes_only_for_filtering_watchers(storage: MemoryStorage) -> None:
    """Objects live in the cache as JSON: a caller's changes never reach it, and a watcher without
    namespace or selector gets its events without any decoding."""
    caches = await _caches(storage)
    try:
        cache = _configmaps(caches)
        everyone, _ = cache.watch(None, match_all, after_revision=None)
        team_a, _ = cache.watch(None, lambda o: o["metadata"]["labels"].get("team") == "a", after_revision=None)
        rev = await storage.create("/registry/configmaps/ns/d", _cm("d", {"team": "b"}))
        assert await caches.wait_for_revision(rev, timeout=5)
        [event] = everyone.take()
        assert team_a.take() == []
        copy = cache.get("/registry/configmaps/ns/d")
        assert copy is not None
        copy["metadata"]["labels"]["team"] = "changed"
        again = cache.get("/registry/configmaps/ns/d")
        assert again is not None and again["metadata"]["labels"] == {"team": "b"}
        cache.unwatch(team_a)
        cache.unwatch(everyone)
        plain, _ = cache.watch(None, match_all, after_revision=rev)
        rev2 = await storage.update("/registry/configmaps/ns/d", _cm("d", {"team": "c"}), expected_revision=rev)
        assert await caches.wait_for_revision(rev2, timeout=5)
        [modified] = plain.take()
        assert modified.type == "MODIFIED"
        assert modified._object is None and modified._prev is None, "nobody needed the decoded object"
        assert event.object["metadata"]["name"] == "d"
    finally:
        await caches.stop()


async def test_caches_outliving_their_store_do_not_spin(storage: MemoryStorage) -> None:
    """A closed store ends the watch at once; the caches must keep yielding (and stay cancellable)."""
    caches = await _caches(storage)
    await storage.close()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.3)
    ticker.cancel()
    await asyncio.wait_for(caches.stop(), timeout=2)
    assert ticks >= 5, "the event loop was starved"
