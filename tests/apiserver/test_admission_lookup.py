"""AdmissionLookup: admission reads a namespace's quotas/limit ranges from the watch cache; a namespace
the cache has none for costs one store list per TTL, not one per request."""

from __future__ import annotations

import orjson

from apiserver.admission_lookup import AdmissionLookup
from apiserver.storage.interface import ListResult
from apiserver.storage.memory import MemoryStorage
from apiserver.watchcache import WatchCache
from machinery.resources import RESOURCEQUOTAS


class CountingStorage(MemoryStorage):
    lists = 0

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = "") -> ListResult:
        self.lists += 1
        return await super().list(prefix, revision=revision, limit=limit, start_after=start_after)


def quota(name: str, namespace: str = "team") -> bytes:
    return orjson.dumps({"metadata": {"name": name, "namespace": namespace}, "spec": {"hard": {"pods": "2"}}})


async def test_cached_objects_come_with_their_resource_version_as_revision() -> None:
    storage, cache = CountingStorage(), WatchCache(RESOURCEQUOTAS)
    cache.load(RESOURCEQUOTAS.storage_key("team", "q"), quota("q"), 7)
    cache.load(RESOURCEQUOTAS.storage_key("other", "q"), quota("q", "other"), 8)
    [kv] = await AdmissionLookup(storage, cache).current("team")
    assert (kv.key, kv.mod_revision, orjson.loads(kv.value)["metadata"]["name"]) == \
        (RESOURCEQUOTAS.storage_key("team", "q"), 7, "q")
    assert storage.lists == 0


async def test_a_namespace_without_objects_in_the_cache_is_read_from_the_store_once_per_ttl() -> None:
    storage, cache = CountingStorage(), WatchCache(RESOURCEQUOTAS)
    await storage.start()
    now = [100.0]
    lookup = AdmissionLookup(storage, cache, ttl=30.0, clock=lambda: now[0])
    # The store has a quota the cache has not seen yet (a write moments ago).
    await storage.create(RESOURCEQUOTAS.storage_key("team", "q"), quota("q"))
    assert [o["metadata"]["name"] for o in await lookup.objects("team")] == ["q"]
    for _ in range(5):
        assert len(await lookup.current("team")) == 1
    assert storage.lists == 1
    now[0] += 31.0
    await lookup.current("team")
    assert storage.lists == 2
    assert [kv.key for kv in await lookup.live("team")] == [RESOURCEQUOTAS.storage_key("team", "q")]
    assert storage.lists == 3
