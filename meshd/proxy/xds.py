"""The xDS client: one ``Discovery.Stream`` to meshd, state of the world per type, ACK / NACK.

:class:`XdsClient.run` keeps one stream open over mTLS with the workload certificate
(:class:`meshd.proxy.certs.CertManager`), and for every response:

* applies it through :meth:`meshd.proxy.config.ConfigStore.apply` (strict decode,
  ``RouteConfig.check``, compile) and ACKs (``version_info`` = the new version, the nonce);
* or, when that raises, NACKs (the previous version, the nonce, ``ErrorDetail`` with the message)
  and keeps the previous configuration.

When the stream breaks (meshd restarting, network), the proxy keeps serving its last
configuration and reconnects with capped exponential backoff and jitter; the first requests of the
new stream carry the last applied versions (a resync: meshd sends only what changed, or all).

``acked`` counts ACKs per type; readiness (:mod:`meshd.proxy.health`) needs every type applied
once and a certificate.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from meshd.api.protocol import (
    STREAM_METHOD,
    DiscoveryRequest,
    DiscoveryResponse,
    ErrorDetail,
    Node,
    deserializer,
    serializer,
)
from meshd.api.resources import PUSH_ORDER, ResourceError
from meshd.proxy.certs import CertManager, meshd_channel
from meshd.proxy.config import ConfigStore
from meshd.proxy.grpcclient import GrpcError
from meshd.proxy.settings import ProxySettings

__all__ = ["Nack", "XdsClient"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Nack:
    type_url: str
    version: str
    message: str


class XdsClient:
    """Keeps the :class:`ConfigStore` in step with meshd."""

    def __init__(self, settings: ProxySettings, certs: CertManager, store: ConfigStore, *,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.certs = certs
        self.store = store
        self._rng = rng or random.Random()
        self.connected = asyncio.Event()
        self.streams = 0
        """Streams opened so far (reconnects = streams - 1)."""
        self.acked: dict[str, int] = {}
        self.last_nack: Nack | None = None
        self.changed = asyncio.Condition()

    def node(self) -> Node:
        s = self.settings
        return Node(id=s.node_id, namespace=s.namespace, pod=s.pod_name, ip=s.pod_ip,
                    service_account=s.service_account, labels=dict(s.labels), proxy_version="kubelab")

    async def run(self) -> None:
        """Stream forever (cancel to stop)."""
        await self.certs.ready.wait()
        backoff = 0.1
        while True:
            try:
                await self._stream()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the stream: keep serving, reconnect
                text = str(exc) if isinstance(exc, GrpcError) else repr(exc)
                log.warning("discovery stream to %s lost (%s); serving the last configuration",
                            self.settings.discovery_address, text)
            self.connected.clear()
            await asyncio.sleep(backoff * self._rng.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 5.0)

    async def _stream(self) -> None:
        certs = self.certs
        channel = meshd_channel(self.settings.discovery_address, self.settings, certs.root_pem,
                                chain_pem=certs.chain_pem, key_pem=certs.key_pem)
        decode = deserializer(DiscoveryResponse)
        try:
            await channel.connect()
            call = channel.open(STREAM_METHOD)
            self.streams += 1
            node: Node | None = self.node()
            for type_url in PUSH_ORDER:
                call.send(serializer(DiscoveryRequest(type_url=type_url,
                                                      version_info=self.store.versions.get(type_url, ""), node=node)))
                node = None
            while (message := await call.recv()) is not None:
                response = decode(message)
                self.connected.set()
                call.send(serializer(self._handle(response)))
                async with self.changed:
                    self.changed.notify_all()
            raise GrpcError(14, "meshd ended the discovery stream")
        finally:
            channel.close()

    def _handle(self, response: DiscoveryResponse) -> DiscoveryRequest:
        type_url = response.type_url
        try:
            self.store.apply(type_url, response.version_info, response.resources)
        except ResourceError as exc:
            previous = self.store.versions.get(type_url, "")
            self.last_nack = Nack(type_url, response.version_info, str(exc))
            log.warning("NACK %s version %s: %s (keeping version %r)", type_url, response.version_info, exc,
                        previous)
            return DiscoveryRequest(type_url=type_url, version_info=previous, response_nonce=response.nonce,
                                    error_detail=ErrorDetail(message=str(exc)))
        self.acked[type_url] = self.acked.get(type_url, 0) + 1
        log.debug("ACK %s version %s (%d resources)", type_url, response.version_info, len(response.resources))
        return DiscoveryRequest(type_url=type_url, version_info=response.version_info,
                                response_nonce=response.nonce)

    async def wait_for(self, predicate: object, timeout: float) -> None:
        """Tests and tools: wait until ``predicate()`` holds after some response."""
        assert callable(predicate)
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
