"""Watch cache: one storage watch for every resource, fanned out to every client watch.

``WatchCaches`` lists the whole registry once, then follows ONE storage watch on
``/registry/`` and routes each event to the cache of its resource. Because every write to the
store produces an event on that watch, the caches' revision is the store's revision once they
have caught up, which is what makes consistent lists from the cache possible
(:meth:`WatchCaches.wait_for_revision`).

Each ``WatchCache`` keeps the current objects as JSON bytes only (lists splice them, no
encoding; decoded Python objects would take four times the memory) and a ring of recent events
(served to watches that resume from a resourceVersion). An event is decoded at most once, and
only when a watcher filters by namespace or selector; it is serialised once for every watcher.
A client watch is a :class:`Watcher` with a buffer and a wake-up event; a client too slow to
drain its buffer is closed (it re-watches, as Kubernetes clients do).

A watch from a resourceVersion older than the ring (after a restart the ring starts empty) is
served from the store's own history instead, through a storage watch of its own; only history
the store has compacted away answers 410 Expired. So watches resumed after an apiserver restart
miss nothing.

Caches for custom resources are added and removed while the apiserver runs
(:meth:`WatchCaches.add`, :meth:`WatchCaches.remove`). Events reach their cache through a
:class:`KeyRouter`: keys follow Kubernetes' layout, where a resource's root under ``/registry/``
is one segment (``pods``, ``deployments``) or two (``services/specs``, ``services/endpoints``,
``<group>/<plural>`` for custom resources), and the router picks the longest root that matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from apiserver.codec import with_resource_version
from apiserver.storage.interface import EventType, Storage, StorageEvent
from machinery.errors import ApiError
from machinery.resources import ResourceInfo

log = logging.getLogger(__name__)

WATCHER_BUFFER_LIMIT = 10_000
REGISTRY_PREFIX = "/registry/"

Filter = Callable[[dict[str, Any]], bool]


def match_all(obj: dict[str, Any]) -> bool:
    """The filter of a request without selectors (compared by identity to skip filtering)."""
    return True


class CacheEvent:
    """One change as a client watch sees it: the object's JSON, decoded only if someone asks.

    Most watchers need neither the decoded object nor the previous one (no namespace filter,
    no selector); those that do share one decoding per event. The ``{"type":…,"object":…}``
    line is built once and shared by every watcher too.
    """

    __slots__ = ("_line", "_object", "_prev", "prev_raw", "raw", "revision", "type")

    def __init__(self, type: str, revision: int, raw: bytes, prev_raw: bytes | None = None, *,
                 obj: dict[str, Any] | None = None) -> None:
        self.type = type  # ADDED | MODIFIED | DELETED
        self.revision = revision
        self.raw = raw  # the object's JSON
        self.prev_raw = prev_raw  # the object before a MODIFIED/DELETED, as JSON
        self._object = obj
        self._prev: dict[str, Any] | None = None
        self._line: bytes | None = None

    @property
    def object(self) -> dict[str, Any]:
        if self._object is None:
            self._object = orjson.loads(self.raw)
        return self._object

    @property
    def prev_object(self) -> dict[str, Any] | None:
        if self._prev is None and self.prev_raw is not None:
            self._prev = orjson.loads(self.prev_raw)
        return self._prev

    def json_line(self) -> bytes:
        """``{"type":…,"object":…}\\n``, built on first use and shared by every watcher."""
        if self._line is None:
            self._line = b'{"type":"%s","object":%s}\n' % (self.type.encode(), self.raw)
        return self._line


@dataclass(slots=True)
class RingEntry:
    """A past event, kept as bytes (decoded again only when a watch replays it)."""

    type: str
    revision: int
    raw: bytes
    prev_raw: bytes | None

    def to_event(self) -> CacheEvent:
        return CacheEvent(self.type, self.revision, self.raw, self.prev_raw)


DirectSend = Callable[[CacheEvent], bool]
"""Writes one event to the client right away; False when it cannot (its socket is backed up)."""


@dataclass(eq=False)
class Watcher:
    """One client watch: filters, a buffer of events to send, and a wake-up event.

    A watch whose events need no per-client encoding sets ``direct`` (its
    :class:`~apiserver.watchflush.StreamSink`): while the buffer is empty, :meth:`offer` hands
    the event to it, and the paced flusher writes it with the client's other recent events,
    without waking the watch's task. When ``direct`` declines (the client reads slowly), events
    queue in the buffer and the watch's own task drains them.
    """

    namespace: str | None
    matches: Filter
    after_revision: int
    buffer: list[CacheEvent] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    error: ApiError | None = None  # sent as a final ERROR event when set
    direct: DirectSend | None = None

    def offer(self, event: CacheEvent) -> None:
        if self.closed or event.revision <= self.after_revision:
            return
        translated = self.translate(event)
        if translated is None:
            return
        if self.direct is not None and not self.buffer and self.direct(translated):
            return
        if len(self.buffer) >= WATCHER_BUFFER_LIMIT:
            log.warning("watcher too slow, closing it (at revision %d)", event.revision)
            self.close()
            return
        self.buffer.append(translated)
        self.wakeup.set()

    def translate(self, event: CacheEvent) -> CacheEvent | None:
        """Apply namespace/selector filters the way Kubernetes does: an object that stops
        matching is DELETED for this watcher, one that starts matching is ADDED."""
        if self.matches is match_all:
            if self.namespace is None or event.object["metadata"].get("namespace") == self.namespace:
                return event
            return None
        obj = event.object
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return None
        now = self.matches(obj)
        if event.type == "MODIFIED":
            prev = event.prev_object
            before = prev is not None and self.matches(prev)
            if now and before:
                return event
            if now:
                return CacheEvent("ADDED", event.revision, event.raw, obj=obj)
            if before:
                return CacheEvent("DELETED", event.revision, event.raw, obj=obj)
            return None
        return event if now else None

    def take(self) -> list[CacheEvent]:
        events, self.buffer = self.buffer, []
        self.wakeup.clear()
        return events

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()


class OlderThanCache(Exception):
    """A watch asked for history older than the cache's ring."""

    def __init__(self, requested: int, base: int) -> None:
        super().__init__(f"resource version {requested} is older than the watch cache ({base})")
        self.requested = requested
        self.base = base


def event_from_storage(ev: StorageEvent) -> CacheEvent:
    """A storage event as a client event (for watches served from the store's history)."""
    raw = with_resource_version(ev.value, ev.revision)
    if ev.type is EventType.DELETE:
        return CacheEvent("DELETED", ev.revision, raw, ev.prev_value)
    kind = "ADDED" if ev.created or ev.prev_value is None else "MODIFIED"
    return CacheEvent(kind, ev.revision, raw, ev.prev_value)


class WatchCache:
    """The cache of one resource type (fed by :class:`WatchCaches`)."""

    def __init__(self, resource: ResourceInfo, *, capacity: int = 10_000) -> None:
        self.resource = resource
        self.capacity = capacity
        self.raw: dict[str, bytes] = {}  # key -> the current object's JSON (decoded on demand)
        self.events: deque[RingEntry] = deque()
        self.base_revision = 0  # the ring holds every event of this resource with revision > base_revision
        self.revision = 0  # the newest revision applied (of any resource: caches move together)
        self.watchers: set[Watcher] = set()

    def reset(self, revision: int) -> None:
        """Forget everything (before a re-list); open watches are closed and will re-watch."""
        self.raw.clear()
        self.events.clear()
        self.base_revision = revision
        self.revision = revision
        for w in self.watchers:
            w.close()
        self.watchers.clear()

    def load(self, key: str, value: bytes, revision: int) -> None:
        self.raw[key] = with_resource_version(value, revision)

    def get(self, key: str) -> dict[str, Any] | None:
        """The current object at ``key``, decoded (a fresh copy the caller may change)."""
        raw = self.raw.get(key)
        return orjson.loads(raw) if raw is not None else None

    def decoded(self) -> Iterator[dict[str, Any]]:
        """Every current object, decoded one at a time."""
        for raw in list(self.raw.values()):
            yield orjson.loads(raw)

    def apply(self, ev: StorageEvent) -> None:
        raw = with_resource_version(ev.value, ev.revision)
        if ev.type is EventType.DELETE:
            prev_raw = self.raw.pop(ev.key, None)
            event = CacheEvent("DELETED", ev.revision, raw, prev_raw)
        else:
            prev_raw = self.raw.get(ev.key)
            self.raw[ev.key] = raw
            event = CacheEvent("ADDED" if prev_raw is None else "MODIFIED", ev.revision, raw, prev_raw)
        self.events.append(RingEntry(event.type, ev.revision, raw, prev_raw))
        if len(self.events) > self.capacity:
            self.base_revision = self.events.popleft().revision
        self.revision = ev.revision
        if self.watchers:
            for w in list(self.watchers):
                w.offer(event)
                if w.closed:
                    self.watchers.discard(w)

    # ---- client API ----------------------------------------------------------------------
    def snapshot(self, namespace: str | None, matches: Filter | None) -> tuple[list[str], int]:
        """Keys of the current objects that match (sorted), and the cache's revision."""
        keys = sorted(self.raw)
        if namespace is not None:
            prefix = self.resource.storage_prefix(namespace)
            keys = [k for k in keys if k.startswith(prefix)]
        if matches is not None and matches is not match_all:
            keys = [k for k in keys if matches(orjson.loads(self.raw[k]))]
        return keys, self.revision

    def watch(self, namespace: str | None, matches: Filter, *, after_revision: int | None
              ) -> tuple[Watcher, list[CacheEvent]]:
        """Register a watcher; returns it with the events to send first.

        ``after_revision=None`` starts with synthetic ADDED events for the current objects.
        A revision older than the ring raises :class:`OlderThanCache`: the caller then serves
        the watch from the store's own history (:func:`event_from_storage`).
        """
        if after_revision is None:
            keys, revision = self.snapshot(namespace, matches)
            initial = [CacheEvent("ADDED", revision, self.raw[k]) for k in keys]
            watcher = Watcher(namespace, matches, revision)
        else:
            if after_revision < self.base_revision:
                raise OlderThanCache(after_revision, self.base_revision)
            watcher = Watcher(namespace, matches, after_revision)
            initial = []
            for entry in self.events:
                if entry.revision > after_revision:
                    translated = watcher.translate(entry.to_event())
                    if translated is not None:
                        initial.append(translated)
            watcher.after_revision = max(after_revision, self.revision)
        self.watchers.add(watcher)
        return watcher, initial

    def unwatch(self, watcher: Watcher) -> None:
        watcher.closed = True
        self.watchers.discard(watcher)


class KeyRouter:
    """Finds the cache of a storage key by its resource's key root (:attr:`ResourceInfo.key_root`).

    A key is ``/registry/<root>/[<namespace>/]<name>`` with a root of one segment or two. Roots
    of two segments are grouped by their first segment (``services`` → ``specs``, ``endpoints``),
    and no one-segment root may be such a first segment (:meth:`add` refuses it), so the longest
    matching root is found with at most two dict lookups, and a namespace or name that happens to
    spell a second segment (a namespace called ``specs``) never misroutes.
    """

    def __init__(self) -> None:
        self.single: dict[str, WatchCache] = {}
        self.double: dict[str, dict[str, WatchCache]] = {}

    def add(self, root: str, cache: WatchCache) -> None:
        first, _, second = root.partition("/")
        if not first or "/" in second:
            raise ValueError(f"key root {root!r} must be one or two segments")
        routed = self.double.get(first, {}).get(second) if second else self.single.get(first)
        if routed is not None and routed is not cache:
            raise ValueError(f"key root {root!r} already holds {routed.resource.group_resource}")
        if second:
            if first in self.single:
                raise ValueError(f"key root {root!r} would be shadowed by the root {first!r}")
            self.double.setdefault(first, {})[second] = cache
        else:
            if first in self.double:
                raise ValueError(f"key root {root!r} is the first segment of {sorted(self.double[first])}")
            self.single[first] = cache

    def remove(self, root: str) -> None:
        first, _, second = root.partition("/")
        if not second:
            self.single.pop(first, None)
            return
        seconds = self.double.get(first)
        if seconds is not None:
            seconds.pop(second, None)
            if not seconds:
                del self.double[first]

    def route(self, key: str) -> WatchCache | None:
        """The cache for ``key``, or None for a key outside every root."""
        # ['', 'registry', first, second-or-rest, rest]
        parts = key.split("/", 4)
        if len(parts) < 4 or parts[1] != "registry":
            return None
        found = self.single.get(parts[2])
        if found is not None:
            return found
        seconds = self.double.get(parts[2])
        if seconds is None or len(parts) < 5:
            return None
        return seconds.get(parts[3])


class WatchCaches:
    """All resources' caches, fed by one storage watch."""

    def __init__(self, resources: tuple[ResourceInfo, ...], storage: Storage, *, capacity: int) -> None:
        self.storage = storage
        self.capacity = capacity
        self.by_resource = {r.group_resource: WatchCache(r, capacity=capacity) for r in resources}
        self.router = KeyRouter()
        for cache in self.by_resource.values():
            self.router.add(cache.resource.key_root, cache)
        self.revision = 0
        self.ready = asyncio.Event()
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def get(self, resource: ResourceInfo) -> WatchCache:
        return self.by_resource[resource.group_resource]

    def add(self, resource: ResourceInfo) -> WatchCache:
        """Start caching a resource registered at run time (idempotent).

        The cache starts empty at the current revision: a resource is added before any of its
        objects can be written (the apiserver restores established CustomResourceDefinitions
        before the first list, and removes a resource's objects before it forgets the resource).
        """
        cache = self.by_resource.get(resource.group_resource)
        if cache is None:
            cache = WatchCache(resource, capacity=self.capacity)
            cache.reset(self.revision)
            self.router.add(resource.key_root, cache)
            self.by_resource[resource.group_resource] = cache
        return cache

    def remove(self, resource: ResourceInfo) -> None:
        """Stop caching a resource; its open watches end (their clients re-watch and get 404s)."""
        cache = self.by_resource.pop(resource.group_resource, None)
        if cache is not None:
            self.router.remove(resource.key_root)
            cache.reset(cache.revision)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="watchcaches")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for cache in self.by_resource.values():
            cache.reset(cache.revision)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def wait_for_revision(self, revision: int, timeout: float) -> bool:
        """Wait until the caches have applied ``revision``; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.revision < revision:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._advanced.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watch cache failed; re-listing")
                await asyncio.sleep(0.5)
            else:
                # The store ended the watch (a closed store ends it at once): re-list, but never in
                # a loop that does not yield.
                log.info("storage watch ended; re-listing")
                await asyncio.sleep(0.1)

    async def _follow(self) -> None:
        listed = await self.storage.list(REGISTRY_PREFIX)
        start = listed.revision
        for cache in list(self.by_resource.values()):
            cache.reset(start)
        for kv in listed.items:
            target = self.router.route(kv.key)
            if target is not None:
                target.load(kv.key, kv.value, kv.mod_revision)
        self.revision = start
        self.ready.set()
        async for ev in self.storage.watch(REGISTRY_PREFIX, after_revision=start):
            target = self.router.route(ev.key)
            if target is not None:
                target.apply(ev)
            self.revision = ev.revision
            for cache in list(self.by_resource.values()):
                cache.revision = ev.revision
            self._advanced.set()
            self._advanced = asyncio.Event()
