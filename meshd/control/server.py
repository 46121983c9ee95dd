"""The ``kubelab meshd`` process: settings → CA, CRDs, Service, webhooks, informers, servers → run.

:class:`Meshd` wires the control plane (tests embed it: ``await meshd.start()`` /
``await meshd.stop()``); :func:`run` blocks until SIGTERM/SIGINT. Start order:

1. the CA (:mod:`.ca`) from ``state_dir`` (made on first start), expiry metrics;
2. with the apiserver (retried until it answers): the Istio CRDs (:mod:`.crds`), namespace,
   ``istiod`` Service and Endpoints (:mod:`.bootstrap`);
3. the webhook server on 15017 (:mod:`.webhooks`), then the webhook configurations pointing at it;
4. informers (:mod:`.model`), synced; the root-cert publisher (:mod:`.rootcert`), the status
   reporter (:mod:`.status`);
5. the gRPC server (Discovery :mod:`.push` + Certify :mod:`.certify`) on a loopback port behind
   the TLS front on 15012 (:mod:`.tlsfront`); the debug endpoint on 127.0.0.1:15014 (:mod:`.debug`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import grpc.aio  # type: ignore[import-untyped,unused-ignore]

from machinery.client import ApiClient, EventRecorder, InformerFactory
from machinery.errors import ApiError
from machinery.process import run_until_signalled
from meshd.api.protocol import CERTIFICATES_SERVICE, CertifyRequest, deserializer, serializer
from meshd.control.bootstrap import ensure_bootstrap, ensure_webhooks
from meshd.control.ca import MeshCertificateAuthority
from meshd.control.certify import ApiTokenReviewer, CertifyService
from meshd.control.compile.proxy import ProxyCompiler, ProxyConfig
from meshd.control.crds import apply_crds
from meshd.control.debug import DebugServer
from meshd.control.metrics import MeshdMetrics
from meshd.control.model import MeshModel
from meshd.control.push import Connection, DiscoveryServer
from meshd.control.rootcert import RootCertPublisher
from meshd.control.settings import MeshdSettings
from meshd.control.status import StatusReporter
from meshd.control.tlsfront import TlsFront
from meshd.control.webhooks import WebhookServer

__all__ = ["Meshd", "run", "serve"]

log = logging.getLogger(__name__)

_GRPC_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_concurrent_streams", 1_000),
]


class Meshd:
    def __init__(self, settings: MeshdSettings, *, client: ApiClient | None = None) -> None:
        self.settings = settings
        settings.state_dir = settings.state_dir.expanduser()
        self.client = client or ApiClient.from_kubeconfig(settings.kubeconfig.expanduser(), user_agent="istiod/kubelab",
                                                          qps=50, burst=100)
        self.metrics = MeshdMetrics()
        self.ca = MeshCertificateAuthority.load_or_create(
            settings.state_dir, ca_cert=settings.ca_cert, ca_key=settings.ca_key,
            root_validity_days=settings.root_validity_days)
        self.metrics.root_expiry.set(self.ca.root_expiry().timestamp())
        self.metrics.chain_expiry.set(self.ca.signing_expiry().timestamp())
        self.factory = InformerFactory(self.client, resync_seconds=0)
        self.model = MeshModel(self.factory)
        self.compiler = ProxyCompiler(self.model.snapshot, root_namespace=settings.namespace,
                                      trust_domain=settings.trust_domain)
        self.recorder = EventRecorder(self.client, component="istiod")
        self.reporter = StatusReporter(self.client, self.recorder, self.model.snapshot,
                                       root_namespace=settings.namespace)
        self.front: TlsFront | None = None
        self.discovery = DiscoveryServer(self.compiler, self.metrics, identity_of_peer=self._identity_of_peer,
                                         debounce_quiet=settings.debounce_quiet, debounce_max=settings.debounce_max,
                                         on_nack=self._nacked)
        # TokenReviews get their own client: a burst of sidecars starting must not wait behind the
        # rate limit that keeps meshd's writes polite.
        self.review_client = ApiClient.from_kubeconfig(settings.kubeconfig.expanduser(),
                                                       user_agent="istiod/kubelab") if client is None else client
        self.certify = CertifyService(self.ca, ApiTokenReviewer(self.review_client), self.metrics,
                                      trust_domain=settings.trust_domain,
                                      default_seconds=settings.default_leaf_seconds,
                                      max_seconds=settings.max_leaf_seconds)
        self.rootcert = RootCertPublisher(self.client, self.factory, self.ca.root_pem)
        self.model.on_change(self.discovery.changed)
        self.model.on_change(self.reporter.changed)
        self.webhooks: WebhookServer | None = None
        self.debug: DebugServer | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = False

    @property
    def discovery_port(self) -> int:
        return self.front.port if self.front is not None else self.settings.discovery_port

    def _identity_of_peer(self, peer: str) -> Any:
        return self.front.identity_of_peer(peer) if self.front is not None else None

    def _nacked(self, connection: Connection, type_url: str, message: str, config: ProxyConfig | None) -> None:
        self.reporter.nack(f"{connection.node.pod}.{connection.node.namespace}", type_url, message, config)

    def _serving_hosts(self) -> list[str]:
        s = self.settings
        return [s.service_host, f"{s.service_host}.cluster.local", f"istiod.{s.namespace}", "istiod",
                s.endpoint_address, s.bind_address, "127.0.0.1", "localhost"]

    async def _with_apiserver(self) -> None:
        delay = 0.2
        while True:
            try:
                if self.settings.install_crds:
                    await apply_crds(self.client)
                await ensure_bootstrap(self.client, self.settings)
                return
            except (ApiError, TimeoutError) as exc:
                log.warning("meshd: apiserver not ready for meshd's resources (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def start(self) -> None:
        s = self.settings
        chain, key = self.ca.serving_certificate(self._serving_hosts())
        self.webhooks = WebhookServer(s, chain_pem=chain, key_pem=key, work_dir=s.state_dir)
        s.webhook_port = await self.webhooks.start()
        server = grpc.aio.server(options=_GRPC_OPTIONS)
        server.add_generic_rpc_handlers((
            self.discovery.handler(),
            grpc.method_handlers_generic_handler(CERTIFICATES_SERVICE, {"Certify": grpc.unary_unary_rpc_method_handler(
                self.certify.handle, request_deserializer=deserializer(CertifyRequest),
                response_serializer=serializer)}),
        ))
        inner_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self.grpc_server = server
        self.front = TlsFront(host=s.bind_address, port=s.discovery_port, chain_pem=chain, key_pem=key,
                              root_pem=self.ca.root_pem, inner_port=inner_port, work_dir=s.state_dir)
        s.discovery_port = await self.front.start()
        self.debug = DebugServer(self.discovery, self.metrics, port=s.debug_port, state_dir=s.state_dir,
                                 ready=lambda: self.ready)
        s.debug_port = await self.debug.start()
        await self._with_apiserver()
        if s.manage_webhooks:
            await ensure_webhooks(self.client, s, self.ca.root_pem)
        await self.factory.start()
        await self.factory.wait_synced(timeout=120)
        self.discovery.start()
        self.reporter.start()
        self._tasks.append(asyncio.create_task(self.rootcert.run(), name="meshd:rootcert"))
        self.ready = True
        log.info("meshd serving: discovery %s:%d, webhooks %s:%d, debug 127.0.0.1:%d", s.bind_address,
                 s.discovery_port, s.bind_address, s.webhook_port, s.debug_port)

    async def stop(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.discovery.stop()
        await self.reporter.stop()
        if self.front is not None:
            await self.front.stop()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1.0)
        for part in (self.debug, self.webhooks):
            if part is not None:
                await part.stop()
        await self.factory.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.recorder.close(), 2.0)
        await self.client.close()
        await self.review_client.close()


async def serve(settings: MeshdSettings) -> None:
    meshd = Meshd(settings)
    try:
        await meshd.start()
        await asyncio.Event().wait()
    finally:
        await meshd.stop()


def run(settings: MeshdSettings) -> None:
    """Blocking entry point; SIGTERM/SIGINT stop meshd cleanly."""
    run_until_signalled(lambda: serve(settings), name="meshd")
