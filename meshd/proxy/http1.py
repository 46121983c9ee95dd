"""HTTP/1.1 with httptools: the downstream connection, and the names of the whole HTTP/1.1 stack in one place.

:class:`ServerProtocol` (an ``asyncio.Protocol``, one per accepted connection) parses requests
with ``httptools.HttpRequestParser`` callbacks and hands each :class:`~meshd.proxy.message.Request`
to the handler (:mod:`meshd.proxy.httpproxy`) as soon as its head is parsed; the body follows
through :class:`~meshd.proxy.body.Body`. Requests on one connection are answered in order
(pipelining works, answered serially). Keep-alive follows HTTP/1.1 (``Connection: close`` or an
HTTP/1.0 request without ``keep-alive`` closes after the response).

Bodies stream both ways with backpressure (reading pauses while the other side's writes are
blocked): a response whose body is complete when its head is written leaves in one write with
``Content-Length``; otherwise the upstream's ``Content-Length`` is kept, or the body is sent
chunked (close-delimited to an HTTP/1.0 client). Hop-by-hop headers are dropped in both
directions, except on a WebSocket upgrade: the ``Upgrade``/``Connection`` pair is forwarded and,
after a ``101``, both connections become one byte tunnel (:meth:`ServerProtocol.tunnel`).
HTTP/1.1 trailers are not forwarded.

The rest of the HTTP/1.1 stack sits beside this module and is importable from it: the message
types (:mod:`meshd.proxy.message`), framing and the shared write side (:mod:`meshd.proxy.http1_codec`),
and the upstream connection, :class:`ClientProtocol` (:mod:`meshd.proxy.http1_client`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import httptools

from meshd.proxy.body import Body
from meshd.proxy.http1_client import ClientProtocol
from meshd.proxy.http1_codec import (
    HEADER_NAMES,
    Writer,
    content_length,
    header_name,
    request_head,
    response_head,
    serialize_request,
    serialize_response,
)
from meshd.proxy.message import HOP_BY_HOP, Handler, Request, Response, forwardable_headers

__all__ = ["HOP_BY_HOP", "ClientProtocol", "Handler", "Request", "Response", "ServerProtocol", "forwardable_headers",
           "request_head", "serialize_request", "serialize_response"]

log = logging.getLogger(__name__)

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT")}
_NOTED = frozenset({"content-length", "expect"})
"""Request headers the server looks at before handing the request on."""


class ServerProtocol(Writer, asyncio.Protocol):
    """One downstream HTTP/1.1 connection."""

    def __init__(self, handler: Handler, *, context: Any = None, on_close: Callable[[ServerProtocol], None] | None
                 = None) -> None:
        self.handler = handler
        self.context = context
        """Per-connection data for the handler (listener, peer identity, TLS object)."""
        self.on_close = on_close
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body: Body | None = None
        self._noted = False
        self._pending: list[Request] = []
        self._busy = False
        self._drained = None
        self._paused_writing = False
        self._tunnel = None
        self._upgraded = b""
        self._open: Response | None = None
        self.closing = False
        self.in_flight = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.write(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # The rest belongs to the upgraded protocol: held until the upstream agreed (101).
            self._upgraded += data[exc.args[0]:]
            if self.transport is not None:
                self.transport.pause_reading()
        except httptools.HttpParserError:
            if self._body is not None:
                self._body.fail(ConnectionResetError("malformed request body"))
            self._reply_and_close(400)

    def eof_received(self) -> bool | None:
        if self._tunnel is not None:
            self._tunnel.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._writer_lost()
        if self._body is not None and not self._body.done:
            self._body.fail(ConnectionResetError("downstream closed the connection"))
        if self._open is not None:
            resp, self._open = self._open, None
            resp.body.abort()
            resp.ended(None if self._tunnel is not None else ConnectionResetError("downstream closed the connection"))
        if self.on_close is not None:
            self.on_close(self)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = HEADER_NAMES.get(name) or header_name(name)
        if key in _NOTED:
            self._noted = True
        self._headers.append((key, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        headers = self._headers
        transport = self.transport
        length = None
        if self._noted:
            self._noted = False
            length = content_length(headers)
            # Answer "Expect: 100-continue" at once (as Envoy does by default) and do not pass it on.
            for i, (key, value) in enumerate(headers):
                if key == "expect" and value.lower() == "100-continue":
                    del headers[i]
                    if transport is not None:
                        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    break
        parser = self.parser
        body = Body(length=length, reader=transport)
        self._body = body
        method = parser.get_method()
        req = Request(_METHODS.get(method) or method.decode("latin-1"), self._url.decode("latin-1"), headers, body,
                      parser.get_http_version(), parser.should_keep_alive())
        if parser.should_upgrade():
            req.upgrade = (req.header("upgrade") or "").lower()
        if self._busy:
            self._pending.append(req)
            return
        self._busy = True
        asyncio.get_running_loop().create_task(self._serve(req))

    def on_body(self, body: bytes) -> None:
        if self._body is not None:
            self._body.feed(body)

    def on_message_complete(self) -> None:
        if self._body is not None:
            self._body.end()
            self._body = None

    async def _serve(self, req: Request | None) -> None:
        while req is not None:
            self.in_flight += 1
            try:
                try:
                    resp = await self.handler(req, self)
                except Exception:
                    log.exception("request handler failed")
                    resp = Response(500, [], b"")
                if await self._respond(req, resp):
                    return
            finally:
                self.in_flight -= 1
            req = self._pending.pop(0) if self._pending else None
        self._busy = False
        if self.closing and self.transport is not None:
            self.transport.close()

    async def _respond(self, req: Request, resp: Response) -> bool:
        """Write ``resp``; true when the connection is done (closed, or a tunnel now)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            resp.body.abort()
            resp.ended(ConnectionResetError("downstream closed the connection"))
            return True
        if resp.tunnel is not None and resp.status == 101 and req.upgrade:
            transport.write(response_head(101, forwardable_headers(resp.headers, upgrade=True), ""))
            self.tunnel(resp)
            return True
        keep_alive = (req.keep_alive and resp.keep_alive and not self.closing and not req.upgrade
                      and req.body.complete)
        body = resp.body
        status = resp.status
        if req.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            framing = f"content-length: {body.length}\r\n" if req.method == "HEAD" and body.length is not None else ""
            if not body.done:
                body.abort()
            transport.write(response_head(status, forwardable_headers(resp.headers), framing
                                           + ("" if keep_alive else "connection: close\r\n")))
            resp.ended()
        elif body.complete:
            transport.write(serialize_response(resp, forwardable_headers(resp.headers), keep_alive=keep_alive))
            resp.ended()
        else:
            if body.length is not None:
                framing = f"content-length: {body.length}\r\n"
            elif req.version == "1.1":
                framing = "transfer-encoding: chunked\r\n"
            else:
                framing, keep_alive = "", False
            chunked = framing.startswith("transfer")
            self._open = resp
            try:
                await self._write(response_head(status, forwardable_headers(resp.headers),
                                                 framing + ("" if keep_alive else "connection: close\r\n")))
                while chunk := await body.read():
                    await self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                if chunked:
                    await self._write(b"0\r\n\r\n")
            except (ConnectionError, TimeoutError) as exc:
                self._open = None
                body.abort()
                resp.ended(exc)
                self.closing = True
                transport.close()  # the message cannot be finished: the client sees it cut short
                return True
            self._open = None
            resp.ended()
        if not keep_alive:
            self.closing = True
            transport.close()
            return True
        return False

    def tunnel(self, resp: Response) -> None:
        """Join this connection with the upstream one of a ``101``: bytes pass both ways until either closes."""
        up = resp.tunnel
        assert up is not None and up.transport is not None and self.transport is not None
        self._open = resp
        self._tunnel = up.transport
        up.joined(self)
        if self._upgraded:
            up.transport.write(self._upgraded)
            self._upgraded = b""
        self.transport.resume_reading()

    def _reply_and_close(self, status: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(serialize_response(Response(status, [], b""), [], keep_alive=False))
            self.transport.close()

    def close_when_idle(self) -> None:
        """Draining: close now when idle, else after the current response."""
        self.closing = True
        if not self._busy and self.transport is not None:
            self.transport.close()
