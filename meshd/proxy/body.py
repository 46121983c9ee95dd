"""Message bodies in flight: a bounded chunk buffer between the side that receives and the side that sends.

A :class:`Body` is fed by a protocol's receive callbacks (``data_received`` of HTTP/1.1, ``DATA``
frames of HTTP/2) and read by the task that writes to the other side. Nothing here buffers a
whole message: backpressure is the producer's own --

* HTTP/1.1: the ``reader`` transport's ``pause_reading`` above :data:`HIGH_WATER` buffered bytes,
  ``resume_reading`` once the consumer has taken them;
* HTTP/2: ``consumed(n)`` acknowledges DATA only when the reader takes it, so the peer's stream
  window (64 KiB by default) bounds what is buffered.

:class:`Replay` is the request side's retry buffer (Envoy's ``per_request_buffer_limit_bytes``):
it keeps what was sent upstream while that stays within ``limit`` bytes, so a retry can send the
body again; past the limit the copy is dropped and :attr:`Replay.retriable` turns false (Envoy
stops retrying such a request in the same way).

A body carries what the whole message knows at its end: ``trailers`` (gRPC status) and
``error`` (the producer's reset or a timeout, raised to the reader).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

__all__ = ["HIGH_WATER", "RETRY_BUFFER", "Body", "Replay", "StreamAbandoned"]

HIGH_WATER = 256 * 1024
RETRY_BUFFER = 64 * 1024
"""Bytes of a request body kept for retries (past it the request is not retried)."""


class Reader(Protocol):
    """What a body can pause: a transport's reading."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class StreamAbandoned(ConnectionResetError):
    """The reader of a body gave up on it (its downstream went away, or a retry replaced it)."""


class Body:
    """Chunks of one message body, fed by a producer and read by one consumer."""

    __slots__ = ("_buffered", "_chunks", "_paused", "_waiter", "cancel", "consumed", "done", "error", "length",
                 "on_end", "reader", "received", "trailers")

    def __init__(self, *, length: int | None = None, reader: Reader | None = None,
                 consumed: Callable[[int], None] | None = None) -> None:
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.length = length
        """The declared length (``Content-Length``), ``None`` when unknown (chunked, HTTP/2)."""
        self.reader = reader
        self.consumed = consumed
        self.cancel: Callable[[], None] | None = None
        """Set by the producer: stop producing (reset the stream or close the connection it comes from)."""
        self.on_end: Callable[[], None] | None = None
        """Called once when the last chunk has arrived."""
        self.received = 0
        self.done = False
        self.error: BaseException | None = None
        self.trailers: list[tuple[str, str]] = []

    @classmethod
    def of(cls, data: bytes) -> Body:
        """A complete body holding ``data``."""
        body = cls(length=len(data))
        if data:
            body._chunks.append(data)
            body._buffered = body.received = len(data)
        body.done = True
        return body

    # --- producer --------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        self._chunks.append(data)
        n = len(data)
        self._buffered += n
        self.received += n
        self._wake()
        if self._buffered > HIGH_WATER and self.reader is not None and not self._paused:
            self._paused = True
            self.reader.pause_reading()

    def end(self, trailers: list[tuple[str, str]] | None = None) -> None:
        if self.done:
            return
        if trailers:
            self.trailers = trailers
        self.done = True
        self._wake()
        if self.on_end is not None:
            self.on_end()

    def fail(self, exc: BaseException) -> None:
        """The body will not complete: the reader gets ``exc`` after what was already buffered."""
        if self.done:
            return
        self.error = exc
        self.done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- consumer --------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return self._buffered

    @property
    def complete(self) -> bool:
        """Everything arrived without error (what is left to read is buffered)."""
        return self.done and self.error is None

    def take(self) -> bytes:
        """What is buffered now, without waiting (``b""`` when nothing is)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self.consumed is not None:
            self.consumed(len(data))
        if self._paused and self.reader is not None:
            self._paused = False
            self.reader.resume_reading()
        return data

    async def read(self) -> bytes:
        """The next bytes; ``b""`` at the end; raises the producer's error once the buffer is empty."""
        while True:
            if self._chunks:
                return self.take()
            if self.done:
                if self.error is not None:
                    raise self.error
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read_all(self) -> bytes:
        """The whole rest of the body (for the proxy's own small messages only)."""
        parts = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    def abort(self) -> None:
        """The consumer gives up: the producer is told to stop."""
        if not self.done:
            self.fail(StreamAbandoned("body abandoned"))
        if self.cancel is not None:
            cancel, self.cancel = self.cancel, None
            cancel()


class Replay:
    """A request body that can be sent more than once while it fits the retry buffer."""

    __slots__ = ("_kept", "_kept_size", "_pos", "body", "limit", "retriable")

    def __init__(self, body: Body, limit: int = RETRY_BUFFER) -> None:
        self.body = body
        self.limit = limit
        self._kept: list[bytes] = []
        self._kept_size = 0
        self._pos = 0
        self.retriable = True

    def restart(self) -> None:
        """The next attempt: read from the start again (only when :attr:`retriable`)."""
        self._pos = 0

    def whole(self) -> bytes | None:
        """The entire body at once, when all of it has arrived and this attempt starts from its beginning.

        The fast path of small requests: one write with the head, no task. A complete body larger
        than the buffer is still sent whole on a first attempt, and is then no longer retriable.
        """
        body = self.body
        if self._pos or not body.done or body.error is not None or not self.retriable:
            return None
        if body._buffered + self._kept_size > self.limit:
            if self._kept:
                return None
            self.retriable = False
            return body.take()
        rest = body.take()
        if rest:
            self._keep(rest)
        self._pos = len(self._kept)
        return self._kept[0] if len(self._kept) == 1 else b"".join(self._kept)

    def _keep(self, data: bytes) -> None:
        if not self.retriable:
            return
        self._kept_size += len(data)
        if self._kept_size > self.limit:
            self.retriable = False
            self._kept.clear()
            self._pos = 0
            return
        self._kept.append(data)

    async def read(self) -> bytes:
        if self._pos < len(self._kept):
            chunk = self._kept[self._pos]
            self._pos += 1
            return chunk
        data = await self.body.read()
        if data and self.retriable:
            self._keep(data)
            self._pos = len(self._kept)
        return data
