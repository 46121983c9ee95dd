"""The Discovery server: one gRPC stream per proxy, xDS state-of-the-world semantics.

Serves ``/kubelab.mesh.v1.Discovery/Stream`` (:mod:`meshd.api.protocol`) behind the TLS front
(:mod:`meshd.control.tlsfront`) on port 15012. Per stream:

1. the first request must carry a ``Node``; its namespace and service account must be those of
   the client certificate's SPIFFE ID (``PERMISSION_DENIED`` otherwise, or ``UNAUTHENTICATED``
   without a certificate);
2. each request is classified as Istio's ``ShouldRespond`` does:
   * ``error_detail`` set: a NACK -- recorded (message, version) when its nonce is the last one
     sent for the type, nothing is sent, the proxy keeps its previous configuration;
   * empty nonce: the proxy (re)subscribes to the type -- answered with the current resources
     (a reconnecting proxy is resynced);
   * a nonce that is not the last one sent for the type: stale, ignored;
   * otherwise an ACK: ``version_info`` is recorded as applied;
3. on changes (:meth:`DiscoveryServer.changed`, debounced: :mod:`meshd.control.debounce`) every
   proxy is compiled again and sent, in :data:`meshd.api.resources.PUSH_ORDER`, each subscribed
   type whose version (a content hash) differs from the one last sent.

Every response gets a fresh nonce. :class:`meshd.control.proxystatus.ProxyRecord` keeps the
bookkeeping for ``proxy-status``; NACKs are also handed to ``on_nack`` (events, status).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import grpc.aio  # type: ignore[import-untyped,unused-ignore]

from meshd.api.identity import SpiffeId
from meshd.api.protocol import DISCOVERY_SERVICE, DiscoveryRequest, DiscoveryResponse, Node, deserializer, serializer
from meshd.api.resources import PUSH_ORDER, TYPES
from meshd.control.compile.proxy import ProxyConfig
from meshd.control.compile.scope import ProxyNode
from meshd.control.debounce import Debouncer
from meshd.control.metrics import MeshdMetrics
from meshd.control.proxystatus import ProxyRecord

__all__ = ["Connection", "DiscoveryServer", "NackHandler"]

log = logging.getLogger(__name__)

NackHandler = Callable[["Connection", str, str, ProxyConfig | None], None]
"""(connection, type URL, message, the config whose response was refused)."""


class _Refused(Exception):
    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Connection:
    """One proxy's stream."""

    id: str
    node: Node
    proxy: ProxyNode
    record: ProxyRecord
    queue: asyncio.Queue[DiscoveryResponse | None] = field(default_factory=asyncio.Queue)
    sent: dict[str, ProxyConfig] = field(default_factory=dict)
    """Per type, the config of the last response sent (a NACK refers to it)."""


class DiscoveryServer:
    def __init__(self, compile_proxy: Callable[[ProxyNode], ProxyConfig], metrics: MeshdMetrics, *,
                 identity_of_peer: Callable[[str], SpiffeId | None], debounce_quiet: float = 0.1,
                 debounce_max: float = 1.0, on_nack: NackHandler | None = None) -> None:
        self.compile = compile_proxy
        self.metrics = metrics
        self.identity_of_peer = identity_of_peer
        self.on_nack = on_nack
        self.connections: dict[str, Connection] = {}
        self.debouncer = Debouncer(self._push_all, quiet=debounce_quiet, max_wait=debounce_max)
        self._nonces = itertools.count(1)
        self._ids = itertools.count(1)
        self.pushes = 0
        """Push passes run (each after a debounced burst of changes)."""
        self.serving = asyncio.Event()
        """Set once the model has synced: a stream opened earlier waits, so a proxy never gets the
        configuration of an empty cache (it would drop every route it has)."""

    # -- wiring ---------------------------------------------------------------------------------

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(DISCOVERY_SERVICE, {"Stream": grpc.stream_stream_rpc_method_handler(
            self.stream, request_deserializer=deserializer(DiscoveryRequest), response_serializer=serializer)})

    def start(self) -> None:
        self.debouncer.start()
        self.serving.set()

    async def stop(self) -> None:
        await self.debouncer.stop()
        for connection in list(self.connections.values()):
            connection.queue.put_nowait(None)

    def changed(self) -> None:
        """Something a proxy may see changed: push (debounced)."""
        self.debouncer.trigger()

    def records(self) -> list[ProxyRecord]:
        return [c.record for c in self.connections.values()]

    # -- one stream -----------------------------------------------------------------------------

    async def stream(self, requests: AsyncIterator[DiscoveryRequest],
                     context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[DiscoveryResponse]:
        await self.serving.wait()
        iterator = requests.__aiter__()
        try:
            first = await anext(iterator)
        except StopAsyncIteration:
            return
        try:
            connection = self._connect(first, context.peer())
        except _Refused as exc:
            log.info("discovery: refused %s: %s", context.peer(), exc)
            await context.abort(exc.code, str(exc))
            return
        self.connections[connection.id] = connection
        self.metrics.proxies.set(len(self.connections))
        log.info("discovery: %s connected (%s)", connection.node.id, connection.record.identity)
        reader = asyncio.create_task(self._read(connection, first, iterator), name=f"discovery:{connection.id}")
        try:
            while True:
                response = await connection.queue.get()
                if response is None:
                    return
                yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.connections.pop(connection.id, None)
            self.metrics.proxies.set(len(self.connections))
            log.info("discovery: %s disconnected", connection.node.id)

    def _connect(self, first: DiscoveryRequest, peer: str) -> Connection:
        node = first.node
        if node is None:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry the node")
        identity = self.identity_of_peer(peer)
        if identity is None:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "a workload certificate is required")
        if identity.namespace != node.namespace or identity.service_account != node.service_account:
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED,
                           f"node {node.namespace}/{node.service_account} does not match the certificate's "
                           f"identity {identity.uri}")
        proxy = ProxyNode(namespace=node.namespace, pod=node.pod, service_account=node.service_account,
                          labels=dict(node.labels), ip=node.ip)
        connection_id = f"{node.id}-{next(self._ids)}"
        record = ProxyRecord(node_id=node.id, pod=node.pod, namespace=node.namespace, identity=identity.uri)
        return Connection(id=connection_id, node=node, proxy=proxy, record=record)

    async def _read(self, connection: Connection, first: DiscoveryRequest,
                    iterator: AsyncIterator[DiscoveryRequest]) -> None:
        try:
            self._on_request(connection, first)
            async for request in iterator:
                self._on_request(connection, request)
        except Exception as exc:  # a broken stream (reset, bad message): close it
            log.debug("discovery: %s: stream ended: %s", connection.node.id, exc)
        finally:
            connection.queue.put_nowait(None)

    def _on_request(self, connection: Connection, request: DiscoveryRequest) -> None:
        type_url = request.type_url
        if type_url not in TYPES:
            log.info("discovery: %s asked for unknown type %s", connection.node.id, type_url)
            return
        state = connection.record.state(type_url)
        if request.error_detail is not None:
            if request.response_nonce == state.sent_nonce:
                state.nacked_nonce, state.nack_message = state.sent_nonce, request.error_detail.message
                state.nack_version = state.sent_version
                self.metrics.rejects.labels(type_url.rsplit(".", 1)[-1]).inc()
                log.warning("discovery: %s NACKed %s %s: %s", connection.node.id, type_url, state.sent_version,
                            request.error_detail.message)
                if self.on_nack is not None:
                    self.on_nack(connection, type_url, request.error_detail.message, connection.sent.get(type_url))
            return
        if not request.response_nonce:
            state.subscribed = True
            if request.version_info:
                state.acked_version = request.version_info
            self._send(connection, [type_url], force=True)
            return
        if request.response_nonce != state.sent_nonce:
            return  # stale: answers a response that has been superseded
        state.acked_nonce, state.acked_version = request.response_nonce, request.version_info

    # -- pushing --------------------------------------------------------------------------------

    def _send(self, connection: Connection, types: list[str], *, force: bool = False,
              config: ProxyConfig | None = None) -> int:
        if config is None:
            try:
                config = self.compile(connection.proxy)
            except Exception:
                log.exception("discovery: compiling for %s failed", connection.node.id)
                return 0
        sent = 0
        for type_url in PUSH_ORDER:
            if type_url not in types:
                continue
            state = connection.record.state(type_url)
            version = config.versions[type_url]
            if not force and version == state.sent_version:
                continue
            nonce = f"{next(self._nonces):x}"
            state.sent_version, state.sent_nonce, state.sent_at = version, nonce, time.time()
            connection.sent[type_url] = config
            connection.queue.put_nowait(DiscoveryResponse(type_url=type_url, version_info=version, nonce=nonce,
                                                          resources=config.resources[type_url]))
            self.metrics.pushes.labels(type_url.rsplit(".", 1)[-1]).inc()
            sent += 1
        return sent

    async def _push_all(self, changes: int, first_change: float) -> None:
        self.pushes += 1
        self.metrics.debounced.inc(changes)
        connections = list(self.connections.values())
        for index, connection in enumerate(connections):
            subscribed = [t for t, s in connection.record.types.items() if s.subscribed]
            if subscribed:
                self._send(connection, subscribed)
            if index % 50 == 49:
                await asyncio.sleep(0)  # let streams write while a large fleet is compiled
        self.metrics.push_time.observe(time.monotonic() - first_change)
        log.debug("pushed %d change(s) to %d proxies", changes, len(connections))
