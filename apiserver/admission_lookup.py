"""How built-in admission reads the policy objects of a namespace (ResourceQuotas, LimitRanges).

Kubernetes' quota and limit-range plugins read a lister (the informer's cache) and, when it holds
nothing for the namespace, look the objects up in the store and keep that answer for 30 s (the
cache may lag a write by moments; a namespace without such objects -- nearly all of them -- then
costs one store list per 30 s, not one per request). :class:`AdmissionLookup` does the same over
the apiserver's watch cache. Objects from the cache come with their ``resourceVersion`` as the
revision, so a compare-and-swap on them (the quota's ``status.used``) fails cleanly when they were
stale, and :meth:`AdmissionLookup.live` reads the store for the retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from apiserver.storage.interface import KeyValue, Storage
from apiserver.watchcache import WatchCache

LIVE_TTL = 30.0
"""Seconds a store answer for a namespace the cache had nothing for is kept (Kubernetes' liveTTL)."""


class AdmissionLookup:
    """The objects of one namespaced kind in a namespace: cache first, then a remembered store list."""

    def __init__(self, storage: Storage, cache: WatchCache, *, ttl: float = LIVE_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self.cache = cache
        self.ttl = ttl
        self.clock = clock
        self._live: dict[str, tuple[float, list[KeyValue]]] = {}

    async def current(self, namespace: str) -> list[KeyValue]:
        """The namespace's objects as this apiserver knows them now (possibly moments old)."""
        keys, _ = self.cache.snapshot(namespace, None)
        cached = [kv for kv in (self._from_cache(key) for key in keys) if kv is not None]
        if cached:
            return cached
        now = self.clock()
        remembered = self._live.get(namespace)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        if len(self._live) > 1000:
            self._live = {ns: entry for ns, entry in self._live.items() if entry[0] > now}
        items = await self.live(namespace)
        self._live[namespace] = (now + self.ttl, items)
        return items

    async def live(self, namespace: str) -> list[KeyValue]:
        """The namespace's objects read from the store (after a conflict on a cached one)."""
        page = await self.storage.list(self.cache.resource.storage_prefix(namespace))
        return list(page.items)

    async def objects(self, namespace: str) -> list[dict[str, Any]]:
        """:meth:`current`, decoded."""
        return [orjson.loads(kv.value) for kv in await self.current(namespace)]

    def _from_cache(self, key: str) -> KeyValue | None:
        raw = self.cache.raw.get(key)
        if raw is None:
            return None
        meta = orjson.loads(raw).get("metadata") or {}
        revision = int(meta.get("resourceVersion") or 0)
        return KeyValue(key=key, value=raw, create_revision=0, mod_revision=revision)
