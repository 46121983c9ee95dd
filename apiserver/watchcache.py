"""Watch cache: one storage watch per resource type, fanned out to every client watch.

For each resource the cache lists the store once, then follows one storage watch. It keeps
the current objects (served for ``resourceVersion=0`` lists and the synthetic ADDED events a
new watch starts with) and a ring of recent events (served to watches that resume from a
resourceVersion). Every event is decoded and serialised once; each client watch gets a
bounded queue, and a client too slow to drain it is closed (it will re-watch, as Kubernetes
clients do).

A watch from a resourceVersion older than the ring answers 410 Expired. On start the ring is
filled from the store's history (as far back as compaction allows), so watches that resume
after an apiserver restart miss nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from apiserver.codec import decode, decode_value
from apiserver.storage.interface import CompactedError, EventType, Storage
from machinery.errors import GoneError
from machinery.resources import ResourceInfo

log = logging.getLogger(__name__)

WATCHER_QUEUE_SIZE = 10_000


@dataclass(slots=True)
class CacheEvent:
    """One change, decoded and serialised once."""

    type: str  # ADDED | MODIFIED | DELETED
    object: dict[str, Any]
    prev_object: dict[str, Any] | None
    revision: int
    _line: bytes | None = None

    def json_line(self) -> bytes:
        """``{"type":…,"object":…}\\n``, computed on first use and shared by every watcher."""
        if self._line is None:
            self._line = orjson.dumps({"type": self.type, "object": self.object}) + b"\n"
        return self._line


Filter = Callable[[dict[str, Any]], bool]


@dataclass(eq=False)
class Watcher:
    """One client watch: its filter and queue. ``None`` in the queue means "closed"."""

    namespace: str | None
    matches: Filter
    after_revision: int
    queue: asyncio.Queue[CacheEvent | None] = field(default_factory=lambda: asyncio.Queue(WATCHER_QUEUE_SIZE))
    closed: bool = False

    def offer(self, event: CacheEvent) -> None:
        if self.closed or event.revision <= self.after_revision:
            return
        translated = self._translate(event)
        if translated is None:
            return
        try:
            self.queue.put_nowait(translated)
        except asyncio.QueueFull:
            log.warning("watcher too slow, closing it (at revision %d)", event.revision)
            self.close()

    def _translate(self, event: CacheEvent) -> CacheEvent | None:
        """Apply namespace/selector filters the way Kubernetes does: an object that stops
        matching is DELETED for this watcher, one that starts matching is ADDED."""
        obj = event.object
        if self.namespace is not None and (obj.get("metadata") or {}).get("namespace") != self.namespace:
            return None
        now = self.matches(obj)
        before = event.prev_object is not None and self.matches(event.prev_object)
        if event.type == "MODIFIED":
            if now and before:
                return event
            if now:
                return CacheEvent("ADDED", obj, None, event.revision)
            if before:
                return CacheEvent("DELETED", obj, None, event.revision)
            return None
        return event if now else None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # Make room for the sentinel: the watcher is going away anyway.
            while self.queue.full():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class WatchCache:
    """The cache of one resource type."""

    def __init__(self, resource: ResourceInfo, storage: Storage, *, capacity: int = 10_000) -> None:
        self.resource = resource
        self.storage = storage
        self.capacity = capacity
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: deque[CacheEvent] = deque()
        self.base_revision = 0  # the ring holds every event with revision > base_revision
        self.revision = 0  # the newest revision the cache has applied
        self.watchers: set[Watcher] = set()
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watchcache:{self.resource.group_resource}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in list(self.watchers):
            w.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watch cache %s failed; re-listing", self.resource.group_resource)
                await asyncio.sleep(0.5)

    async def _initial_state(self) -> int:
        """Load objects as of the oldest revision still in history; return that revision."""
        prefix = self.resource.storage_prefix()
        current = await self.storage.current_revision()
        compacted = await self.storage.compacted_revision()
        start = max(compacted, current - self.capacity, 0)
        if start == 0:
            # Nothing compacted yet: replay the whole history from an empty state.
            self.objects = {}
            return 0
        for revision in (start, 0):
            try:
                listed = await self.storage.list(prefix, revision=revision)
            except CompactedError:
                continue
            self.objects = {kv.key: decode(kv) for kv in listed.items}
            return listed.revision if revision == 0 else start
        raise RuntimeError("could not list the store")

    async def _follow(self) -> None:
        prefix = self.resource.storage_prefix()
        start = await self._initial_state()
        self.events.clear()
        self.base_revision = start
        self.revision = max(self.revision, start)
        # Ready at once: history between `start` and now replays through the ring in order,
        # and a watcher registered meanwhile receives it as it arrives.
        self.ready.set()
        async for ev in self.storage.watch(prefix, after_revision=start):
            if ev.type is EventType.DELETE:
                obj = decode_value(ev.value, ev.revision)
                prev = self.objects.pop(ev.key, None)
                event = CacheEvent("DELETED", obj, prev, ev.revision)
            else:
                obj = decode_value(ev.value, ev.revision)
                prev = self.objects.get(ev.key)
                self.objects[ev.key] = obj
                event = CacheEvent("ADDED" if prev is None else "MODIFIED", obj, prev, ev.revision)
            self._append(event)

    def _append(self, event: CacheEvent) -> None:
        self.events.append(event)
        if len(self.events) > self.capacity:
            dropped = self.events.popleft()
            self.base_revision = dropped.revision
        self.revision = event.revision
        for w in list(self.watchers):
            w.offer(event)
            if w.closed:
                self.watchers.discard(w)

    # ---- client API ----------------------------------------------------------------------
    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)

    def snapshot(self, namespace: str | None, matches: Filter) -> tuple[list[dict[str, Any]], int]:
        """Current objects (sorted by key) and the cache's revision."""
        items = []
        for key in sorted(self.objects):
            obj = self.objects[key]
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                continue
            if matches(obj):
                items.append(obj)
        return items, self.revision

    def watch(self, namespace: str | None, matches: Filter, *, after_revision: int | None
              ) -> tuple[Watcher, list[CacheEvent]]:
        """Register a watcher; returns it with the events to send first.

        ``after_revision=None`` starts with synthetic ADDED events for the current objects.
        A revision older than the ring raises GoneError (410 Expired).
        """
        if after_revision is None:
            items, revision = self.snapshot(namespace, matches)
            initial = [CacheEvent("ADDED", obj, None, int(obj["metadata"]["resourceVersion"])) for obj in items]
            watcher = Watcher(namespace, matches, revision)
        else:
            if after_revision < self.base_revision:
                raise GoneError(f"too old resource version: {after_revision} ({self.base_revision})")
            watcher = Watcher(namespace, matches, after_revision)
            initial = []
            for event in self.events:
                if event.revision > after_revision:
                    translated = watcher._translate(event)
                    if translated is not None:
                        initial.append(translated)
            watcher.after_revision = max(after_revision, self.revision)
        self.watchers.add(watcher)
        return watcher, initial

    def unwatch(self, watcher: Watcher) -> None:
        watcher.closed = True
        self.watchers.discard(watcher)


class WatchCaches:
    """All resources' caches, started together."""

    def __init__(self, resources: tuple[ResourceInfo, ...], storage: Storage, *, capacity: int) -> None:
        self.by_resource = {r.group_resource: WatchCache(r, storage, capacity=capacity) for r in resources}

    def get(self, resource: ResourceInfo) -> WatchCache:
        return self.by_resource[resource.group_resource]

    async def start(self) -> None:
        for cache in self.by_resource.values():
            await cache.start()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(c.wait_ready(timeout) for c in self.by_resource.values()))

    async def stop(self) -> None:
        for cache in self.by_resource.values():
            await cache.stop()
