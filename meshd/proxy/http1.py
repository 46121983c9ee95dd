"""HTTP/1.1 on both sides of the proxy, with httptools: the downstream server and the upstream client connection.

:class:`ServerProtocol` (an ``asyncio.Protocol``, one per accepted connection) parses requests
with ``httptools.HttpRequestParser`` callbacks and hands each :class:`Request` to the handler
(:mod:`meshd.proxy.httpproxy`) as soon as its head is parsed; the body follows through
:class:`~meshd.proxy.body.Body`. Requests on one connection are answered in order (pipelining
works, answered serially). Keep-alive follows HTTP/1.1 (``Connection: close`` or an HTTP/1.0
request without ``keep-alive`` closes after the response).

:class:`ClientProtocol` is one upstream connection: :meth:`ClientProtocol.send` writes a request
head (and its body, whole or pumped from a :class:`~meshd.proxy.body.Replay`) and returns a
future of the :class:`Response`, resolved when the response head arrives; the body streams on.
The connection goes back to its pool (``on_idle``) once both messages are complete and the
response allowed keep-alive.

Bodies stream both ways with backpressure (reading pauses while the other side's writes are
blocked): a response whose body is complete when its head is written leaves in one write with
``Content-Length``; otherwise the upstream's ``Content-Length`` is kept, or the body is sent
chunked (close-delimited to an HTTP/1.0 client). Hop-by-hop headers (RFC 9110 §7.6.1 and those
named in ``Connection``) are dropped in both directions, except on a WebSocket upgrade: the
``Upgrade``/``Connection`` pair is forwarded and, after a ``101``, both connections become one
byte tunnel (:meth:`ServerProtocol.tunnel`). HTTP/1.1 trailers are not forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httptools

from meshd.proxy.body import Body, Replay

__all__ = ["HOP_BY_HOP", "ClientProtocol", "Request", "Response", "ServerProtocol", "request_head",
           "serialize_request", "serialize_response"]

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-authenticate", "proxy-authorization", "content-length"})
"""Dropped when forwarding (``content-length`` is set again from the body that is sent)."""

_REASONS = {101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT")}
_NOTED = frozenset({"content-length", "expect"})
"""Request headers the server looks at before handing the request on."""
_NAMES: dict[bytes, str] = {}
"""Header names as received → lower-case str: most requests repeat a few dozen names (bounded)."""


def _name(raw: bytes) -> str:
    name = _NAMES.get(raw)
    if name is None:
        name = raw.decode("latin-1").lower()
        if len(_NAMES) < 1024:
            _NAMES[raw] = name
    return name


class Request:
    """An HTTP request; ``headers`` keep order and case-folded names; ``body`` streams."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "upgrade", "version")

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | Body = b"",
                 version: str = "1.1", keep_alive: bool = True) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body if isinstance(body, Body) else Body.of(body)
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade = ""
        """The protocol a WebSocket upgrade asks for (``websocket``), else empty."""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Response:
    """An HTTP response; ``body`` streams; ``on_end`` is called once it was written (or failed)."""

    __slots__ = ("body", "headers", "keep_alive", "on_end", "status", "tunnel")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes | Body = b"",
                 keep_alive: bool = True) -> None:
        self.status = status
        self.headers = headers
        self.body = body if isinstance(body, Body) else Body.of(body)
        self.keep_alive = keep_alive
        self.tunnel: ClientProtocol | None = None
        """After a ``101``: the upstream connection to join with the downstream one."""
        self.on_end: Callable[[BaseException | None], None] | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def ended(self, error: BaseException | None = None) -> None:
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end(error)


def _forwardable(headers: list[tuple[str, str]], upgrade: bool = False) -> list[tuple[str, str]]:
    connection = ""
    for key, value in headers:
        if key == "connection":
            connection = value.lower()
    if not connection:
        out = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
    else:
        named = {n.strip() for n in connection.split(",")} - {"upgrade"}
        out = [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]
    if upgrade:
        out.extend((k, v) for k, v in headers if k == "upgrade")
        out.append(("connection", "upgrade"))
    return out


def forwardable_headers(headers: list[tuple[str, str]], upgrade: bool = False) -> list[tuple[str, str]]:
    return _forwardable(headers, upgrade)


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for key, value in headers:
        if key == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def request_head(method: str, path: str, headers: list[tuple[str, str]], length: int | None) -> bytes:
    """A request head with ``headers`` (already forwardable); ``length`` ``None`` means chunked."""
    head = [f"{method} {path} HTTP/1.1\r\n", *[f"{k}: {v}\r\n" for k, v in headers]]
    if length is None:
        head.append("transfer-encoding: chunked\r\n")
    elif length or method not in _NO_BODY_METHODS:
        head.append(f"content-length: {length}\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1")


def serialize_request(req: Request, headers: list[tuple[str, str]]) -> bytes:
    """``req`` (its body complete) with ``headers`` (already forwardable) as HTTP/1.1 bytes with a Content-Length."""
    body = req.body.take()
    return request_head(req.method, req.path, headers, len(body)) + body


def _response_head(status: int, headers: list[tuple[str, str]], framing: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n", *[f"{k}: {v}\r\n" for k, v in headers]]
    lines.append(framing)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def serialize_response(resp: Response, headers: list[tuple[str, str]], *, keep_alive: bool,
                       head: bool = False) -> bytes:
    """A response whose body is complete, with a Content-Length, as bytes."""
    body = resp.body.take()
    data = _response_head(resp.status, headers, f"content-length: {len(body)}\r\n"
                          + ("" if keep_alive else "connection: close\r\n"))
    return data if head else data + body


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
"""``handler(request, connection)``: the connection (HTTP/1.1 or HTTP/2) carries ``context``."""


class _Writer:
    """Write-side flow control shared by both protocols, and the byte tunnel after an upgrade."""

    transport: asyncio.Transport | None
    _drained: asyncio.Future[None] | None
    _paused_writing: bool
    _tunnel: asyncio.Transport | None

    def pause_writing(self) -> None:
        self._paused_writing = True
        if self._tunnel is not None:
            self._tunnel.pause_reading()

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._tunnel is not None:
            self._tunnel.resume_reading()
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _writer_lost(self) -> None:
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection closed"))
        if self._tunnel is not None:
            self._tunnel.close()

    async def _write(self, data: bytes) -> None:
        """Write ``data``, then wait while the transport's buffer is over its high-water mark."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)
        if self._paused_writing:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained


class ServerProtocol(_Writer, asyncio.Protocol):
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
        key = _NAMES.get(name) or _name(name)
        if key in _NOTED:
            self._noted = True
        self._headers.append((key, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        headers = self._headers
        transport = self.transport
        length = None
        if self._noted:
            self._noted = False
            length = _content_length(headers)
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
            transport.write(_response_head(101, _forwardable(resp.headers, upgrade=True), ""))
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
            transport.write(_response_head(status, _forwardable(resp.headers), framing
                                           + ("" if keep_alive else "connection: close\r\n")))
            resp.ended()
        elif body.complete:
            transport.write(serialize_response(resp, _forwardable(resp.headers), keep_alive=keep_alive))
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
                await self._write(_response_head(status, _forwardable(resp.headers),
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


class ClientProtocol(_Writer, asyncio.Protocol):
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
        self._headers.append((_NAMES.get(name) or _name(name), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._headers = []  # an interim response (100 Continue): the real one follows
            return
        body = Body(length=_content_length(self._headers), reader=self.transport)
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
