"""Shared informers: a reflector (list -> watch -> re-list on 410) feeding a :class:`Store` and handlers.

Controllers, the scheduler and the kubelet read objects from ``informer.store`` and register
handlers that enqueue keys. One :class:`InformerFactory` per process shares an informer per
(resource, namespace) between all its controllers.

The reflector loop (client-go's ``tools/cache`` reflector, kopf's watching loop):

1. list with ``resourceVersion=""`` (a consistent read, paginated), replace the store and call
   ``on_add`` / ``on_update(old, new)`` / ``on_delete(last known state)`` for the differences;
2. watch from the list's resourceVersion with bookmarks (which only advance the resourceVersion);
3. when the server ends the stream, watch again from the last resourceVersion seen;
4. a watch that delivers nothing (not even a bookmark) for ``inactivity_timeout`` seconds is a
   dead connection (a suspended laptop, a peer that vanished without closing): it is dropped and
   the watch resumes from the last resourceVersion at once. The apiserver sends a BOOKMARK every
   30 s (kube-apiserver about every minute), so the default of 90 s never fires on a live watch;
5. a 410 Gone (the resourceVersion was compacted, ``Expired``) goes back to 1 at once; any other
   error is logged with the resource name and retried after an exponential backoff capped at 10 s.
   The reflector never gives up.

Handlers are plain callables run synchronously on the event loop; a raising handler is logged
and never stops the reflector. ``resync_seconds > 0`` calls ``on_update(obj, obj)`` for every
cached object periodically (client-go's resync: handlers enqueue, so every key is synced again).
The background tasks are named and guarded: they never die silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from machinery.client.rest import WatchEvent
from machinery.client.store import INDEX_NAMESPACE, INDEX_NODE, INDEX_OWNER_UID, IndexFunc, Store
from machinery.errors import GoneError
from machinery.meta import object_key
from machinery.resources import ResourceInfo

__all__ = ["INDEX_NAMESPACE", "INDEX_NODE", "INDEX_OWNER_UID", "InformerFactory", "ListWatcher",
           "SharedInformer", "Store"]

log = logging.getLogger(__name__)

_LIST_PAGE_SIZE = 500
_MAX_BACKOFF = 10.0
_INITIAL_BACKOFF = 0.2
INACTIVITY_TIMEOUT = 90.0
"""Seconds without any watch event (bookmarks included) before a watch is taken for dead."""
_RESCHEDULE_SLACK = 1.0


class ListWatcher(Protocol):
    """What a reflector needs from a client (:class:`~machinery.client.rest.ApiClient` is one)."""

    async def list(self, resource: ResourceInfo, *, namespace: str | None = None, label_selector: str = "",
                   field_selector: str = "", resource_version: str = "", limit: int = 0,
                   continue_token: str = "") -> dict[str, Any]: ...

    def watch(self, resource: ResourceInfo, *, namespace: str | None = None, resource_version: str = "",
              label_selector: str = "", field_selector: str = "", timeout_seconds: int | None = None,
              allow_bookmarks: bool = True) -> AsyncIterator[WatchEvent]: ...


@dataclass(frozen=True)
class _Handler:
    on_add: Callable[[dict[str, Any]], None] | None
    on_update: Callable[[dict[str, Any], dict[str, Any]], None] | None
    on_delete: Callable[[dict[str, Any]], None] | None


class SharedInformer:
    """list -> watch from resourceVersion -> re-list on 410 (a reflector), a Store with indexes, handlers."""

    def __init__(self, client: ListWatcher, resource: ResourceInfo, *, namespace: str | None = None,
                 label_selector: str = "", field_selector: str = "", resync_seconds: float = 0.0,
                 watch_timeout_seconds: int | None = None, inactivity_timeout: float = INACTIVITY_TIMEOUT) -> None:
        """``watch_timeout_seconds``: server-side timeout of each watch (default: random 5-10 min);
        ``inactivity_timeout``: seconds of silence after which a watch is reconnected."""
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_seconds = resync_seconds
        self.watch_timeout_seconds = watch_timeout_seconds
        self.inactivity_timeout = inactivity_timeout
        self.store = Store()
        self.resource_version = ""
        self.name = resource.group_resource + (f"@{namespace}" if namespace else "")
        self._handlers: list[_Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        # Counters for tests and metrics.
        self.lists = 0
        self.watches = 0
        self.inactive_watches = 0

    # -- configuration ----------------------------------------------------------------------------

    def add_handler(self, *, on_add: Callable[[dict[str, Any]], None] | None = None,
                    on_update: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
                    on_delete: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Register handlers; a handler added after the first list gets ``on_add`` for every cached object."""
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self._synced.is_set() and on_add is not None:
            for obj in self.store.list():
                self._call(on_add, obj)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self.store.add_indexer(name, fn)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reflector (idempotent) as a named, guarded background task."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.create_task(self._run(), name=f"informer:{self.name}")
        self._task.add_done_callback(self._guard)
        if self.resync_seconds > 0:
            self._resync_task = asyncio.create_task(self._resync(), name=f"informer-resync:{self.name}")
            self._resync_task.add_done_callback(self._guard)

    def _guard(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("informer %s: task %s died", self.name, task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        for task in (self._task, self._resync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._resync_task = None

    async def wait_synced(self, timeout: float | None = 30.0) -> None:
        """Wait for the first list to be in the store (raises TimeoutError; ``None``: no limit)."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    # -- handlers ---------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: dict[str, Any]) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("informer %s: handler %r failed on %s", self.name, fn, object_key(args[-1]))

    def _added(self, obj: dict[str, Any]) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _deleted(self, obj: dict[str, Any]) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    # -- the reflector ----------------------------------------------------------------------------

    async def _list(self) -> None:
        """A consistent, paginated list; replaces the store and notifies the differences."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = await self.client.list(self.resource, namespace=self.namespace,
                                          label_selector=self.label_selector, field_selector=self.field_selector,
                                          limit=_LIST_PAGE_SIZE, continue_token=token)
            for item in page.get("items") or []:
                # List items carry no kind/apiVersion on the wire; handlers expect whole objects.
                item.setdefault("kind", self.resource.kind)
                item.setdefault("apiVersion", self.resource.api_version)
                items.append(item)
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                break
        self.lists += 1
        added, updated, deleted = self.store.replace(items)
        self.resource_version = str(meta.get("resourceVersion") or "")
        self._synced.set()
        for obj in added:
            self._added(obj)
        for old, new in updated:
            self._updated(old, new)
        for obj in deleted:
            self._deleted(obj)

    async def _watch(self) -> bool:
        """One watch from ``self.resource_version`` until the server ends it (True) or it stays
        silent for ``inactivity_timeout`` seconds (False)."""
        timeout = self.watch_timeout_seconds or int(300 * (1 + random.random()))
        self.watches += 1
        stream = self.client.watch(self.resource, namespace=self.namespace, resource_version=self.resource_version,
                                   label_selector=self.label_selector, field_selector=self.field_selector,
                                   timeout_seconds=timeout, allow_bookmarks=True)
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + self.inactivity_timeout
            slack = min(_RESCHEDULE_SLACK, self.inactivity_timeout / 10)
            async with asyncio.timeout_at(deadline) as silence:
                async for event in stream:
                    self._apply(event)
                    now = loop.time()
                    if now + self.inactivity_timeout - deadline > slack:  # not a new timer per event
                        deadline = now + self.inactivity_timeout
                        silence.reschedule(deadline)
            return True
        except TimeoutError:
            if not silence.expired():
                raise
            return False
        finally:
            # Close the HTTP stream now, not whenever the generator is collected.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _apply(self, event: WatchEvent) -> None:
        obj = event.object
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if event.type in ("ADDED", "MODIFIED"):
            old = self.store.upsert(obj)
            if old is None:
                self._added(obj)
            else:
                self._updated(old, obj)
        elif event.type == "DELETED":
            self.store.delete(object_key(obj))
            self._deleted(obj)
        elif event.type != "BOOKMARK":
            log.warning("informer %s: ignoring watch event of type %r", self.name, event.type)
            return
        if rv:
            self.resource_version = rv

    async def _run(self) -> None:
        backoff = _INITIAL_BACKOFF
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                if not await self._watch():
                    self.inactive_watches += 1
                    log.warning("informer %s: watch silent for %.0fs, reconnecting from resourceVersion %s",
                                self.name, self.inactivity_timeout, self.resource_version)
                backoff = _INITIAL_BACKOFF  # a stream the server closed is a healthy watch
            except asyncio.CancelledError:
                raise
            except GoneError as exc:
                log.info("informer %s: resourceVersion %s is gone (%s), re-listing", self.name,
                         self.resource_version, exc)
                need_list = True
            except Exception as exc:
                log.warning("informer %s: %s failed: %s; retrying in %.1fs", self.name,
                            "list" if need_list else "watch", exc, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, _MAX_BACKOFF)
                if not self.resource_version:
                    need_list = True

    async def _resync(self) -> None:
        await self._synced.wait()
        while True:
            await asyncio.sleep(self.resync_seconds)
            for obj in self.store.list():
                self._updated(obj, obj)


async def wait_for_cache_sync(*informers: SharedInformer) -> None:
    """Wait, without a time limit, until every informer has its first list (client-go's
    ``WaitForCacheSync``): controllers start before their factory and sync before they act."""
    await asyncio.gather(*(informer.wait_synced(timeout=None) for informer in informers))


class InformerFactory:
    """One SharedInformer per (resource, namespace) shared by every controller of a process."""

    def __init__(self, client: ListWatcher, *, resync_seconds: float = 0.0,
                 inactivity_timeout: float = INACTIVITY_TIMEOUT) -> None:
        self.client = client
        self.resync_seconds = resync_seconds
        self.inactivity_timeout = inactivity_timeout
        self._informers: dict[tuple[ResourceInfo, str | None], SharedInformer] = {}

    def informer(self, resource: ResourceInfo, *, namespace: str | None = None) -> SharedInformer:
        key = (resource, namespace)
        found = self._informers.get(key)
        if found is None:
            found = SharedInformer(self.client, resource, namespace=namespace, resync_seconds=self.resync_seconds,
                                   inactivity_timeout=self.inactivity_timeout)
            self._informers[key] = found
        return found

    async def start(self) -> None:
        """Start every informer created so far (idempotent; call again after adding)."""
        for informer in self._informers.values():
            await informer.start()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(asyncio.gather(*(i.wait_synced(timeout) for i in self._informers.values())),
                               timeout)

    async def stop(self) -> None:
        for informer in self._informers.values():
            await informer.stop()
