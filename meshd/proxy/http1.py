"""HTTP/1.1 on both sides of the proxy, with httptools: the downstream server and the upstream client connection.

:class:`ServerProtocol` (an ``asyncio.Protocol``, one per accepted connection) parses requests
with ``httptools.HttpRequestParser`` callbacks and hands each complete :class:`Request` to the
handler (:mod:`meshd.proxy.httpproxy`); requests on one connection are answered in order
(pipelining works, answered serially). Keep-alive follows HTTP/1.1 (``Connection: close`` or an
HTTP/1.0 request without ``keep-alive`` closes after the response).

:class:`ClientProtocol` is one upstream connection: :meth:`ClientProtocol.send` writes a request
and returns a future of the :class:`Response`; the pool (:mod:`meshd.proxy.upstream`) reuses it
when the response allowed keep-alive.

Bodies are buffered whole, both ways (a chunked body arrives de-chunked from the parser and
leaves with ``Content-Length``), which keeps retries possible and the code short; streaming
bodies (and trailers, ``Upgrade``/WebSocket) are the known gaps. Hop-by-hop headers (RFC 9110
§7.6.1 and those named in ``Connection``) are dropped in both directions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httptools

__all__ = ["HOP_BY_HOP", "ClientProtocol", "Request", "Response", "ServerProtocol", "serialize_request",
           "serialize_response"]

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-authenticate", "proxy-authorization", "content-length"})
"""Dropped when forwarding (``content-length`` is recomputed from the buffered body)."""

_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Request:
    """A buffered HTTP request; ``headers`` keep order and case-folded names."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "version")

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes,
                 version: str = "1.1", keep_alive: bool = True) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.version = version
        self.keep_alive = keep_alive

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Response:
    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, keep_alive: bool = True) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def _forwardable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    connection = ""
    for key, value in headers:
        if key == "connection":
            connection = value.lower()
    if not connection:
        return [(k, v) for k, v in headers if k not in HOP_BY_HOP]
    named = {n.strip() for n in connection.split(",")}
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]


def serialize_request(req: Request, headers: list[tuple[str, str]]) -> bytes:
    """``req`` with ``headers`` (already forwardable) as HTTP/1.1 bytes with a Content-Length."""
    head = [f"{req.method} {req.path} HTTP/1.1\r\n"]
    head.extend(f"{k}: {v}\r\n" for k, v in headers)
    if req.body or req.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        head.append(f"content-length: {len(req.body)}\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1") + req.body


def serialize_response(resp: Response, headers: list[tuple[str, str]], *, keep_alive: bool,
                       head: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Status')}\r\n"]
    lines.extend(f"{k}: {v}\r\n" for k, v in headers)
    lines.append(f"content-length: {len(resp.body)}\r\n")
    if not keep_alive:
        lines.append("connection: close\r\n")
    lines.append("\r\n")
    data = "".join(lines).encode("latin-1")
    return data if head else data + resp.body


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
"""``handler(request, connection)``: the connection (HTTP/1.1 or HTTP/2) carries ``context``."""


class ServerProtocol(asyncio.Protocol):
    """One downstream HTTP/1.1 connection."""

    def __init__(self, handler: Handler, *, context: Any = None, on_close: Callable[[ServerProtocol], None] | None
                 = None) -> None:
        self.handler = handler
        self.context = context
        """Per-connection data for the handler (listener, peer identity, TLS object)."""
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._pending: list[Request] = []
        self._busy = False
        self.closing = False
        self.in_flight = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply_and_close(501)
        except httptools.HttpParserError:
            self._reply_and_close(400)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.on_close is not None:
            self.on_close(self)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        # The body is buffered here anyway: answer "Expect: 100-continue" at once (curl would
        # otherwise wait a second before sending a body) and do not pass the expectation on.
        for i, (key, value) in enumerate(self._headers):
            if key == "expect" and value.lower() == "100-continue":
                del self._headers[i]
                if self.transport is not None:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                break

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        req = Request(parser.get_method().decode("latin-1"), self._url.decode("latin-1"), self._headers,
                      b"".join(self._body), parser.get_http_version(), parser.should_keep_alive())
        if self._busy:
            self._pending.append(req)
            return
        self._busy = True
        asyncio.get_running_loop().create_task(self._serve(req))

    async def _serve(self, req: Request | None) -> None:
        while req is not None:
            self.in_flight += 1
            try:
                resp = await self.handler(req, self)
            except Exception:
                log.exception("request handler failed")
                resp = Response(500, [], b"")
            finally:
                self.in_flight -= 1
            keep_alive = req.keep_alive and resp.keep_alive and not self.closing
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            transport.write(serialize_response(resp, _forwardable(resp.headers), keep_alive=keep_alive,
                                               head=req.method == "HEAD"))
            if not keep_alive:
                self.closing = True
                transport.close()
                return
            req = self._pending.pop(0) if self._pending else None
        self._busy = False

    def _reply_and_close(self, status: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(serialize_response(Response(status, [], b""), [], keep_alive=False))
            self.transport.close()

    def close_when_idle(self) -> None:
        """Draining: close now when idle, else after the current response."""
        self.closing = True
        if not self._busy and self.transport is not None:
            self.transport.close()


def forwardable_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return _forwardable(headers)


class ClientProtocol(asyncio.Protocol):
    """One upstream HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._future: asyncio.Future[Response] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._head_only = False
        self.reused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        future = self._future
        if future is not None and not future.done():
            future.set_exception(ConnectionResetError("upstream connection closed before the response"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionResetError(f"malformed upstream response: {exc}"))

    def _fail(self, exc: Exception) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, *, head: bool = False) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._future = asyncio.get_running_loop().create_future()
        self._head_only = head
        self._headers = []
        self._body = []
        self.transport.write(data)
        return self._future

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self._head_only:
            # A HEAD response has no body whatever its Content-Length says: complete it here and
            # do not reuse the connection (the parser would wait for the body).
            self._complete(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete(keep_alive=self.parser.should_keep_alive())

    def _complete(self, *, keep_alive: bool) -> None:
        future = self._future
        if future is None or future.done():
            return
        self._future = None
        if not keep_alive:
            self.closed = True
        future.set_result(Response(self.parser.get_status_code(), self._headers, b"".join(self._body), keep_alive))
        if not keep_alive and self.transport is not None:
            self.transport.close()
