"""The outbound (15001) and inbound (15006) listeners: accept, find the original destination, dispatch.

Outbound, per accepted connection (the app dialled ``ClusterIP:port``; iptables redirected it):

* original destination from ``SO_ORIGINAL_DST`` (:func:`so_original_dst`) or the injected lookup;
* a :class:`Listener` for that address → ``http``/``http2``/``grpc``: HTTP processing
  (:mod:`meshd.proxy.http1`, :mod:`meshd.proxy.httpproxy`); ``tcp``/``tls``: opaque forwarding to
  an endpoint of its cluster (mTLS per the cluster's TLS mode), trying up to three endpoints;
* no listener: pass-through to the original destination as plain TCP (Istio's ``ALLOW_ANY``);
* test mode (``explicit_destination_header``) with no original destination: HTTP, each request
  naming its ``ClusterIP:port`` in ``x-kubelab-original-dst``.

Inbound, per accepted connection (a peer sidecar or a plain client dialled ``podIP:port``):

* the port's ``mtls_mode`` (the Inbound resource; other ports use its default);
* ``STRICT``: TLS handshake required (client certificate chained to the mesh root, else refused);
  ``DISABLE``: plaintext; ``PERMISSIVE``: the first byte decides (``0x16``, a TLS handshake record,
  means TLS: mTLS when the ClientHello offers ALPN ``istio``, else TLS meant for the app, passed
  through as bytes). Istio's known limitation applies to a *plaintext server-first* client on a PERMISSIVE
  port: nothing arrives to decide on, so the proxy waits ``permissive_detect_seconds`` (100 ms) and
  then treats the connection as plaintext -- a one-off delay instead of Istio's hang;
* then HTTP (``http`` ports, with ``X-Forwarded-Client-Cert``; authorization per request) or
  opaque TCP to the app on ``app_host:<port>``, once the workload's AuthorizationPolicies
  (:mod:`meshd.proxy.authz`) admit the connection: a denied one is closed before the app is
  dialled (Envoy's network RBAC filter).

Nothing is read from an accepted socket before its upstream is connected, except the one peeked
byte on PERMISSIVE ports. Drain (:meth:`Listeners.drain`) stops accepting and closes idle HTTP
connections; in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from meshd.api.identity import MESH_ALPN
from meshd.api.resources import Cluster
from meshd.proxy.authz import Attributes, split_host_port
from meshd.proxy.config import ConfigStore
from meshd.proxy.http1 import ServerProtocol
from meshd.proxy.http2 import Detect
from meshd.proxy.http2 import ServerProtocol as H2ServerProtocol
from meshd.proxy.httpproxy import ConnContext, HttpProxy
from meshd.proxy.mtls import client_hello_alpn, peer_identity
from meshd.proxy.settings import ProxySettings
from meshd.proxy.tcpproxy import Half, splice
from meshd.proxy.telemetry import Telemetry
from meshd.proxy.upstream import open_stream, wants_mtls

__all__ = ["Listeners", "so_original_dst"]

log = logging.getLogger(__name__)

SO_ORIGINAL_DST = 80
HTTP_PROTOCOLS = frozenset({"http", "http2", "grpc"})


def so_original_dst(sock: Any) -> tuple[str, int] | None:
    """The pre-REDIRECT destination of ``sock`` (Linux netfilter, IPv4)."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


def _record_peer(ctx: ConnContext, transport: asyncio.BaseTransport) -> None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        ctx.ssl_object = ssl_object
        ctx.peer_identity = peer_identity(ssl_object)


class _InboundHttp(ServerProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        _record_peer(self.context, transport)


class Listeners:
    """Both traffic listeners and their connections."""

    def __init__(self, settings: ProxySettings, store: ConfigStore, certs: Any, http: HttpProxy,
                 telemetry: Telemetry) -> None:
        self.settings = settings
        self.store = store
        self.certs = certs
        self.http = http
        self.telemetry = telemetry
        self.outbound_port = 0
        self.inbound_port = 0
        self.permissive_detect_seconds = 0.1
        self._sockets: dict[str, socket.socket] = {}
        self._acceptors: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.http_connections: set[Any] = set()
        """Downstream HTTP/1.1 and HTTP/2 server protocols (for drain)."""

    def _bind(self, name: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.settings.bind_address, port))
        sock.listen(1024)
        sock.setblocking(False)
        self._sockets[name] = sock
        return sock

    async def start(self) -> None:
        out = self._bind("outbound", self.settings.outbound_port)
        inn = self._bind("inbound", self.settings.inbound_port)
        self.outbound_port = out.getsockname()[1]
        self.inbound_port = inn.getsockname()[1]
        self._acceptors["outbound"] = self._spawn(self._accept("outbound", out, self._outbound), "outbound-accept")
        self._acceptors["inbound"] = self._spawn(self._accept("inbound", inn, self._inbound), "inbound-accept")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def _accept(self, name: str, listen: socket.socket, handle: Any) -> None:
        loop = asyncio.get_running_loop()
        while name in self._sockets:
            try:
                sock, _ = await loop.sock_accept(listen)
            except OSError as exc:
                if name not in self._sockets:
                    return
                log.warning("accept: %s", exc)
                await asyncio.sleep(0.05)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(handle(sock), "connection")

    def _original_dst(self, sock: socket.socket) -> tuple[str, int] | None:
        lookup = self.settings.original_dst
        return lookup(sock) if lookup is not None else so_original_dst(sock)

    def _track(self, proto: Any) -> Any:
        self.http_connections.add(proto)
        proto.on_close = self.http_connections.discard
        return proto

    def _http_factory(self, handler: Any, ctx: ConnContext, protocol: str, inbound: bool) -> Any:
        """The protocol for a downstream HTTP connection: HTTP/1.1, or detection on HTTP/2-capable ports."""
        h1_class = _InboundHttp if inbound else ServerProtocol
        if protocol not in ("http2", "grpc"):
            return lambda: self._track(h1_class(handler, context=ctx))
        on_connect = (lambda transport: _record_peer(ctx, transport)) if inbound else None
        return lambda: Detect(lambda: self._track(H2ServerProtocol(handler, context=ctx)),
                              lambda: self._track(h1_class(handler, context=ctx)), on_connect)

    @staticmethod
    def _addr(sock: socket.socket, peer: bool) -> str:
        try:
            host, port = sock.getpeername() if peer else sock.getsockname()
        except OSError:
            return "-"
        return f"{host}:{port}"

    # --- outbound --------------------------------------------------------------------------------

    async def _outbound(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        dst = self._original_dst(sock)
        local, remote = self._addr(sock, False), self._addr(sock, True)
        if dst is None or (dst == ("127.0.0.1", self.outbound_port) and self.settings.explicit_destination_header):
            if not self.settings.explicit_destination_header:
                sock.close()
                return
            ctx = ConnContext("outbound", local=local, remote=remote)
            # the listener is per request here: detect HTTP/2 (gRPC) or HTTP/1.1 from the first bytes
            await loop.connect_accepted_socket(self._http_factory(self.http.outbound, ctx, "http2", False), sock)
            return
        listener = self.store.snapshot.listener(*dst)
        if listener is not None and listener.protocol in HTTP_PROTOCOLS:
            ctx = ConnContext("outbound", listener=listener, local=local, remote=remote)
            await loop.connect_accepted_socket(self._http_factory(self.http.outbound, ctx, listener.protocol, False),
                                               sock)
            return
        if listener is not None:
            balancer = self.store.snapshot.clusters.get(listener.cluster)
            if balancer is None:
                sock.close()
                return
            cluster: Cluster = balancer.cluster
            labels = self._tcp_labels("source", cluster.service, "unknown")

            async def connect_cluster(factory: Any) -> tuple[asyncio.Transport, Half]:
                tried: list[Any] = []
                error: Exception = ConnectionError(f"{cluster.name}: no endpoint")
                for _ in range(3):
                    endpoint = balancer.pick(tried)
                    if endpoint is None:
                        break
                    tried.append(endpoint)
                    mtls = wants_mtls(cluster, endpoint)
                    contexts = self.certs.contexts if self.certs is not None else None
                    if mtls and contexts is None:
                        continue
                    try:
                        opened = await open_stream(factory, endpoint.address, endpoint.port,
                                                   tls=contexts.client if mtls and contexts else None,
                                                   identity=endpoint.identity if mtls else "",
                                                   timeout=cluster.connect_timeout_ms / 1000)
                    except Exception as exc:
                        error = exc
                        balancer.report(endpoint, 503)  # Envoy's tcp_proxy: a connect failure counts as a 5xx
                    else:
                        balancer.report(endpoint, 200)
                        return opened
                raise error

            await splice(sock, connect_cluster, self.telemetry, labels)
            return
        # ALLOW_ANY: plain TCP to where the app was going.
        host, port = dst

        async def connect_direct(factory: Any) -> tuple[asyncio.Transport, Half]:
            return await open_stream(factory, host, port, tls=None, timeout=10.0)

        await splice(sock, connect_direct, self.telemetry, self._tcp_labels("source", "PassthroughCluster", "unknown"))

    def _tcp_labels(self, reporter: str, service: str, security: str, peer: str = "unknown") -> tuple[str, ...]:
        """Labels in :data:`meshd.proxy.telemetry.TCP_LABELS` order."""
        me = self.http.me
        mine = (me.workload, me.namespace, self.http.identity, me.app, me.version, me.canonical_service,
                me.canonical_revision)
        other = ("unknown", "unknown", peer, "unknown", "unknown", "unknown", "latest")
        src, dst = (mine, other) if reporter == "source" else (other, mine)
        parts = service.split(".")
        return (reporter, *src, *dst[:5], service, parts[0], parts[1] if len(parts) > 2 else "unknown", *dst[5:],
                "tcp", "-", security)

    # --- inbound ---------------------------------------------------------------------------------

    async def _inbound(self, sock: socket.socket) -> None:
        dst = self._original_dst(sock)
        if dst is None:
            sock.close()
            return
        port = dst[1]
        if port in (self.inbound_port, self.outbound_port):
            sock.close()  # dialled the proxy's own port directly: forwarding it to the app would loop
            return
        snapshot = self.store.snapshot
        port_config = snapshot.inbound_ports.get(port)
        mode = port_config.mtls_mode if port_config is not None else snapshot.inbound.default_mtls_mode
        protocol = port_config.protocol if port_config is not None else "tcp"
        contexts = self.certs.contexts if self.certs is not None else None
        if mode == "DISABLE" or (contexts is None and mode == "PERMISSIVE"):
            tls = False
        elif mode == "STRICT":
            tls = True
        else:
            first = await self._peek(sock)
            if first == b"":
                sock.close()
                return
            tls = first == b"\x16"
            if tls:
                try:
                    hello = sock.recv(4096, socket.MSG_PEEK)
                except OSError:
                    hello = b""
                offered = client_hello_alpn(hello)
                if offered is not None and MESH_ALPN not in offered:
                    tls = False  # TLS for the app itself (not a sidecar): passed through untouched
                    protocol = "tcp"
        if tls and contexts is None:
            sock.close()
            return
        ctx = ConnContext("inbound", port=port, protocol=protocol, local=self._addr(sock, False),
                          remote=self._addr(sock, True))
        loop = asyncio.get_running_loop()
        server_ssl = contexts.server if tls and contexts is not None else None
        if protocol in HTTP_PROTOCOLS:
            try:
                await loop.connect_accepted_socket(
                    self._http_factory(self.http.inbound, ctx, protocol, True), sock, ssl=server_ssl,
                    ssl_handshake_timeout=10.0 if server_ssl else None)
            except (OSError, ConnectionError) as exc:
                log.debug("inbound handshake on port %d refused: %s", port, exc)
                sock.close()
            return
        app = (self.settings.app_host, port)
        labels = self._tcp_labels("destination", "unknown", "mutual_tls" if tls else "none")

        async def connect_app(factory: Any) -> tuple[asyncio.Transport, Half]:
            return await open_stream(factory, app[0], app[1], tls=None, timeout=10.0)

        authz = snapshot.authz
        admit: Callable[[Any], bool] | None = None
        if not authz.empty:
            source_ip, _ = split_host_port(ctx.remote)
            destination_ip, _ = split_host_port(ctx.local)

            def authorize(ssl_object: Any) -> bool:
                decision = authz.check(Attributes(http=False, principal=peer_identity(ssl_object),
                                                  source_ip=source_ip, destination_ip=destination_ip,
                                                  destination_port=port))
                if not decision.allowed:
                    log.info("inbound tcp from %s to port %d closed: %s", ctx.remote, port, decision.details)
                return decision.allowed
            admit = authorize

        try:
            await splice(sock, connect_app, self.telemetry, labels, server_ssl=server_ssl, admit=admit)
        except (OSError, ConnectionError) as exc:
            log.debug("inbound tcp on port %d failed: %s", port, exc)
            sock.close()

    async def _peek(self, sock: socket.socket) -> bytes | None:
        """The first byte without consuming it; ``None`` when the client stays silent (server-first)."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(sock.fileno(), readable)
        try:
            await asyncio.wait_for(ready, self.permissive_detect_seconds)
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(sock.fileno())
        try:
            return sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return b""

    # --- lifecycle -------------------------------------------------------------------------------

    def stop_accepting(self, *names: str) -> None:
        """Close the named listening sockets (all when none is named)."""
        loop = asyncio.get_running_loop()
        for name in names or tuple(self._sockets):
            sock = self._sockets.pop(name, None)
            acceptor = self._acceptors.pop(name, None)
            if acceptor is not None:
                acceptor.cancel()
            if sock is not None:
                # The pending accept's reader must leave the selector before the fd is closed (and reused).
                with contextlib.suppress(OSError, ValueError, NotImplementedError):
                    loop.remove_reader(sock.fileno())
                with contextlib.suppress(OSError):
                    sock.close()

    def drain(self) -> None:
        """Stop accepting inbound connections; close idle inbound HTTP connections, busy ones after their response.

        Outbound keeps working, so an app that is shutting down can still finish its own calls.
        """
        self.stop_accepting("inbound")
        for proto in list(self.http_connections):
            if proto.context is not None and proto.context.direction == "inbound":
                proto.close_when_idle()

    def in_flight(self) -> int:
        return sum(p.in_flight for p in self.http_connections)

    async def close(self) -> None:
        self.stop_accepting()
        for task in list(self._tasks):
            task.cancel()
        for proto in list(self.http_connections):
            if proto.transport is not None:
                proto.transport.close()
        self.http.pool.close_all()
        self.http.h2pool.close_all()
