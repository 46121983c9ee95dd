"""HTTP request handling, the connection manager's filter chain: route, fault, authorize, then the router.

Called by the HTTP/1.1 and HTTP/2 server protocols (:mod:`meshd.proxy.http1`, :mod:`meshd.proxy.http2`)
with a request whose head has arrived (its body streams on) and its connection's :class:`ConnContext`;
returns the response as soon as the upstream's head is in (its body streams to the downstream).

Outbound (:meth:`HttpProxy.outbound`, reporter ``source``):

1. trace headers (:mod:`meshd.proxy.tracing`); the listener's :class:`RouteTable` (none: 404
   ``NR``); the first matching route (none: 404 ``NR``);
2. faults (Envoy's fault filter): abort (``FI``) or delay (``DI``) for their percentage of requests;
3. the destination cluster by weight (missing: 503 ``NC``), then the router
   (:meth:`meshd.proxy.router.Router.forward`): mirrors, tries with the route's retry policy
   (:mod:`meshd.proxy.retry`), per-try and route timeouts, peer metadata to meshed endpoints.

Inbound (:meth:`HttpProxy.inbound`, reporter ``destination``): peer metadata read and stripped,
``X-Forwarded-Client-Cert`` replaced (set from the verified peer on mTLS, removed otherwise), the
workload's AuthorizationPolicies consulted (:mod:`meshd.proxy.authz`: a denial answers Envoy's 403
``RBAC: access denied``, logged with ``rbac_access_denied_matched_policy[...]`` as its response
code details), forwarded to the app on ``app_host:<port>`` (one try, no retries).

Each request's :class:`~meshd.proxy.stream_info.StreamInfo` collects its response flags and
upstream; telemetry and the access log are recorded when the response has been written to the
downstream (:meth:`meshd.proxy.request_telemetry.RequestTelemetry.on_end`). After a WebSocket
upgrade (``101``) the two connections are one tunnel until either closes.

Header manipulation and redirects are not implemented (meshd accepts them with a warning); they
would sit between steps 1 and 3 (see :mod:`meshd.proxy.routing`).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from typing import Any

from meshd.api.resources import Cluster, Listener
from meshd.proxy.authz import DENIED_BODY, Attributes, split_host_port
from meshd.proxy.body import Replay
from meshd.proxy.config import ConfigStore
from meshd.proxy.message import HOP_BY_HOP, Request, Response, forwardable_headers
from meshd.proxy.mtls import xfcc
from meshd.proxy.peers import PEER_METADATA_HEADER, WorkloadMeta
from meshd.proxy.request_telemetry import RequestTelemetry
from meshd.proxy.retry import retriable_failure, retriable_response
from meshd.proxy.router import Router
from meshd.proxy.routing import CompiledRoute, RequestView
from meshd.proxy.settings import ProxySettings
from meshd.proxy.stream_info import ConnContext, StreamInfo
from meshd.proxy.telemetry import Telemetry
from meshd.proxy.tracing import ensure_trace_headers
from meshd.proxy.upstream import ConnectFailure

__all__ = ["EXPLICIT_DST_HEADER", "ConnContext", "HttpProxy", "retriable_failure", "retriable_response"]

EXPLICIT_DST_HEADER = "x-kubelab-original-dst"


class HttpProxy:
    """Forwards HTTP requests for the outbound and inbound listeners."""

    def __init__(self, settings: ProxySettings, store: ConfigStore, certs: Any, telemetry: Telemetry, *,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.store = store
        self.certs = certs
        self.telemetry = telemetry
        self.rng = rng or random.Random()
        self.me = WorkloadMeta.from_labels(settings.workload_name, settings.namespace, settings.labels)
        self.identity = settings.identity.uri
        self.router = Router(store, certs, self.me, self.rng)
        self.pool = self.router.pool
        self.h2pool = self.router.h2pool
        self.mirroring = self.router.mirroring
        self.recorder = RequestTelemetry(settings, telemetry, self.me, has_certs=certs is not None)

    # --- outbound --------------------------------------------------------------------------------

    async def outbound(self, req: Request, conn: Any) -> Response:
        ctx: ConnContext = conn.context
        start = time.perf_counter()
        headers = req.headers
        ensure_trace_headers(headers)
        info = StreamInfo()
        listener = ctx.listener
        snapshot = self.store.snapshot
        if self.settings.explicit_destination_header:
            explicit = req.header(EXPLICIT_DST_HEADER)
            if explicit:
                headers[:] = [(k, v) for k, v in headers if k != EXPLICIT_DST_HEADER]
                host, _, port = explicit.rpartition(":")
                listener = snapshot.listener(host, int(port))
        cluster: Cluster | None = None
        if listener is None:
            info.flags = "NR"
            resp = Response(404, [], b"")
        else:
            resp, cluster = await self._route(req, listener, snapshot, info)
        resp.on_end = functools.partial(self.recorder.on_end, "source", req, resp, start, ctx, info, cluster, None,
                                        "")
        return resp

    async def _route(self, req: Request, listener: Listener, snapshot: Any,
                     info: StreamInfo) -> tuple[Response, Cluster | None]:
        table = snapshot.routes.get(listener.route_config)
        authority = req.header("host") or ""
        route: CompiledRoute | None = None
        if table is not None:
            view = RequestView(req.method, req.path, authority, dict(req.headers))
            route = table.route(view)
        if route is None:
            info.flags = "NR"
            return Response(404, [], b""), None
        fault = route.fault
        if fault is not None:
            if fault.abort is not None and self.rng.random() * 100 < fault.abort.percentage:
                info.flags = "FI"
                return Response(fault.abort.http_status, [("content-type", "text/plain")], b"fault filter abort"), None
            if fault.delay is not None and self.rng.random() * 100 < fault.delay.percentage:
                info.delayed = True
                await asyncio.sleep(fault.delay.fixed_delay_ms / 1000)
        name = route.pick(self.rng.random())
        balancer = snapshot.clusters.get(name) if name else None
        if balancer is None:
            info.flags = "NC"
            return Response(503, [], b"no healthy upstream"), None
        info.cluster = balancer.cluster.name
        return await self.router.forward(req, route, balancer, info), balancer.cluster

    # --- inbound ---------------------------------------------------------------------------------

    async def inbound(self, req: Request, conn: Any) -> Response:
        ctx: ConnContext = conn.context
        start = time.perf_counter()
        peer = WorkloadMeta()
        service = ""
        kept: list[tuple[str, str]] = []
        hop = False
        for key, value in req.headers:
            if key == PEER_METADATA_HEADER:
                if ctx.peer_identity:
                    peer, service = self.recorder.peer(value)
            elif key != "x-forwarded-client-cert":
                kept.append((key, value))
                hop = hop or key in HOP_BY_HOP
        if ctx.peer_identity:
            if not ctx.xfcc:
                ctx.xfcc = xfcc(self.identity, ctx.ssl_object)
            kept.append(("x-forwarded-client-cert", ctx.xfcc))
        req.headers = kept
        ensure_trace_headers(kept)
        info = StreamInfo()
        info.cluster = f"inbound|{ctx.port}||"
        info.upstream = f"{self.settings.app_host}:{ctx.port}"
        authz = self.store.snapshot.authz
        if not authz.empty:
            source_ip, _ = split_host_port(ctx.remote)
            destination_ip, _ = split_host_port(ctx.local)
            decision = authz.check(Attributes(
                http=True, principal=ctx.peer_identity, source_ip=source_ip, destination_ip=destination_ip,
                destination_port=ctx.port, method=req.method, path=req.path, host=req.header("host") or "",
                headers=kept))
            if not decision.allowed:
                info.details = decision.details
                info.upstream = "-"
                resp = Response(403, [("content-type", "text/plain")], DENIED_BODY)
                resp.on_end = functools.partial(self.recorder.on_end, "destination", req, resp, start, ctx, info,
                                                None, peer, service)
                return resp
        try:
            forward = forwardable_headers(kept, req.upgrade == "websocket") if hop else kept
            resp = await self.router.send(req, Replay(req.body, 0), forward,
                                          self.settings.app_host, ctx.port, False, "", 10.0, 0.0,
                                          h2=ctx.protocol in ("http2", "grpc"))
        except ConnectFailure:
            info.flags = "UF"
            resp = Response(503, [], b"upstream connect error")
        except (ConnectionError, TimeoutError):
            info.flags = "UC"
            resp = Response(503, [], b"upstream reset")
        resp.on_end = functools.partial(self.recorder.on_end, "destination", req, resp, start, ctx, info, None,
                                        peer, service)
        return resp
