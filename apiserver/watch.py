"""Serving one watch request as a stream of newline-delimited JSON events.

The stream starts with the events the watch cache hands back (synthetic ADDED for a watch
without a resourceVersion, or the replay after the given one), then follows live events.
``allowWatchBookmarks`` adds periodic BOOKMARKs; ``sendInitialEvents=true`` ends the initial
ADDED events with the ``k8s.io/initial-events-end`` bookmark; ``timeoutSeconds`` closes the
stream; a resourceVersion too old for the cache answers one ERROR event (410 Expired).
Table watches (kubectl get -w) get one-row Tables per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import orjson
from aiohttp import web

from apiserver import printing
from apiserver.context import ApiContext
from apiserver.listing import make_filter
from apiserver.requests import query_bool, query_int, wants_table
from apiserver.routing import RequestTarget
from apiserver.storage.interface import CompactedError, Storage
from apiserver.watchcache import CacheEvent, OlderThanCache, Watcher, event_from_storage
from apiserver.watchflush import StreamSink
from machinery.errors import ApiError, BadRequestError, GoneError

log = logging.getLogger(__name__)

BOOKMARK_INTERVAL_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 1800


async def _follow_store(storage: Storage, prefix: str, watcher: Watcher, after: int) -> None:
    """Feed ``watcher`` from a storage watch (history after ``after``, then live events)."""
    try:
        async for ev in storage.watch(prefix, after_revision=after):
            watcher.offer(event_from_storage(ev))
            if watcher.closed:
                return
    except CompactedError as exc:
        watcher.error = GoneError(f"too old resource version: {after} ({exc.compacted})")
        watcher.close()
    except Exception as exc:  # the stream must end visibly, never hang
        log.exception("watch from the store failed")
        watcher.error = ApiError(f"watch from the store failed: {exc}")
        watcher.close()


def _event_line(event_type: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": event_type, "object": obj}) + b"\n"


async def serve_watch(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.StreamResponse:
    r = target.resource
    matches = make_filter(r, request.query.get("labelSelector", ""), request.query.get("fieldSelector", ""))
    rv_param = request.query.get("resourceVersion", "")
    send_initial = request.query.get("sendInitialEvents")
    if send_initial is not None and send_initial not in ("true", "false"):
        raise BadRequestError(f'sendInitialEvents: Invalid value: "{send_initial}"')
    after: int | None
    if send_initial == "true" or rv_param in ("", "0"):
        after = None
    else:
        try:
            after = int(rv_param)
        except ValueError:
            raise BadRequestError(f'resourceVersion: Invalid value: "{rv_param}": must be a number') from None
    if send_initial == "false" and after is None:
        after = ctx.caches.revision
    timeout = query_int(request, "timeoutSeconds")
    if timeout is None or timeout <= 0:
        timeout = int(DEFAULT_TIMEOUT_SECONDS * (1 + random.random()))
    deadline = time.monotonic() + timeout
    bookmarks = query_bool(request, "allowWatchBookmarks")
    table = wants_table(request)
    include = printing.check_include_object(request.query.get("includeObject", ""))
    namespace = target.namespace if r.namespaced else None

    cache = ctx.caches.get(r)
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    from_store: asyncio.Task[None] | None = None
    try:
        watcher, initial = cache.watch(namespace, matches, after_revision=after)
        seen = watcher.after_revision  # every event up to here is sent or buffered
    except OlderThanCache:
        # Older than the cache's ring: follow the store's own history for this client.
        assert after is not None
        watcher, initial, seen = Watcher(namespace, matches, after), [], after
        prefix = r.storage_prefix(namespace if r.namespaced else None)
        from_store = asyncio.create_task(_follow_store(ctx.storage, prefix, watcher, after),
                                         name=f"watch-history:{r.group_resource}")

    columns_sent = False
    registry = ctx.registry(r)
    presenting = registry.presents  # custom resources read at another version, or with defaults

    def encode(event: CacheEvent) -> bytes:
        nonlocal columns_sent
        if not table and not presenting:
            return event.json_line()
        obj = registry.present(orjson.loads(event.raw)) if presenting else event.object
        if not table:
            return _event_line(event.type, obj)
        t = printing.to_table(r, [obj], resource_version=obj["metadata"]["resourceVersion"],
                              include_object=include)
        if columns_sent:
            t["columnDefinitions"] = []
        columns_sent = True
        return _event_line(event.type, t)

    def bookmark(extra_annotations: dict[str, str] | None = None) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(seen)}
        if extra_annotations:
            meta["annotations"] = extra_annotations
        return _event_line("BOOKMARK", {"kind": r.kind, "apiVersion": r.api_version, "metadata": meta})

    loop = asyncio.get_running_loop()
    state = {"bookmark_due": False, "expired": False}

    def expire() -> None:
        state["expired"] = True
        watcher.wakeup.set()

    def bookmark_due() -> None:
        state["bookmark_due"] = True
        watcher.wakeup.set()

    # Timers instead of a timeout per wait: the loop below only ever awaits the wake-up.
    timers = [loop.call_later(max(deadline - time.monotonic(), 0), expire)]
    if bookmarks:
        timers.append(loop.call_later(BOOKMARK_INTERVAL_SECONDS, bookmark_due))
    ctx.metrics.watches.labels("WATCH", r.plural).inc()
    sent = ctx.metrics.watch_events.labels(r.plural)
    sink: StreamSink | None = None
    try:
        await response.prepare(request)
        chunk = b"".join(encode(e) for e in initial)
        if send_initial == "true" and bookmarks:
            chunk += bookmark({"k8s.io/initial-events-end": "true"})
        await response.write(chunk)  # also sends the headers, which aiohttp holds back until a first write
        sent.inc(len(initial))
        if not table and not presenting and from_store is None and request.transport is not None:
            # Live events go out through the paced flusher (see apiserver/watchflush.py).
            sink = ctx.watch_flusher.sink(request.transport, sent.inc)
            watcher.direct = sink
        while not state["expired"] and not watcher.closed:
            await watcher.wakeup.wait()
            if sink is not None:
                sink.flush()  # what the sink holds is older than anything written below
            now_seen = cache.revision if from_store is None else seen
            events = watcher.take()
            if events:
                now_seen = max(now_seen, events[-1].revision)
                await response.write(b"".join(encode(e) for e in events))
                sent.inc(len(events))
            seen = max(seen, now_seen)
            if state["bookmark_due"] and not state["expired"]:
                state["bookmark_due"] = False
                await response.write(bookmark())
                timers.append(loop.call_later(BOOKMARK_INTERVAL_SECONDS, bookmark_due))
        watcher.direct = None  # nothing may follow the final chunk
        if sink is not None:
            sink.flush()
        if watcher.error is not None:
            await response.write(_event_line("ERROR", watcher.error.to_status()))
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; nothing to tell it
    finally:
        watcher.direct = None
        if sink is not None:
            sink.discard()
        for timer in timers:
            timer.cancel()
        if from_store is not None:
            from_store.cancel()
        cache.unwatch(watcher)
        ctx.metrics.watches.labels("WATCH", r.plural).dec()
    return response
