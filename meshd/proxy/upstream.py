"""Upstream connections: connect (plain or sidecar mTLS with a SPIFFE check) and keep-alive pools.

:func:`wants_mtls` decides the client TLS mode per endpoint from the Cluster (``AUTO``: mTLS iff
the endpoint has an identity, Istio's auto-mTLS; ``ISTIO_MUTUAL``: always; ``DISABLE``: never).
:func:`open_stream` opens one connection for any ``asyncio.Protocol`` (used for TCP forwarding),
verifying after the handshake that the server presents exactly the endpoint's SPIFFE ID (a
mismatch is a connect failure). :class:`Http1Pool` keeps idle HTTP/1.1 connections per
``(address, port, mtls)`` and hands them out LIFO (the warmest first); a connection comes back by
itself (its ``on_idle``) once a request and a keep-alive response have both been carried whole.

Connection-pool limits (``maxConnections``, ``http1MaxPendingRequests``) slot in here later: a
per-key counter checked in :meth:`Http1Pool.acquire`, overflow answered 503 ``UO``.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from typing import TypeVar

from meshd.api.resources import Cluster, Endpoint
from meshd.proxy.http1 import ClientProtocol
from meshd.proxy.http2 import ClientProtocol as H2ClientProtocol
from meshd.proxy.mtls import peer_identity

__all__ = ["ConnectFailure", "H2Pool", "Http1Pool", "open_stream", "wants_mtls"]

P = TypeVar("P", bound=asyncio.Protocol)

PoolKey = tuple[str, int, bool]


class ConnectFailure(Exception):
    """The upstream could not be reached (refused, timed out, TLS or identity failure): Envoy's ``UF``."""


def wants_mtls(cluster: Cluster | None, endpoint: Endpoint) -> bool:
    mode = cluster.tls_mode if cluster is not None else "AUTO"
    if mode == "DISABLE":
        return False
    if mode == "ISTIO_MUTUAL":
        return True
    return bool(endpoint.identity)


async def open_stream(factory: Callable[[], P], host: str, port: int, *, tls: ssl.SSLContext | None,
                      identity: str = "", timeout: float = 10.0) -> tuple[asyncio.Transport, P]:
    """Connect; with ``tls``, check the server's SPIFFE ID equals ``identity`` (when one is expected)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if tls is None:
                transport, protocol = await loop.create_connection(factory, host, port)
            else:
                transport, protocol = await loop.create_connection(factory, host, port, ssl=tls,
                                                                   server_hostname="",
                                                                   ssl_handshake_timeout=timeout)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise ConnectFailure(f"{host}:{port}: {exc or type(exc).__name__}") from None
    if tls is not None and identity:
        seen = peer_identity(transport.get_extra_info("ssl_object"))
        if seen != identity:
            transport.close()
            raise ConnectFailure(f"{host}:{port}: peer identity {seen or 'none'!r} is not {identity!r}")
    return transport, protocol


class Http1Pool:
    """Idle keep-alive HTTP/1.1 connections per upstream endpoint."""

    def __init__(self, *, max_idle_per_key: int = 64) -> None:
        self._idle: dict[PoolKey, list[ClientProtocol]] = {}
        self.max_idle_per_key = max_idle_per_key
        self.opened = 0

    async def acquire(self, host: str, port: int, *, tls: ssl.SSLContext | None, identity: str = "",
                      timeout: float = 10.0) -> ClientProtocol:
        idle = self._idle.get((host, port, tls is not None))
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused += 1
                return conn
        _, protocol = await open_stream(ClientProtocol, host, port, tls=tls, identity=identity, timeout=timeout)
        self.opened += 1
        protocol.on_idle = functools.partial(self.release, host, port, tls is not None)
        return protocol

    def release(self, host: str, port: int, mtls: bool, conn: ClientProtocol) -> None:
        if conn.closed:
            return
        idle = self._idle.setdefault((host, port, mtls), [])
        if len(idle) >= self.max_idle_per_key:
            conn.close()
            return
        idle.append(conn)

    def close_all(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class H2Pool:
    """One multiplexed HTTP/2 connection per upstream endpoint (a second one when the first is full)."""

    def __init__(self) -> None:
        self._conns: dict[PoolKey, list[H2ClientProtocol]] = {}
        self._connecting: dict[PoolKey, asyncio.Future[H2ClientProtocol]] = {}
        self.opened = 0

    async def acquire(self, host: str, port: int, *, tls: ssl.SSLContext | None, identity: str = "",
                      timeout: float = 10.0) -> H2ClientProtocol:
        key = (host, port, tls is not None)
        conns = self._conns.setdefault(key, [])
        conns[:] = [c for c in conns if not c.closed]
        for conn in conns:
            if conn.available:
                conn.reused += 1
                return conn
        pending = self._connecting.get(key)
        if pending is not None:  # another request is connecting: share its connection
            conn = await asyncio.shield(pending)
            conn.reused += 1
            return conn
        future: asyncio.Future[H2ClientProtocol] = asyncio.get_running_loop().create_future()
        self._connecting[key] = future
        try:
            _, conn = await open_stream(H2ClientProtocol, host, port, tls=tls, identity=identity, timeout=timeout)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            self._connecting.pop(key, None)
        future.set_result(conn)
        self.opened += 1
        conns.append(conn)
        return conn

    def close_all(self) -> None:
        for conns in self._conns.values():
            for conn in conns:
                conn.close()
        self._conns.clear()
