"""kubectl's SPDY/3.1 streams at the apiserver, translated to the kubelet's WebSocket protocols.

``apiserver.proxy`` calls in here when a client speaks SPDY: ``Upgrade: SPDY/3.1`` on
``pods/exec``, ``pods/attach`` and ``pods/portforward`` (kubectl <= 1.29 for exec, attach and
cp; <= 1.30 for port-forward; the fallback of later ones), and a WebSocket with subprotocol
``SPDY/3.1+portforward.k8s.io`` on ``pods/portforward`` (kubectl 1.31+: the SPDY bytes ride
in binary messages). The SPDY session itself is ``machinery.spdy``; the kubelet only speaks
WebSocket, so each session is translated:

* remote command (exec, attach): the client opens streams typed by the ``streamType`` header
  (``error``, ``stdin``, ``stdout``, ``stderr``, ``resize``) and :func:`serve_remote_command`
  relays them to ONE kubelet WebSocket speaking ``v5.channel.k8s.io``: stdin data → channel 0
  and its FIN → the v5 close of channel 0; resize JSON → channel 4; channels 1/2 → stdout/
  stderr; the channel-3 Status → the error stream (kubectl's v4 error decoding: a Failure
  Status with an ``ExitCode`` cause is the exit code). When the kubelet closes, every stream
  gets its FIN and the session its GOAWAY.
* port-forward: per forwarded connection the client opens an ``error`` and a ``data`` stream
  carrying ``port`` and ``requestID``; :func:`serve_port_forward` pairs them and opens one
  kubelet port-forward WebSocket per pair (``kubelet.portforward``'s protocol with one port):
  data both ways, the client's FIN on the data stream → the kubelet's half-close message,
  the kubelet's error text → the error stream, the kubelet's close → FIN on both streams.

:func:`accept_spdy_upgrade` answers the plain upgrade (101 with ``Upgrade: SPDY/3.1`` and the
chosen ``X-Stream-Protocol-Version``) and takes the connection over from aiohttp; the caller
dials the kubelet first, so a refusal (no such container, a container that does not run) is
still an HTTP Status -- kubectl then says why, or (attach) falls back to the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
from aiohttp import WSMsgType, web

from machinery.spdy import SpdySession, SpdyStream

__all__ = [
    "PORTFORWARD_PROTOCOL",
    "REMOTECOMMAND_PROTOCOLS",
    "TUNNEL_PROTOCOL",
    "KubeletDial",
    "SpdyConnection",
    "accept_spdy_upgrade",
    "serve_port_forward",
    "serve_remote_command",
    "websocket_connection",
]

log = logging.getLogger(__name__)

REMOTECOMMAND_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
"""Remote-command stream protocols served over SPDY (kubectl 1.27-1.29 offer v4 first)."""
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
"""kubectl 1.31+'s port-forward: SPDY frames inside WebSocket binary messages."""

_STREAM_WAIT = 30.0
_HANGUP_WAIT = 10.0
_STDIN, _STDOUT, _STDERR, _ERROR, _RESIZE, _CLOSE = 0, 1, 2, 3, 4, 0xFF

KubeletDial = Callable[[str, list[tuple[str, str]]], Awaitable[aiohttp.ClientWebSocketResponse]]
"""``(path, query) → an open WebSocket to the pod's kubelet`` (its protocol fixed by the caller)."""


class SpdyConnection:
    """The bytes of a SPDY session: ``read`` (``b""`` at the end), ``write``, ``close``."""

    def __init__(self, read: Callable[[], Awaitable[bytes]], write: Callable[[bytes], Awaitable[None]],
                 close: Callable[[], Awaitable[None]], response: web.StreamResponse) -> None:
        self.read, self.write, self.close = read, write, close
        self.response = response
        """What the request handler returns (already sent: aiohttp writes nothing more)."""


class _Feeder:
    """Takes the place of aiohttp's parser on a taken-over connection: bytes into a reader."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


def offered_versions(request: web.Request) -> list[str]:
    """The ``X-Stream-Protocol-Version`` values (repeated headers or comma lists)."""
    return [v.strip() for header in request.headers.getall("X-Stream-Protocol-Version", [])
            for v in header.split(",") if v.strip()]


async def accept_spdy_upgrade(request: web.Request, protocol: str) -> SpdyConnection:
    """Answer 101 Switching Protocols and own the connection's bytes from now on.

    aiohttp takes a connection over for WebSocket the same way: the request handler's protocol
    is given a payload parser (here one feeding a ``StreamReader`` that pauses the transport when
    it is full), keep-alive is turned off, and writes go to the transport, waiting on the
    protocol's drain when the transport asks to pause."""
    response = web.StreamResponse(status=101, headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                                       "X-Stream-Protocol-Version": protocol})
    response.force_close()
    await response.prepare(request)
    transport, handler = request.transport, request.protocol
    if transport is None or handler is None:
        raise ConnectionResetError("the client went away during the upgrade")
    reader = asyncio.StreamReader(limit=1 << 20)
    reader.set_transport(transport)
    handler.set_parser(cast(Any, _Feeder(reader)))
    handler.keep_alive(False)

    async def read() -> bytes:
        return await reader.read(1 << 16)

    async def write(data: bytes) -> None:
        if transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        transport.write(data)
        await handler._drain_helper()

    async def close() -> None:
        transport.close()

    return SpdyConnection(read, write, close, response)


def websocket_connection(ws: web.WebSocketResponse) -> SpdyConnection:
    """The SPDY bytes tunnelled in a prepared WebSocket's binary messages."""

    async def read() -> bytes:
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return b""

    async def write(data: bytes) -> None:
        await ws.send_bytes(data)

    async def close() -> None:
        await ws.close()

    return SpdyConnection(read, write, close, ws)


class _Streams:
    """Collects the client's streams as they open, keyed by (request id, stream type)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], SpdyStream] = {}
        self.changed = asyncio.Event()

    def add(self, stream: SpdyStream) -> None:
        """Remote-command streams carry no ``requestID``: theirs is ``""``."""
        self.by_key[(stream.header("requestid"), stream.header("streamtype"))] = stream
        self.changed.set()

    async def wait_for(self, kinds: set[str], request_id: str = "") -> dict[str, SpdyStream]:
        while not kinds <= {kind for (rid, kind) in self.by_key if rid == request_id}:
            self.changed.clear()
            await self.changed.wait()
        return {kind: self.by_key[(request_id, kind)] for kind in kinds}


async def _guarded(coro: Awaitable[None], what: str) -> None:
    try:
        await coro
    except (ConnectionError, aiohttp.ClientError, RuntimeError) as err:
        log.debug("%s ended: %s", what, err)


async def serve_remote_command(connection: SpdyConnection, kubelet: aiohttp.ClientWebSocketResponse, *,
                               stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
    """Relay a remote-command SPDY session to an open kubelet exec/attach WebSocket (v5)."""
    streams = _Streams()
    session = SpdySession(connection.read, connection.write, streams.add)
    reading = asyncio.create_task(session.run(), name="spdy-remotecommand-read")
    kinds = {"error"} | {k for k, on in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr and not tty),
                                         ("resize", tty)) if on}
    tasks: list[asyncio.Task[None]] = []
    try:
        waiting = asyncio.create_task(streams.wait_for(kinds), name="spdy-streams")
        await asyncio.wait([waiting, reading], timeout=_STREAM_WAIT, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            log.info("remote command: the client did not open the streams %s", sorted(kinds))
            return
        opened = waiting.result()
        if "stdin" in opened:
            tasks.append(asyncio.create_task(_guarded(_stdin_to_kubelet(opened["stdin"], kubelet), "stdin"),
                                             name="spdy-stdin"))
        if "resize" in opened:
            tasks.append(asyncio.create_task(_guarded(_resize_to_kubelet(opened["resize"], kubelet), "resize"),
                                             name="spdy-resize"))
        output = asyncio.create_task(_guarded(_kubelet_to_streams(kubelet, opened), "remote command output"),
                                     name="spdy-output")
        tasks.append(output)
        await asyncio.wait([output, reading], return_when=asyncio.FIRST_COMPLETED)
        if output.done():  # the command ended (not the client): close our halves for kubectl to finish
            for stream in opened.values():
                await stream.close()
            # kubectl hangs up once it has read everything; closing first could drop queued frames.
            await asyncio.wait([reading], timeout=_HANGUP_WAIT)
    finally:
        for stream in streams.by_key.values():
            stream.abandon()
        for task in (*tasks, reading):
            task.cancel()
        await asyncio.gather(*tasks, reading, return_exceptions=True)
        await session.close()
        with contextlib.suppress(Exception):
            await kubelet.close()
        with contextlib.suppress(Exception):
            await connection.close()


async def _stdin_to_kubelet(stream: SpdyStream, kubelet: aiohttp.ClientWebSocketResponse) -> None:
    while data := await stream.read():
        await kubelet.send_bytes(bytes([_STDIN]) + data)
    await kubelet.send_bytes(bytes([_CLOSE, _STDIN]))


async def _resize_to_kubelet(stream: SpdyStream, kubelet: aiohttp.ClientWebSocketResponse) -> None:
    pending = b""
    while data := await stream.read():
        pending += data
        while b"\n" in pending:  # kubectl writes one JSON object per line
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                await kubelet.send_bytes(bytes([_RESIZE]) + line.strip())


async def _kubelet_to_streams(kubelet: aiohttp.ClientWebSocketResponse, opened: dict[str, SpdyStream]) -> None:
    targets = {_STDOUT: opened.get("stdout"), _STDERR: opened.get("stderr"), _ERROR: opened.get("error")}
    async for msg in kubelet:
        if msg.type != WSMsgType.BINARY or not msg.data:
            continue
        target = targets.get(msg.data[0])
        if target is not None and not target.local_closed:
            await target.write(bytes(msg.data[1:]))


async def serve_port_forward(connection: SpdyConnection, dial: KubeletDial, *, path: str) -> None:
    """Relay a port-forward SPDY session: one kubelet WebSocket per (error, data) stream pair."""
    streams = _Streams()
    pairs: dict[str, asyncio.Task[None]] = {}

    def on_stream(stream: SpdyStream) -> None:
        streams.add(stream)
        request_id = stream.header("requestid")
        if request_id not in pairs:
            pairs[request_id] = asyncio.create_task(
                _forward_pair(streams, request_id, dial, path), name=f"portforward request {request_id}")

    session = SpdySession(connection.read, connection.write, on_stream)
    try:
        await session.run()
    finally:
        for task in pairs.values():
            task.cancel()
        await asyncio.gather(*pairs.values(), return_exceptions=True)
        await session.close()
        with contextlib.suppress(Exception):
            await connection.close()


async def _forward_pair(streams: _Streams, request_id: str, dial: KubeletDial, path: str) -> None:
    try:
        await _forward_opened_pair(streams, request_id, dial, path)
    finally:  # nobody reads these streams any more: the session must not wait for them
        for (rid, _kind), stream in streams.by_key.items():
            if rid == request_id:
                stream.abandon()


async def _forward_opened_pair(streams: _Streams, request_id: str, dial: KubeletDial, path: str) -> None:
    try:
        pair = await asyncio.wait_for(streams.wait_for({"error", "data"}, request_id), _STREAM_WAIT)
    except TimeoutError:
        log.info("port-forward request %r: the client opened only part of the stream pair", request_id)
        return
    error, data = pair["error"], pair["data"]
    port = data.header("port")
    try:
        kubelet = await dial(path, [("ports", port)])
    except Exception as err:  # an unreachable kubelet is this connection's error, not the session's
        with contextlib.suppress(ConnectionError):
            await error.write(f"error forwarding port {port}: {err}".encode())
        await error.close()
        await data.close()
        return
    to_pod = asyncio.create_task(_guarded(_data_to_kubelet(data, kubelet), "port-forward input"),
                                 name=f"portforward-in {request_id}")
    try:
        await _guarded(_kubelet_to_pair(kubelet, data, error), "port-forward output")
    finally:
        to_pod.cancel()
        await asyncio.gather(to_pod, return_exceptions=True)
        with contextlib.suppress(Exception):
            await kubelet.close()
        await data.close()
        await error.close()


async def _data_to_kubelet(data: SpdyStream, kubelet: aiohttp.ClientWebSocketResponse) -> None:
    while chunk := await data.read():
        await kubelet.send_bytes(bytes([0]) + chunk)
    await kubelet.send_bytes(bytes([_CLOSE, 0]))  # the client is done sending: half-close


async def _kubelet_to_pair(kubelet: aiohttp.ClientWebSocketResponse, data: SpdyStream, error: SpdyStream) -> None:
    primed = {0: False, 1: False}  # each channel starts with the port number
    async for msg in kubelet:
        if msg.type != WSMsgType.BINARY or not msg.data or msg.data[0] not in primed:
            continue
        channel = msg.data[0]
        if not primed[channel]:
            primed[channel] = True
            continue
        target = data if channel == 0 else error
        if not target.local_closed:
            await target.write(bytes(msg.data[1:]))
