"""Paced, coalesced writes of watch events: the fan-out of one event to many clients, made cheap.

Each socket write of a watch event costs a TLS record and a system call, and the fan-out of one
event to 500 watchers is 500 of them. So live events do not go out one write per event: a
watch's :class:`StreamSink` collects the JSON lines of its client, and the apiserver's one
:class:`WatchFlusher` writes every collected batch as one HTTP chunk per client.

The flusher paces itself by what a flush costs: after a flush that took ``c`` seconds, the next
one waits ``c * (1 - duty) / duty`` (at most ``max_pause``), so writing events never takes more
than about ``duty`` of the event loop, and each client's write carries all the events of that
pause. With few watchers a flush costs microseconds and events go out on the next loop turn;
with 500 watchers and 100 events/s, each write carries a few events and the delay stays
below ``max_pause`` plus one flush.

A client that reads too slowly (its socket buffer above ``BACKED_UP_BYTES``) is declined by
its sink; its events then queue in the :class:`~apiserver.watchcache.Watcher` and the watch's
own task writes them, awaiting the drain. Whatever the watch's task writes itself (queued
events, bookmarks, the final ERROR) is preceded by :meth:`StreamSink.flush`, so a client sees
events in revision order.

::

    storage watch ─► WatchCache.apply ─► Watcher.offer ─► StreamSink (pending lines)
                                                   │               │ every paced flush
                                                   │ declined      ▼
                                                   └─► buffer ─► watch task ─► socket
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from apiserver.watchcache import CacheEvent

BACKED_UP_BYTES = 256 * 1024
"""Bytes a client may leave unread before its sink declines events."""


class StreamSink:
    """The live events of one watch response, written as HTTP chunks straight to its socket.

    Used once the response's headers are out: chunked framing is per chunk, so these writes and
    aiohttp's own (bookmarks, the last chunk) interleave safely as long as each side flushes first.
    """

    __slots__ = ("_buffered", "_count", "_flusher", "_transport", "_write", "pending")

    def __init__(self, flusher: WatchFlusher, transport: asyncio.BaseTransport, count: Callable[[int], None]) -> None:
        sink = cast(asyncio.WriteTransport, transport)  # uvloop's transports do not subclass asyncio's
        self._flusher = flusher
        self._transport = sink
        self._write = sink.write
        self._buffered = sink.get_write_buffer_size
        self._count = count
        self.pending: list[bytes] = []

    def __call__(self, event: CacheEvent) -> bool:
        """Take ``event`` for the next flush; False when the client is backed up (the caller queues it)."""
        if not self.pending:
            if self._transport.is_closing() or self._buffered() > BACKED_UP_BYTES:
                return False
            self._flusher.mark(self)
        self.pending.append(event.json_line())
        return True

    def flush(self, tally: dict[Callable[[int], None], int] | None = None) -> int:
        """Write what is pending as one chunk now; returns the number of events written.

        The events are counted through ``count`` at once, or added to ``tally`` (``count`` ->
        events) for the flusher to report once per flush.
        """
        lines, self.pending = self.pending, []
        if not lines or self._transport.is_closing():
            return 0
        data = b"".join(lines)
        self._write(b"%x\r\n%s\r\n" % (len(data), data))
        if tally is None:
            self._count(len(lines))
        else:
            tally[self._count] = tally.get(self._count, 0) + len(lines)
        return len(lines)

    def discard(self) -> None:
        """The watch ended: drop whatever is pending."""
        self.pending = []
        self._flusher.forget(self)


class WatchFlusher:
    """Writes every marked :class:`StreamSink`, paced so writing keeps to ``duty`` of the loop."""

    def __init__(self, *, duty: float = 0.25, max_pause: float = 0.05) -> None:
        self.duty = duty
        self.max_pause = max_pause
        self._dirty: dict[StreamSink, None] = {}  # an ordered set
        self._handle: asyncio.Handle | None = None
        self._next_at = 0.0
        self.flushes = 0
        self.writes = 0

    def sink(self, transport: asyncio.BaseTransport, count: Callable[[int], None]) -> StreamSink:
        """A sink for one watch response on ``transport``; ``count(n)`` is told of events written."""
        return StreamSink(self, transport, count)

    def mark(self, sink: StreamSink) -> None:
        """``sink`` has pending events: make sure a flush is scheduled."""
        self._dirty[sink] = None
        if self._handle is None:
            loop = asyncio.get_running_loop()
            delay = self._next_at - loop.time()
            self._handle = loop.call_later(delay, self._flush) if delay > 0 else loop.call_soon(self._flush)

    def forget(self, sink: StreamSink) -> None:
        self._dirty.pop(sink, None)

    def _flush(self) -> None:
        self._handle = None
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, {}
        tally: dict[Callable[[int], None], int] = {}
        for sink in dirty:
            if sink.flush(tally):
                self.writes += 1
        for count, events in tally.items():  # one metric update per resource, not per client
            count(events)
        self.flushes += 1
        cost = time.perf_counter() - started
        pause = min(self.max_pause, cost * (1 - self.duty) / self.duty)
        self._next_at = asyncio.get_running_loop().time() + pause
