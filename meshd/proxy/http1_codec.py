"""HTTP/1.1 codec parts shared by the downstream and upstream connections: framing, header names, the write side.

Used by :class:`~meshd.proxy.http1.ServerProtocol` and :class:`~meshd.proxy.http1_client.ClientProtocol`
(the two halves of Envoy's HTTP/1.1 codec) and by :mod:`meshd.proxy.health`:

* framing: :func:`request_head` / :func:`response_head` write a message head with the framing the
  body needs (``Content-Length``, ``Transfer-Encoding: chunked``), :func:`serialize_request` /
  :func:`serialize_response` a message whose body is complete;
* :func:`header_name`: header names as received → lower-case ``str``, interned in a bounded table
  (most traffic repeats a few dozen names, so the parser callbacks rarely decode);
* :class:`Writer`: write-side flow control (a write waits while the transport's buffer is over its
  high-water mark) and, after a WebSocket upgrade, the byte tunnel's backpressure (the joined
  connection stops reading while this one cannot write).
"""

from __future__ import annotations

import asyncio

from meshd.proxy.message import Request, Response

__all__ = ["HEADER_NAMES", "Writer", "content_length", "header_name", "request_head", "response_head",
           "serialize_request", "serialize_response"]

_REASONS = {101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
HEADER_NAMES: dict[bytes, str] = {}
"""Header names as received → lower-case str: most requests repeat a few dozen names (bounded)."""


def header_name(raw: bytes) -> str:
    name = HEADER_NAMES.get(raw)
    if name is None:
        name = raw.decode("latin-1").lower()
        if len(HEADER_NAMES) < 1024:
            HEADER_NAMES[raw] = name
    return name


def content_length(headers: list[tuple[str, str]]) -> int | None:
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


def response_head(status: int, headers: list[tuple[str, str]], framing: str) -> bytes:
    """A status line, ``headers`` (already forwardable) and ``framing`` (header lines, possibly none)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n", *[f"{k}: {v}\r\n" for k, v in headers]]
    lines.append(framing)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def serialize_response(resp: Response, headers: list[tuple[str, str]], *, keep_alive: bool,
                       head: bool = False) -> bytes:
    """A response whose body is complete, with a Content-Length, as bytes."""
    body = resp.body.take()
    data = response_head(resp.status, headers, f"content-length: {len(body)}\r\n"
                         + ("" if keep_alive else "connection: close\r\n"))
    return data if head else data + body


class Writer:
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
