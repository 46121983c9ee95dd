"""A small gRPC client on h2: unary calls and one bidirectional stream over TLS, for talking to meshd.

The proxy needs exactly two RPCs of meshd (``Certificates.Certify``, unary, and
``Discovery.Stream``, bidirectional; see :mod:`meshd.api.protocol`). Speaking gRPC's wire format
over the HTTP/2 stack the data plane already has (h2) instead of loading grpcio keeps the sidecar
about 10 MB and ten threads lighter -- the proxy's memory budget is 40 MB.

Wire format (gRPC over HTTP/2): a ``POST`` to ``/<service>/<method>`` with ``content-type:
application/grpc`` and ``te: trailers``; each message is framed as one flag byte (0: not
compressed), a 4-byte big-endian length and the bytes; the status comes in trailers
(``grpc-status``, ``grpc-message``) or, for an immediate error, in trailers-only headers.

:class:`Channel` is one TLS connection (ALPN ``h2``, meshd verified against the mesh root under
``server_name``, the workload certificate presented when given); :meth:`Channel.unary` and
:meth:`Channel.stream` open calls on it. Failures raise :class:`GrpcError` (``code`` is the gRPC
status code; ``14`` UNAVAILABLE for transport failures). TCP keepalive detects a vanished meshd.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from typing import cast
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions

__all__ = ["Call", "Channel", "GrpcError"]

UNAVAILABLE = 14


class GrpcError(Exception):
    """A gRPC call failed: ``code`` (gRPC status), ``details``."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(f"gRPC status {code}: {details}")
        self.code = code
        self.details = details


class Call:
    """One RPC: messages out (:meth:`send`), messages in (:meth:`recv`, None at the end)."""

    def __init__(self, channel: Channel, stream_id: int) -> None:
        self.channel = channel
        self.stream_id = stream_id
        self.messages: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.buffer = b""
        self.status: GrpcError | None = None
        self.ok = False

    def send(self, message: bytes, *, end: bool = False) -> None:
        self.channel.send_data(self.stream_id, struct.pack(">BI", 0, len(message)) + message, end)

    async def recv(self) -> bytes | None:
        """The next message; None when the call ended well; raises :class:`GrpcError` when it failed."""
        item = await self.messages.get()
        if item is None and self.status is not None:
            raise self.status
        return item

    def _data(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 5:
            _, length = struct.unpack_from(">BI", self.buffer)
            if len(self.buffer) < 5 + length:
                return
            self.messages.put_nowait(self.buffer[5:5 + length])
            self.buffer = self.buffer[5 + length:]

    def _end(self, headers: dict[str, str] | None, error: GrpcError | None = None) -> None:
        if error is None and headers is not None:
            code = int(headers.get("grpc-status", UNAVAILABLE if ":status" in headers and
                                   headers[":status"] != "200" else 0))
            if code:
                error = GrpcError(code, unquote(headers.get("grpc-message", "")))
        if self.status is None and not self.ok:
            self.status = error
            self.ok = error is None
            self.messages.put_nowait(None)


class Channel(asyncio.Protocol):
    """One HTTP/2 connection to a gRPC server."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext, server_name: str,
                 authority: str = "") -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.server_name = server_name
        self.authority = authority or server_name
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, Call] = {}
        self.closed = False

    async def connect(self, timeout: float = 10.0) -> Channel:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(lambda: self, self.host, self.port, ssl=self.ssl_context,
                                                            server_hostname=self.server_name)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise GrpcError(UNAVAILABLE, f"{self.host}:{self.port}: {exc or type(exc).__name__}") from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option, value in ((socket.SO_KEEPALIVE, 1),):
                sock.setsockopt(socket.SOL_SOCKET, option, value)
            for name, value in (("TCP_KEEPIDLE", 20), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        return self

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conn.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for call in list(self.calls.values()):
            call._end(None, GrpcError(UNAVAILABLE, f"connection to {self.host}:{self.port} lost"))
        self.calls.clear()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.close()
            self.connection_lost(exc)
            return
        for event in events:
            call = self.calls.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if call is not None:
                    call._data(event.data)
            elif isinstance(event, h2.events.ResponseReceived) and call is not None:
                headers = {str(k): str(v) for k, v in event.headers}
                if headers.get(":status") != "200" or "grpc-status" in headers:
                    call._end(headers)  # trailers-only (an immediate error) or not gRPC at all
            elif isinstance(event, h2.events.TrailersReceived) and call is not None:
                call._end({str(k): str(v) for k, v in event.headers})
            elif isinstance(event, h2.events.StreamEnded) and call is not None:
                call._end({})
                self.calls.pop(event.stream_id, None)
            elif isinstance(event, h2.events.StreamReset) and call is not None:
                call._end(None, GrpcError(UNAVAILABLE, f"stream reset by the server ({event.error_code!r})"))
                self.calls.pop(event.stream_id, None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.close()
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        # Requests to meshd are small (well under the initial 64 KiB window): no flow-control wait.
        if self.closed:
            raise GrpcError(UNAVAILABLE, "connection closed")
        self.conn.send_data(stream_id, data, end_stream=end)
        self._flush()

    def open(self, method: str, *, timeout: float | None = None) -> Call:
        """Start a call of ``method`` (``/service/Method``)."""
        if self.closed:
            raise GrpcError(UNAVAILABLE, "connection closed")
        stream_id = self.conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "https"), (":authority", self.authority), (":path", method),
                   ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "kubelab-proxy")]
        if timeout is not None:
            headers.append(("grpc-timeout", f"{max(1, int(timeout * 1000))}m"))
        call = self.calls[stream_id] = Call(self, stream_id)
        self.conn.send_headers(stream_id, headers)
        self._flush()
        return call

    async def unary(self, method: str, request: bytes, *, timeout: float = 10.0) -> bytes:
        call = self.open(method, timeout=timeout)
        call.send(request, end=True)
        async with asyncio.timeout(timeout):
            reply = await call.recv()
            if reply is None:
                raise GrpcError(UNAVAILABLE, "no response message")
            await call.recv()  # the status
        return reply

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            try:
                self.conn.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
            self.transport.close()
        self.closed = True
