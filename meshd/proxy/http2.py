"""HTTP/2 and gRPC with h2: the downstream server, the upstream client connection, and protocol detection.

Used for Service ports whose protocol is ``http2`` or ``grpc``: between the app and its sidecar
(h2c with prior knowledge, as gRPC clients speak), between sidecars (HTTP/2 inside the mTLS
tunnel) and from the server sidecar to its app.

* :class:`ServerProtocol` -- one downstream connection, many streams; each stream's
  :class:`~meshd.proxy.message.Request` goes to the same handler as HTTP/1.1
  (:mod:`meshd.proxy.httpproxy`) when its HEADERS arrive, its DATA following through a
  :class:`~meshd.proxy.body.Body`; the :class:`~meshd.proxy.message.Response` goes back as
  HEADERS, DATA as the body streams, and trailers (``grpc-status``) at its end.
* :class:`ClientProtocol` -- one upstream connection multiplexing requests
  (:meth:`ClientProtocol.request`, resolved at the response HEADERS; the request body is sent
  by a task at the same time, so bidirectional streaming RPCs work); a stream reset with
  ``REFUSED_STREAM`` raises :class:`RefusedStream` (retried under ``refused-stream``), other
  resets ``ConnectionResetError``.
* :class:`Detect` -- on an HTTP/2-capable port, the first bytes pick HTTP/2 (the ``PRI *``
  preface) or HTTP/1.1 (anything else) and the transport is handed to that protocol; HTTP is
  client-first, so waiting for the client here delays nothing.

Flow control is HTTP/2's own on both sides: received DATA is acknowledged (WINDOW_UPDATE) only
when the other side has taken it from the body, so a slow reader stops its sender after one
stream window; sending waits for the peer's window.
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

from meshd.proxy.body import Body, Replay
from meshd.proxy.http1 import HOP_BY_HOP, Handler, Request, Response

__all__ = ["ClientProtocol", "Detect", "RefusedStream", "ServerProtocol"]

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_DROP = HOP_BY_HOP | {"host"}
_GRPC_TRAILERS = ("grpc-status", "grpc-message")


class RefusedStream(ConnectionError):
    """The upstream refused the stream before processing it (safe to retry)."""


def _fields(headers: list[tuple[str, str]], keep_te: bool = False) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in headers if k not in _H2_DROP and not k.startswith(":")]
    if keep_te:
        out.append(("te", "trailers"))
    return out


class _Flow:
    """Sending with HTTP/2 flow control (waits for WINDOW_UPDATE) and acknowledging what was read."""

    conn: h2.connection.H2Connection
    transport: asyncio.Transport | None
    _window_waiters: list[asyncio.Future[None]]

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _window_opened(self, error: BaseException | None = None) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    def _ack(self, stream_id: int, n: int) -> None:
        try:
            self.conn.acknowledge_received_data(n, stream_id)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            return
        self._flush()

    def _body(self, stream_id: int) -> Body:
        return Body(consumed=lambda n: self._ack(stream_id, n))

    async def _send_body(self, stream_id: int, body: bytes, *, end: bool) -> None:
        """Queue ``body`` as DATA frames (the caller flushes); waits while the peer's window is closed."""
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                if self.transport is None or self.transport.is_closing():
                    raise ConnectionResetError("HTTP/2 connection closed")
                self._flush()
                waiter = asyncio.get_running_loop().create_future()
                self._window_waiters.append(waiter)
                await waiter
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(stream_id, chunk.tobytes() if view or len(chunk) != len(body) else body,
                                end_stream=end and not view)
        if end and not body:
            self.conn.end_stream(stream_id)


class ServerProtocol(asyncio.Protocol, _Flow):
    """One downstream HTTP/2 connection."""

    def __init__(self, handler: Handler, *, context: Any = None,
                 on_close: Callable[[Any], None] | None = None) -> None:
        self.handler = handler
        self.context = context
        self.on_close = on_close
        self.transport = None
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self._requests: dict[int, Body] = {}
        self._responses: dict[int, Response] = {}
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
        self._window_opened(ConnectionResetError("downstream HTTP/2 connection closed"))
        for body in self._requests.values():
            body.fail(ConnectionResetError("downstream HTTP/2 connection closed"))
        self._requests.clear()
        for resp in self._responses.values():
            resp.body.abort()
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
                self._start(event)
            elif isinstance(event, h2.events.DataReceived):
                body = self._requests.get(event.stream_id)
                if body is None:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    continue
                padding = event.flow_controlled_length - len(event.data)
                if padding:
                    self.conn.acknowledge_received_data(padding, event.stream_id)
                body.feed(event.data)
            elif isinstance(event, h2.events.StreamEnded):
                body = self._requests.pop(event.stream_id, None)
                if body is not None:
                    body.end()
            elif isinstance(event, h2.events.StreamReset):
                body = self._requests.pop(event.stream_id, None)
                if body is not None:
                    body.fail(ConnectionResetError("downstream reset the stream"))
                resp = self._responses.get(event.stream_id)
                if resp is not None:
                    resp.body.abort()
                self._window_opened()
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._window_opened()
            elif isinstance(event, h2.events.ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self._flush()

    def _start(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        method, path, authority = "GET", "/", ""
        headers: list[tuple[str, str]] = [("host", "")]
        for k, v in event.headers:
            key, value = str(k), str(v)
            if key[0] != ":":
                headers.append((key, value))
            elif key == ":method":
                method = value
            elif key == ":path":
                path = value
            elif key == ":authority":
                authority = value
        headers[0] = ("host", authority)
        body = self._body(stream_id)
        self._requests[stream_id] = body
        req = Request(method, path, headers, body, "2")
        asyncio.get_running_loop().create_task(self._serve(stream_id, req))

    async def _serve(self, stream_id: int, req: Request) -> None:
        self.in_flight += 1
        resp: Response | None = None
        try:
            try:
                resp = await self.handler(req, self)
            except Exception:  # a handler bug answers 500 rather than hanging the stream
                log.exception("request handler failed")
                resp = Response(500, [], b"")
            if self.transport is None or self.transport.is_closing():
                resp.body.abort()
                resp.ended(ConnectionResetError("downstream closed the connection"))
                return
            self._responses[stream_id] = resp
            await self._respond(stream_id, req, resp)
            resp.ended()
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError, ConnectionError,
                TimeoutError) as exc:
            log.debug("h2 stream %d: %s", stream_id, exc)
            if resp is not None:
                resp.body.abort()
                resp.ended(exc)
            self._reset(stream_id)
        finally:
            self._responses.pop(stream_id, None)
            self.in_flight -= 1
            if self.closing and not self.in_flight and self.transport is not None:
                self.transport.close()

    async def _respond(self, stream_id: int, req: Request, resp: Response) -> None:
        body = resp.body
        grpc = (req.header("content-type") or "").startswith("application/grpc")
        in_headers = [(k, v) for k, v in resp.headers if k in _GRPC_TRAILERS]
        fields = _fields(resp.headers)
        if body.complete and not body.buffered and not body.trailers and (in_headers or not grpc):
            # no body: the HEADERS end the stream (a gRPC "trailers-only" response keeps its status there)
            self.conn.send_headers(stream_id, [(":status", str(resp.status)), *fields], end_stream=True)
            self._flush()
            return
        if in_headers:
            fields = [(k, v) for k, v in fields if k not in _GRPC_TRAILERS]
        self.conn.send_headers(stream_id, [(":status", str(resp.status)), *fields])
        if not body.complete:
            self._flush()
        while chunk := await body.read():
            await self._send_body(stream_id, chunk, end=False)
            if not body.complete:
                self._flush()
        trailers = body.trailers or in_headers
        if not trailers and grpc:
            trailers = [("grpc-status", "14" if resp.status >= 500 else "0")]
        if trailers:
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        else:
            self.conn.end_stream(stream_id)
        self._flush()

    def _reset(self, stream_id: int) -> None:
        try:
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self._flush()
        except h2.exceptions.H2Error:
            pass

    def close_when_idle(self) -> None:
        """Draining: GOAWAY now; close once the streams in flight are answered."""
        self.closing = True
        self.conn.close_connection()
        self._flush()
        if not self.in_flight and self.transport is not None:
            self.transport.close()


class _Call:
    __slots__ = ("body", "future", "pump")

    def __init__(self, future: asyncio.Future[Response]) -> None:
        self.future = future
        self.body: Body | None = None
        self.pump: asyncio.Task[None] | None = None


class ClientProtocol(asyncio.Protocol, _Flow):
    """One upstream HTTP/2 connection, requests multiplexed on it."""

    def __init__(self) -> None:
        self.transport = None
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self._calls: dict[int, _Call] = {}
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
        self._window_opened(ConnectionResetError("upstream HTTP/2 connection closed"))
        for call in self._calls.values():
            self._end_call(call, ConnectionResetError("upstream HTTP/2 connection closed"))
        self._calls.clear()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    @property
    def available(self) -> bool:
        return not self.closed and self.conn.open_outbound_streams < self.conn.remote_settings.max_concurrent_streams

    async def request(self, req: Request, headers: list[tuple[str, str]], authority: str,
                      source: Replay | None = None) -> Response:
        """Send ``req`` (its body from ``source``, default: the request's own); the response at its HEADERS."""
        stream_id = self.conn.get_next_available_stream_id()
        call = _Call(asyncio.get_running_loop().create_future())
        self._calls[stream_id] = call
        pseudo = [(":method", req.method), (":scheme", "http"), (":authority", authority), (":path", req.path)]
        grpc = any(k == "te" and v == "trailers" for k, v in req.headers)
        source = source or Replay(req.body, 0)
        whole = source.whole()
        self.conn.send_headers(stream_id, pseudo + _fields(headers, keep_te=grpc), end_stream=whole == b"")
        try:
            if whole:
                await self._send_body(stream_id, whole, end=True)
            self._flush()
            if whole is None:
                call.pump = asyncio.get_running_loop().create_task(self._pump(stream_id, source))
            return await call.future
        except asyncio.CancelledError:
            self._cancel(stream_id)
            raise

    async def _pump(self, stream_id: int, source: Replay) -> None:
        try:
            while chunk := await source.read():
                await self._send_body(stream_id, chunk, end=False)
                self._flush()
            self.conn.end_stream(stream_id)
            self._flush()
        except (ConnectionError, TimeoutError, h2.exceptions.H2Error) as exc:
            log.debug("h2 request body on stream %d not forwarded: %s", stream_id, exc)
            self._cancel(stream_id)

    def _cancel(self, stream_id: int) -> None:
        call = self._calls.pop(stream_id, None)
        if call is not None:
            self._end_call(call, ConnectionResetError("stream cancelled"))
        try:
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self._flush()
        except h2.exceptions.H2Error:
            pass

    @staticmethod
    def _end_call(call: _Call, exc: BaseException) -> None:
        if not call.future.done():
            call.future.set_exception(exc)
            call.future.exception()  # the caller may already have gone (cancelled)
        if call.body is not None:
            call.body.fail(exc)
        if call.pump is not None and not call.pump.done() and call.pump is not asyncio.current_task():
            call.pump.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("h2 protocol error from upstream: %s", exc)
            self.close()
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                call = self._calls.get(event.stream_id)
                if call is not None:
                    self._respond(event.stream_id, call, event.headers)
            elif isinstance(event, h2.events.DataReceived):
                call = self._calls.get(event.stream_id)
                body = call.body if call is not None else None
                if body is None:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    continue
                padding = event.flow_controlled_length - len(event.data)
                if padding:
                    self.conn.acknowledge_received_data(padding, event.stream_id)
                body.feed(event.data)
            elif isinstance(event, h2.events.TrailersReceived):
                call = self._calls.get(event.stream_id)
                if call is not None and call.body is not None:
                    call.body.trailers = [(str(k), str(v)) for k, v in event.headers]
            elif isinstance(event, h2.events.StreamEnded):
                call = self._calls.pop(event.stream_id, None)
                if call is not None and call.body is not None:
                    call.body.end()
            elif isinstance(event, h2.events.StreamReset):
                call = self._calls.pop(event.stream_id, None)
                if call is not None:
                    refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                    self._end_call(call, RefusedStream("stream refused") if refused and call.body is None
                                   else ConnectionResetError(f"stream reset ({event.error_code!r})"))
                self._window_opened()
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._window_opened()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
        self._flush()

    def _respond(self, stream_id: int, call: _Call, raw: Any) -> None:
        status = 502
        headers: list[tuple[str, str]] = []
        for k, v in raw:
            key, value = str(k), str(v)
            if key == ":status":
                status = int(value)
            elif key[0] != ":":
                headers.append((key, value))
        body = call.body = self._body(stream_id)
        body.cancel = lambda: self._cancel(stream_id)
        if not call.future.done():
            call.future.set_result(Response(status, headers, body))


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
