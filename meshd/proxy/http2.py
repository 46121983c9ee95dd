"""HTTP/2 and gRPC with h2: the downstream server, the upstream client connection, and protocol detection.

Used for Service ports whose protocol is ``http2`` or ``grpc``: between the app and its sidecar
(h2c with prior knowledge, as gRPC clients speak), between sidecars (HTTP/2 inside the mTLS
tunnel) and from the server sidecar to its app.

* :class:`ServerProtocol` -- one downstream connection, many streams; each stream's request is
  buffered to ``END_STREAM`` and handed to the same handler as HTTP/1.1
  (:mod:`meshd.proxy.httpproxy`), and its :class:`~meshd.proxy.http1.Response` is sent back with
  flow control and, for gRPC, its trailers (``grpc-status``).
* :class:`ClientProtocol` -- one upstream connection multiplexing requests
  (:meth:`ClientProtocol.request`); a stream reset with ``REFUSED_STREAM`` raises
  :class:`RefusedStream` (retried under ``refused-stream``), other resets ``ConnectionResetError``.
* :class:`Detect` -- on an HTTP/2-capable port, the first bytes pick HTTP/2 (the ``PRI *``
  preface) or HTTP/1.1 (anything else) and the transport is handed to that protocol; HTTP is
  client-first, so waiting for the client here delays nothing.

Bodies are buffered whole (unary gRPC and ordinary requests; streaming RPCs are the known gap).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from meshd.proxy.http1 import HOP_BY_HOP, Handler, Request, Response

__all__ = ["ClientProtocol", "Detect", "RefusedStream", "ServerProtocol"]

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_DROP = HOP_BY_HOP | {"host"}


class RefusedStream(ConnectionError):
    """The upstream refused the stream before processing it (safe to retry)."""


def _fields(headers: list[tuple[str, str]], keep_te: bool = False) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in headers if k not in _H2_DROP and not k.startswith(":")]
    if keep_te:
        out.append(("te", "trailers"))
    return out


class _Flow:
    """Sending with HTTP/2 flow control: waits for WINDOW_UPDATE when a window is exhausted."""

    conn: h2.connection.H2Connection
    transport: asyncio.Transport | None
    _window_waiters: list[asyncio.Future[None]]

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _window_opened(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _send_body(self, stream_id: int, body: bytes, *, end: bool) -> None:
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                waiter = asyncio.get_running_loop().create_future()
                self._window_waiters.append(waiter)
                await waiter
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(stream_id, chunk.tobytes(), end_stream=end and not view)
            self._flush()
        if end and not body:
            self.conn.end_stream(stream_id)
            self._flush()


class ServerProtocol(asyncio.Protocol, _Flow):
    """One downstream HTTP/2 connection."""

    def __init__(self, handler: Handler, *, context: Any = None,
                 on_close: Callable[[Any], None] | None = None) -> None:
        self.handler = handler
        self.context = context
        self.on_close = on_close
        self.transport = None
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self._streams: dict[int, tuple[list[tuple[str, str]], list[bytes]]] = {}
        self._window_waiters = []
        self.in_flight = 0
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        self.conn.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._window_opened()
        if self.on_close is not None:
            self.on_close(self)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("h2 protocol error from downstream: %s", exc)
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._streams[event.stream_id] = ([(str(k), str(v)) for k, v in event.headers], [])
            elif isinstance(event, h2.events.DataReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream[1].append(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._start(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._streams.pop(event.stream_id, None)
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._window_opened()
            elif isinstance(event, h2.events.ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self._flush()

    def _start(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        raw, body = stream
        pseudo = {k: v for k, v in raw if k.startswith(":")}
        headers = [("host", pseudo.get(":authority", ""))] + [(k, v) for k, v in raw if not k.startswith(":")]
        req = Request(pseudo.get(":method", "GET"), pseudo.get(":path", "/"), headers, b"".join(body), "2")
        asyncio.get_running_loop().create_task(self._serve(stream_id, req))

    async def _serve(self, stream_id: int, req: Request) -> None:
        self.in_flight += 1
        try:
            try:
                resp = await self.handler(req, self)
            except Exception:  # a handler bug answers 500 rather than hanging the stream
                log.exception("request handler failed")
                resp = Response(500, [], b"")
            if self.transport is None or self.transport.is_closing():
                return
            trailers = [(k, v) for k, v in resp.headers if k in ("grpc-status", "grpc-message")]
            fields = [(k, v) for k, v in _fields(resp.headers) if k not in ("grpc-status", "grpc-message")]
            if (req.header("content-type") or "").startswith("application/grpc") and not trailers:
                trailers = [("grpc-status", "14" if resp.status >= 500 else "0")]
            end_now = not resp.body and not trailers
            self.conn.send_headers(stream_id, [(":status", str(resp.status)), *fields], end_stream=end_now)
            self._flush()
            if resp.body:
                await self._send_body(stream_id, resp.body, end=not trailers)
            if trailers:
                self.conn.send_headers(stream_id, trailers, end_stream=True)
                self._flush()
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) as exc:
            log.debug("h2 stream %d: %s", stream_id, exc)
        finally:
            self.in_flight -= 1
            if self.closing and not self.in_flight and self.transport is not None:
                self.transport.close()

    def close_when_idle(self) -> None:
        """Draining: GOAWAY now; close once the streams in flight are answered."""
        self.closing = True
        self.conn.close_connection()
        self._flush()
        if not self.in_flight and self.transport is not None:
            self.transport.close()


class ClientProtocol(asyncio.Protocol, _Flow):
    """One upstream HTTP/2 connection, requests multiplexed on it."""

    def __init__(self) -> None:
        self.transport = None
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self._pending: dict[int, tuple[asyncio.Future[Response], list[tuple[str, str]], list[bytes]]] = {}
        self._window_waiters = []
        self.closed = False
        self.reused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        self.conn.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._window_opened()
        for future, _, _ in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionResetError("upstream HTTP/2 connection closed"))
        self._pending.clear()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    @property
    def available(self) -> bool:
        return not self.closed and self.conn.open_outbound_streams < self.conn.remote_settings.max_concurrent_streams

    async def request(self, req: Request, headers: list[tuple[str, str]], authority: str) -> Response:
        stream_id = self.conn.get_next_available_stream_id()
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = (future, [], [])
        pseudo = [(":method", req.method), (":scheme", "http"), (":authority", authority), (":path", req.path)]
        grpc = any(k == "te" and v == "trailers" for k, v in req.headers)
        self.conn.send_headers(stream_id, pseudo + _fields(headers, keep_te=grpc), end_stream=not req.body)
        self._flush()
        try:
            if req.body:
                await self._send_body(stream_id, req.body, end=True)
            return await future
        except asyncio.CancelledError:
            self._reset(stream_id)
            raise
        finally:
            self._pending.pop(stream_id, None)

    def _reset(self, stream_id: int) -> None:
        try:
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self._flush()
        except h2.exceptions.H2Error:
            pass

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("h2 protocol error from upstream: %s", exc)
            self.close()
            return
        for event in events:
            entry = self._pending.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived) and entry is not None:
                entry[1].extend((str(k), str(v)) for k, v in event.headers)
            elif isinstance(event, h2.events.DataReceived):
                if entry is not None:
                    entry[2].append(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and entry is not None:
                future, raw, body = entry
                status = next((int(v) for k, v in raw if k == ":status"), 502)
                if not future.done():
                    future.set_result(Response(status, [(k, v) for k, v in raw if not k.startswith(":")],
                                               b"".join(body)))
            elif isinstance(event, h2.events.StreamReset) and entry is not None:
                if not entry[0].done():
                    refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                    entry[0].set_exception(RefusedStream("stream refused") if refused
                                           else ConnectionResetError(f"stream reset ({event.error_code!r})"))
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._window_opened()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
        self._flush()


class Detect(asyncio.Protocol):
    """Picks HTTP/2 or HTTP/1.1 from the client's first bytes, then hands the transport over."""

    def __init__(self, h2_factory: Callable[[], asyncio.Protocol], h1_factory: Callable[[], asyncio.Protocol],
                 on_connect: Callable[[asyncio.Transport], None] | None = None) -> None:
        self.h2_factory = h2_factory
        self.h1_factory = h1_factory
        self.on_connect = on_connect
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        if self.on_connect is not None:
            self.on_connect(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) < 4 and PREFACE.startswith(self.buffer):
            return
        assert self.transport is not None
        protocol = self.h2_factory() if self.buffer.startswith(PREFACE[:4]) else self.h1_factory()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self.buffer)
        self.buffer = b""
