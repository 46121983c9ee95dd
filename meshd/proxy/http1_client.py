"""The upstream half of the HTTP/1.1 codec: one connection to an upstream host, one request at a time.

Opened and pooled by :class:`~meshd.proxy.upstream.Http1Pool`; a try of the router
(:mod:`meshd.proxy.router`) sends through it. :meth:`ClientProtocol.send` writes a request head
(and its body, whole or pumped from a :class:`~meshd.proxy.body.Replay`) and returns a future of
the :class:`~meshd.proxy.message.Response`, resolved when the response head arrives (interim
``1xx`` responses skipped); the body streams on with backpressure. The connection goes back to its
pool (``on_idle``) once both messages are complete and the response allowed keep-alive; a
response to ``HEAD``, or one without keep-alive, closes it. After a ``101`` it is one end of a
byte tunnel (:meth:`ClientProtocol.joined`) with the downstream connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from meshd.proxy.body import Body, Replay
from meshd.proxy.http1_codec import HEADER_NAMES, Writer, content_length, header_name
from meshd.proxy.message import Response

if TYPE_CHECKING:
    from meshd.proxy.http1 import ServerProtocol

__all__ = ["ClientProtocol"]

log = logging.getLogger(__name__)


class ClientProtocol(Writer, asyncio.Protocol):
    """One upstream HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._future: asyncio.Future[Response] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: Body | None = None
        self._head_only = False
        self._keep_alive = False
        self._sending = False
        self._receiving: bool | None = False
        """None once a 101 made this connection a tunnel."""
        self._pumping: asyncio.Task[None] | None = None
        self._drained = None
        self._paused_writing = False
        self._tunnel = None
        self._downstream: ServerProtocol | None = None
        self._upgraded = b""
        self.on_idle: Callable[[ClientProtocol], None] | None = None
        """Called when the connection may carry another request (the pool's release)."""
        self.reused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writer_lost()
        future = self._future
        if future is not None and not future.done():
            future.set_exception(ConnectionResetError("upstream connection closed before the response"))
        body = self._body
        if body is not None and not body.done:
            if body.length is None and not any(k == "transfer-encoding" for k, _ in self._headers):
                body.end()  # a close-delimited body ends here
            else:
                body.fail(ConnectionResetError("upstream connection closed during the response"))
        if self._downstream is not None and self._downstream.transport is not None:
            self._downstream.transport.close()

    def eof_received(self) -> bool | None:
        if self._tunnel is not None:
            self._tunnel.close()
        return None

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.write(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded += data[exc.args[0]:]
        except httptools.HttpParserError as exc:
            self._fail(ConnectionResetError(f"malformed upstream response: {exc}"))

    def _fail(self, exc: Exception) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_exception(exc)
        if self._body is not None:
            self._body.fail(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, *, head: bool = False, source: Replay | None = None,
             chunked: bool = False) -> asyncio.Future[Response]:
        """Write ``data`` (a head, with the whole body when it is in ``data``), then ``source`` if any.

        The future is the response as soon as its head arrived.
        """
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._future = loop.create_future()
        self._head_only = head
        self._headers = []
        self._body = None
        self._receiving = True
        self.transport.write(data)
        if source is not None:
            self._sending = True
            self._pumping = loop.create_task(self._pump(source, chunked))
        return self._future

    async def _pump(self, source: Replay, chunked: bool) -> None:
        try:
            while chunk := await source.read():
                await self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                await self._write(b"0\r\n\r\n")
        except (ConnectionError, TimeoutError) as exc:
            # the downstream went away mid-body, or this connection did: the request cannot complete
            log.debug("request body not forwarded: %s", exc)
            self._fail(ConnectionResetError("request body incomplete"))
            return
        self._sending = False
        self._maybe_idle()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((HEADER_NAMES.get(name) or header_name(name), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._headers = []  # an interim response (100 Continue): the real one follows
            return
        body = Body(length=content_length(self._headers), reader=self.transport)
        body.cancel = self.close
        self._body = body
        self._keep_alive = parser.should_keep_alive()
        resp = Response(status, self._headers, body, self._keep_alive)
        if self._head_only:
            # A HEAD response has no body whatever its Content-Length says: complete it here and
            # do not reuse the connection (the parser would wait for the body).
            body.end()
            self._keep_alive = False
        elif status == 101:
            resp.tunnel = self
            body.end()
            self._keep_alive = False
            self._receiving = None
        future = self._future
        self._future = None
        if future is not None and not future.done():
            future.set_result(resp)
        elif not body.done:
            body.abort()
        if self._head_only:
            self.close()

    def on_body(self, body: bytes) -> None:
        if self._body is not None:
            self._body.feed(body)

    def on_message_complete(self) -> None:
        if self._body is None or self._receiving is None:
            return  # the end of an interim response, or of a 101 (the connection is a tunnel now)
        self._body.end()
        self._receiving = False
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self._sending or self._receiving or self.closed:
            return
        if self._keep_alive and self.on_idle is not None and not self._head_only:
            self.on_idle(self)
        elif not self._keep_alive or self._head_only:
            self.close()

    def joined(self, downstream: ServerProtocol) -> None:
        """Tunnel mode: from now on bytes from upstream go to ``downstream`` as they are."""
        assert downstream.transport is not None
        self._downstream = downstream
        self._tunnel = downstream.transport
        if self._upgraded:
            downstream.transport.write(self._upgraded)
            self._upgraded = b""
