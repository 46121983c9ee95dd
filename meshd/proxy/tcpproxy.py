"""Opaque TCP forwarding: two transports spliced together, byte for byte, with no protocol sniffing.

Used for ``tcp``/``tls`` listeners, for pass-through (unknown destinations, Istio's ``ALLOW_ANY``)
and for inbound ports that are not HTTP. :func:`splice` is called with an accepted socket *before
anything is read from it*: the upstream connection is opened first and only then does the
downstream start reading, so server-first protocols (SMTP, MySQL: the server speaks first) work
with no delay -- the server's greeting is forwarded as soon as it arrives.

Transports and protocols rather than streams: ``data_received`` writes straight into the peer
transport (no intermediate queue or task per chunk), and flow control is the transports' own
(a peer whose write buffer fills pauses our reading; ``resume_writing`` resumes it). A half-close
(EOF) is passed on where the transport supports it; TLS transports cannot half-close, so an EOF
there (``close_notify``) closes both sides once written: a TLS client that half-closes before reading
the whole response loses its tail, as asyncio's TLS transport shuts down on EOF.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

from meshd.proxy.telemetry import Telemetry

__all__ = ["Half", "splice"]

log = logging.getLogger(__name__)


class Half(asyncio.Protocol):
    """One side of a splice: what it receives goes to ``peer``'s transport."""

    def __init__(self, counter: list[int] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Half | None = None
        self.counter = counter
        """Bytes received on this side are added to ``counter[0]``."""
        self.closed = asyncio.get_running_loop().create_future()
        self.eof = False
        self._pending: list[bytes] = []

    def link(self, peer: Half) -> None:
        """Connect to ``peer`` and pass on what arrived before it existed."""
        self.peer = peer
        if self._pending and peer.transport is not None:
            peer.transport.write(b"".join(self._pending))
        self._pending.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.counter is not None:
            self.counter[0] += len(data)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self._pending.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None:
            return None
        own_tls = self.transport is not None and self.transport.get_extra_info("sslcontext") is not None
        if not own_tls and peer.transport.can_write_eof():
            peer.transport.write_eof()
            if peer.eof:
                self._close_both()
            return True  # keep our write side open for the peer's remaining bytes
        self._close_both()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def _close_both(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


Connector = Callable[[Callable[[], Half]], Awaitable[tuple[asyncio.Transport, Half]]]


async def splice(sock: socket.socket, connect: Connector, telemetry: Telemetry | None, labels: tuple[str, ...],
                 *, server_ssl: ssl.SSLContext | None = None, admit: Callable[[Any], bool] | None = None) -> None:
    """Forward between the accepted ``sock`` and what ``connect`` opens, until both sides are closed.

    With ``server_ssl``, the downstream is a TLS server side (inbound mTLS) -- the handshake runs
    before the upstream is opened, so the peer is verified first. ``admit`` (authorization) is
    asked with the TLS object (``None`` on plaintext) before the upstream is opened: ``False``
    closes the downstream (counted as a connection opened and closed, no bytes).
    """
    loop = asyncio.get_running_loop()
    series = telemetry.tcp_series(labels) if telemetry is not None else None
    received = [0]
    sent = [0]
    down = Half(received)
    if server_ssl is not None:
        await loop.connect_accepted_socket(lambda: down, sock, ssl=server_ssl)
        assert down.transport is not None
        down.transport.pause_reading()
    if admit is not None and not admit(down.transport.get_extra_info("ssl_object") if down.transport else None):
        if series is not None:
            series.opened += 1
            series.closed += 1
        if down.transport is not None:
            down.transport.close()
        else:
            sock.close()
        return
    try:
        _, up = await connect(lambda: Half(sent))
    except Exception as exc:
        log.debug("tcp upstream connect failed: %s", exc)
        if down.transport is not None:
            down.transport.close()
        else:
            sock.close()
        return
    if series is not None:
        series.opened += 1
    if server_ssl is None:
        await loop.connect_accepted_socket(lambda: down, sock)
    down.link(up)
    up.link(down)
    if up.closed.done() and down.transport is not None:
        down.transport.close()
    if server_ssl is not None:
        assert down.transport is not None
        down.transport.resume_reading()
    try:
        await asyncio.gather(down.closed, up.closed)
    finally:
        if series is not None:
            series.closed += 1
            series.received += received[0]
            series.sent += sent[0]
