"""HTTP request handling: route, fault, pick, retry, forward; telemetry and access log for each request.

Called by the HTTP/1.1 and HTTP/2 server protocols (:mod:`meshd.proxy.http1`, :mod:`meshd.proxy.http2`)
with a request whose head has arrived (its body streams on) and its connection's :class:`ConnContext`;
returns the response as soon as the upstream's head is in (its body streams to the downstream).

Outbound (:meth:`HttpProxy.outbound`, reporter ``source``):

1. trace headers (:mod:`meshd.proxy.tracing`); the listener's :class:`RouteTable` (none: 404
   ``NR``); the first matching route (none: 404 ``NR``);
2. faults: abort (``FI``) or delay (``DI``) for their percentage of requests;
3. the destination cluster by weight (missing: 503 ``NC``; no endpoint: 503 ``UH``), then
   up to ``1 + attempts`` tries, each to an endpoint the balancer picks (not one already tried
   when another exists), with the per-try timeout, Envoy's ``retry_on`` classes
   (:func:`retriable_failure`, :func:`retriable_response`) and a fully jittered exponential
   backoff from 25 ms (capped at 250 ms). The request body is kept for a retry while it fits
   :data:`~meshd.proxy.body.RETRY_BUFFER` (64 KiB); a larger one is sent once and not retried, as
   Envoy does past its buffer limit. The route timeout (Envoy's semantics) runs from the end of the
   request body to the end of the response body (504 ``UT`` before the response head; after it,
   the response is cut short: HTTP/1.1 connection closed, HTTP/2 stream reset); the per-try
   timeout bounds each try until its response head;
4. to a meshed endpoint the request carries ``x-kubelab-peer-metadata`` (our workload's
   telemetry labels and the destination service), which the destination sidecar strips.

Inbound (:meth:`HttpProxy.inbound`, reporter ``destination``): peer metadata read and stripped,
``X-Forwarded-Client-Cert`` replaced (set from the verified peer on mTLS, removed otherwise), the
workload's AuthorizationPolicies consulted (:mod:`meshd.proxy.authz`: a denial answers Envoy's 403
``RBAC: access denied``, logged with ``rbac_access_denied_matched_policy[...]`` as its response
code details), forwarded to the app on ``app_host:<port>`` (no retries).

Telemetry and the access log are recorded when the response has been written to the downstream
(:meth:`HttpProxy._on_end`): durations cover the whole exchange and byte counts are what passed.
After a WebSocket upgrade (``101``) the two connections are one tunnel until either closes.

Mirroring (:mod:`meshd.proxy.mirror`) starts with step 3, before the first try; every try's
outcome goes to the cluster's outlier detection (:meth:`~meshd.proxy.balancer.Balancer.report`).
Header manipulation and redirects are not implemented (meshd accepts them with a warning); they
would sit between steps 1 and 3 (see :mod:`meshd.proxy.routing`).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from dataclasses import dataclass
from typing import Any

from meshd.api.resources import Cluster, Endpoint, Listener
from meshd.proxy.authz import DENIED_BODY, Attributes, split_host_port
from meshd.proxy.body import Body, Replay, StreamAbandoned
from meshd.proxy.config import ConfigStore
from meshd.proxy.http1 import HOP_BY_HOP, Request, Response, forwardable_headers, request_head
from meshd.proxy.http2 import RefusedStream
from meshd.proxy.mirror import Mirroring
from meshd.proxy.mtls import xfcc
from meshd.proxy.peers import PEER_METADATA_HEADER, WorkloadMeta
from meshd.proxy.routing import CompiledRoute, RequestView
from meshd.proxy.settings import ProxySettings
from meshd.proxy.telemetry import Telemetry
from meshd.proxy.tracing import ensure_trace_headers
from meshd.proxy.upstream import ConnectFailure, H2Pool, Http1Pool, wants_mtls

__all__ = ["ConnContext", "HttpProxy", "retriable_failure", "retriable_response"]

EXPLICIT_DST_HEADER = "x-kubelab-original-dst"
_GRPC_CODES = {"cancelled": "1", "deadline-exceeded": "4", "resource-exhausted": "8", "internal": "13",
               "unavailable": "14"}
BACKOFF_BASE = 0.025
BACKOFF_MAX = 0.25


@dataclass(slots=True)
class ConnContext:
    """What a downstream connection knows about itself."""

    direction: str
    listener: Listener | None = None
    port: int = 0
    protocol: str = "http"
    """Inbound: the port's protocol (``http2``/``grpc``: HTTP/2 to the app)."""
    peer_identity: str = ""
    ssl_object: Any = None
    xfcc: str = ""
    """The ``X-Forwarded-Client-Cert`` value for this connection's verified peer (computed once)."""
    local: str = "-"
    remote: str = "-"


@functools.lru_cache(maxsize=256)
def _retry_set(retry_on: tuple[str, ...]) -> frozenset[str]:
    return frozenset(v.strip() for v in retry_on)


def retriable_failure(retry_on: frozenset[str], *, connect: bool) -> bool:
    """Envoy: resets retry under ``reset``/``5xx``/``gateway-error``, connect failures also under ``connect-failure``.

    ``refused-stream`` (an HTTP/2 REFUSED_STREAM: nothing was processed) is treated like a connect failure.
    """
    if connect and ("connect-failure" in retry_on or "refused-stream" in retry_on):
        return True
    return bool(retry_on & {"reset", "5xx", "gateway-error"})


def retriable_response(retry_on: frozenset[str], status: int, grpc_status: str) -> bool:
    if "5xx" in retry_on and status >= 500:
        return True
    if "gateway-error" in retry_on and status in (502, 503, 504):
        return True
    if "retriable-4xx" in retry_on and status == 409:
        return True
    if str(status) in retry_on:
        return True
    return bool(grpc_status) and any(_GRPC_CODES.get(name) == grpc_status for name in retry_on)


class _Outcome:
    __slots__ = ("cluster", "delayed", "details", "endpoint", "flags", "upstream")

    def __init__(self) -> None:
        self.flags = "-"
        self.details = ""
        """Envoy's response code details when the proxy answered itself without a flag (an RBAC denial)."""
        self.delayed = False
        self.cluster = "-"
        self.endpoint: Endpoint | None = None
        self.upstream = "-"


def _trailer(body: Body, name: str) -> str:
    for key, value in body.trailers:
        if key == name:
            return value
    return ""


class _RouteTimer:
    """Envoy's route timeout: from the end of the request body to the end of the response body.

    Before the response head it is the deadline of an ``asyncio.timeout`` scope around the tries;
    after it, a timer that fails the response body (and resets its upstream) when it fires.
    """

    __slots__ = ("_handle", "_loop", "_resp", "at", "scope", "seconds")

    def __init__(self, seconds: float, request: Body) -> None:
        self._loop = asyncio.get_running_loop()
        self.seconds = seconds
        self.scope: asyncio.Timeout | None = None
        self._resp: Body | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.at: float | None = None
        if request.done:
            self.at = self._loop.time() + seconds
        else:
            request.on_end = self._arm

    def _arm(self) -> None:
        self.at = self._loop.time() + self.seconds
        if self._resp is not None:
            self._handle = self._loop.call_at(self.at, self._expire)
        elif self.scope is not None and self.scope.when() is None:
            self.scope.reschedule(self.at)

    def watch(self, body: Body) -> None:
        """The response head is in: the rest of the time bounds its body."""
        self.scope = None
        if body.done:
            return
        self._resp = body
        if self.at is not None:
            self._handle = self._loop.call_at(self.at, self._expire)
        previous = body.on_end

        def ended() -> None:
            if self._handle is not None:
                self._handle.cancel()
            if previous is not None:
                previous()

        body.on_end = ended

    def _expire(self) -> None:
        body = self._resp
        if body is None or body.done:
            return
        body.fail(TimeoutError("route timeout"))
        body.abort()


class HttpProxy:
    """Forwards HTTP requests for the outbound and inbound listeners."""

    def __init__(self, settings: ProxySettings, store: ConfigStore, certs: Any, telemetry: Telemetry, *,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.store = store
        self.certs = certs
        self.telemetry = telemetry
        self.rng = rng or random.Random()
        self.pool = Http1Pool()
        self.h2pool = H2Pool()
        self.me = WorkloadMeta.from_labels(settings.workload_name, settings.namespace, settings.labels)
        self.identity = settings.identity.uri
        self._endpoint_meta: dict[int, tuple[Endpoint, WorkloadMeta]] = {}
        self._peer_meta: dict[str, tuple[WorkloadMeta, str]] = {}
        self._peer_header: dict[str, str] = {}
        self._time_second = -1
        self._time_text = ""
        self.mirroring = Mirroring(store, self._send, self.me.header, rng=self.rng)

    # --- outbound --------------------------------------------------------------------------------

    async def outbound(self, req: Request, conn: Any) -> Response:
        ctx: ConnContext = conn.context
        start = time.perf_counter()
        headers = req.headers
        ensure_trace_headers(headers)
        outcome = _Outcome()
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
            outcome.flags = "NR"
            resp = Response(404, [], b"")
        else:
            resp, cluster = await self._route(req, listener, snapshot, outcome)
        resp.on_end = functools.partial(self._on_end, "source", req, resp, start, ctx, outcome, cluster, None, "")
        return resp

    async def _route(self, req: Request, listener: Listener, snapshot: Any,
                     outcome: _Outcome) -> tuple[Response, Cluster | None]:
        table = snapshot.routes.get(listener.route_config)
        authority = req.header("host") or ""
        route: CompiledRoute | None = None
        if table is not None:
            view = RequestView(req.method, req.path, authority, dict(req.headers))
            route = table.route(view)
        if route is None:
            outcome.flags = "NR"
            return Response(404, [], b""), None
        fault = route.fault
        if fault is not None:
            if fault.abort is not None and self.rng.random() * 100 < fault.abort.percentage:
                outcome.flags = "FI"
                return Response(fault.abort.http_status, [("content-type", "text/plain")], b"fault filter abort"), None
            if fault.delay is not None and self.rng.random() * 100 < fault.delay.percentage:
                outcome.delayed = True
                await asyncio.sleep(fault.delay.fixed_delay_ms / 1000)
        name = route.pick(self.rng.random())
        balancer = snapshot.clusters.get(name) if name else None
        if balancer is None:
            outcome.flags = "NC"
            return Response(503, [], b"no healthy upstream"), None
        outcome.cluster = balancer.cluster.name
        if route.timeout <= 0:
            return await self._tries(req, route, balancer, outcome), balancer.cluster
        timer = _RouteTimer(route.timeout, req.body)
        try:
            async with asyncio.timeout(None) as scope:
                timer.scope = scope
                if timer.at is not None:
                    scope.reschedule(timer.at)
                resp = await self._tries(req, route, balancer, outcome)
        except TimeoutError:
            outcome.flags = "UT"
            resp = Response(504, [], b"upstream request timeout")
        timer.watch(resp.body)
        return resp, balancer.cluster

    async def _tries(self, req: Request, route: CompiledRoute, balancer: Any, outcome: _Outcome) -> Response:
        policy = route.retries
        attempts = 1 + (policy.attempts if policy is not None else 0)
        retry_on = _retry_set(policy.retry_on) if policy is not None else frozenset()
        per_try = policy.per_try_timeout_ms / 1000 if policy is not None and policy.per_try_timeout_ms else 0.0
        cluster: Cluster = balancer.cluster
        if route.mirrors:
            await self.mirroring.shadow(route.mirrors, req)
        tried: list[Endpoint] = []
        forward = forwardable_headers(req.headers, req.upgrade == "websocket")
        replay = Replay(req.body) if attempts > 1 else Replay(req.body, 0)
        resp: Response | None = None
        for attempt in range(attempts):
            if attempt:
                if not replay.retriable:
                    break  # the body did not fit the retry buffer: what was sent cannot be sent again
                replay.restart()
                await asyncio.sleep(self.rng.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * (2 ** attempt - 1))))
            endpoint = balancer.pick(tried)
            if endpoint is None:
                outcome.flags = "UH"
                return Response(503, [], b"no healthy upstream")
            tried.append(endpoint)
            outcome.endpoint = endpoint
            outcome.upstream = f"{endpoint.address}:{endpoint.port}"
            mtls = wants_mtls(cluster, endpoint)
            if mtls:
                meta = self._peer_header.get(cluster.service)
                if meta is None:
                    meta = self._peer_header[cluster.service] = self.me.header(cluster.service)
                headers = [*forward, (PEER_METADATA_HEADER, meta)]
            else:
                headers = forward
            balancer.started(endpoint)
            try:
                resp = await self._send(req, replay, headers, endpoint.address, endpoint.port, mtls,
                                        endpoint.identity, cluster.connect_timeout_ms / 1000, per_try,
                                        h2=cluster.protocol in ("http2", "grpc"))
            except (ConnectFailure, RefusedStream):
                outcome.flags = "UF"
                resp = None
                balancer.report(endpoint, 503)
                if retriable_failure(retry_on, connect=True):
                    continue
                return Response(503, [], b"upstream connect error")
            except (ConnectionError, TimeoutError) as exc:
                outcome.flags = "UT" if isinstance(exc, TimeoutError) else "UC"
                resp = None
                balancer.report(endpoint, 504 if isinstance(exc, TimeoutError) else 503)
                if retriable_failure(retry_on, connect=False):
                    continue
                return Response(504 if isinstance(exc, TimeoutError) else 503, [], b"upstream reset")
            finally:
                balancer.finished(endpoint)
            balancer.report(endpoint, resp.status)
            outcome.flags = "-"
            if (attempt + 1 < attempts and replay.retriable
                    and retriable_response(retry_on, resp.status, resp.header("grpc-status") or "")):
                outcome.flags = "URX"
                if not resp.body.done:
                    resp.body.abort()  # not forwarded: its connection (or stream) is given up
                continue
            return resp
        if resp is not None:
            return resp
        return Response(504 if outcome.flags == "UT" else 503, [], b"upstream connect error")

    async def _send(self, req: Request, replay: Replay, headers: list[tuple[str, str]], host: str, port: int,
                    mtls: bool, identity: str, connect_timeout: float, timeout: float, *, h2: bool = False
                    ) -> Response:
        tls = None
        if mtls:
            contexts = self.certs.contexts if self.certs is not None else None
            if contexts is None:
                raise ConnectFailure("no workload certificate yet")
            tls = contexts.client
        if h2:
            return await self._send_h2(req, replay, headers, host, port, tls, identity if mtls else "",
                                       connect_timeout, timeout)
        head_only = req.method == "HEAD"
        for _ in range(2):
            conn = await self.pool.acquire(host, port, tls=tls, identity=identity if mtls else "",
                                           timeout=connect_timeout)
            reused = conn.reused > 0
            whole = replay.whole()
            if whole is not None:
                future = conn.send(request_head(req.method, req.path, headers, len(whole)) + whole, head=head_only)
            else:
                length = req.body.length
                future = conn.send(request_head(req.method, req.path, headers, length), head=head_only,
                                   source=replay, chunked=length is None)
            try:
                return await (asyncio.wait_for(future, timeout) if timeout else future)
            except (TimeoutError, asyncio.CancelledError):
                conn.close()
                raise
            except ConnectionError:
                conn.close()
                if reused and replay.retriable:
                    replay.restart()
                    continue  # an idle keep-alive connection the server had closed: try a fresh one
                raise
        raise ConnectionResetError("upstream closed the connection")

    async def _send_h2(self, req: Request, replay: Replay, headers: list[tuple[str, str]], host: str, port: int,
                       tls: Any, identity: str, connect_timeout: float, timeout: float) -> Response:
        authority = req.header("host") or f"{host}:{port}"
        for _ in range(2):
            conn = await self.h2pool.acquire(host, port, tls=tls, identity=identity, timeout=connect_timeout)
            reused = conn.reused > 0
            try:
                call = conn.request(req, headers, authority, replay)
                return await (asyncio.wait_for(call, timeout) if timeout else call)
            except RefusedStream:
                raise
            except ConnectionError:
                if reused and conn.closed and replay.retriable:
                    replay.restart()
                    continue  # the shared connection went away (GOAWAY, idle close): a fresh one
                raise
        raise ConnectionResetError("upstream closed the connection")

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
                    peer, service = self._parse_peer(value)
            elif key != "x-forwarded-client-cert":
                kept.append((key, value))
                hop = hop or key in HOP_BY_HOP
        if ctx.peer_identity:
            if not ctx.xfcc:
                ctx.xfcc = xfcc(self.identity, ctx.ssl_object)
            kept.append(("x-forwarded-client-cert", ctx.xfcc))
        req.headers = kept
        ensure_trace_headers(kept)
        outcome = _Outcome()
        outcome.cluster = f"inbound|{ctx.port}||"
        outcome.upstream = f"{self.settings.app_host}:{ctx.port}"
        authz = self.store.snapshot.authz
        if not authz.empty:
            source_ip, _ = split_host_port(ctx.remote)
            destination_ip, _ = split_host_port(ctx.local)
            decision = authz.check(Attributes(
                http=True, principal=ctx.peer_identity, source_ip=source_ip, destination_ip=destination_ip,
                destination_port=ctx.port, method=req.method, path=req.path, host=req.header("host") or "",
                headers=kept))
            if not decision.allowed:
                outcome.details = decision.details
                outcome.upstream = "-"
                resp = Response(403, [("content-type", "text/plain")], DENIED_BODY)
                resp.on_end = functools.partial(self._on_end, "destination", req, resp, start, ctx, outcome, None,
                                                peer, service)
                return resp
        try:
            forward = forwardable_headers(kept, req.upgrade == "websocket") if hop else kept
            resp = await self._send(req, Replay(req.body, 0), forward,
                                    self.settings.app_host, ctx.port, False, "", 10.0, 0.0,
                                    h2=ctx.protocol in ("http2", "grpc"))
        except ConnectFailure:
            outcome.flags = "UF"
            resp = Response(503, [], b"upstream connect error")
        except (ConnectionError, TimeoutError):
            outcome.flags = "UC"
            resp = Response(503, [], b"upstream reset")
        resp.on_end = functools.partial(self._on_end, "destination", req, resp, start, ctx, outcome, None, peer,
                                        service)
        return resp

    # --- telemetry -------------------------------------------------------------------------------

    def _on_end(self, reporter: str, req: Request, resp: Response, start: float, ctx: ConnContext,
                outcome: _Outcome, cluster: Cluster | None, peer: WorkloadMeta | None, service: str,
                error: BaseException | None) -> None:
        """The response was written (``error`` None) or cut short: flags for how it ended, then record."""
        if error is not None and outcome.flags in ("-", "URX"):
            if isinstance(error, TimeoutError):
                outcome.flags = "UT"
            elif resp.body.error is None or isinstance(resp.body.error, StreamAbandoned):
                outcome.flags = "DC"
            else:
                outcome.flags = "UR"
        self._record(reporter, req, resp, start, ctx, outcome, cluster, peer=peer, service=service)

    def _record(self, reporter: str, req: Request, resp: Response, start: float, ctx: ConnContext,
                outcome: _Outcome, cluster: Cluster | None, *, peer: WorkloadMeta | None = None,
                service: str = "") -> None:
        duration_ms = (time.perf_counter() - start) * 1000
        if outcome.delayed:  # Envoy lists every flag: a delayed request that then failed is "DI,UF"
            outcome.flags = "DI" if outcome.flags == "-" else "DI," + outcome.flags
        if reporter == "source":
            src, src_principal = self.me, self.identity if self.certs is not None else "unknown"
            ep = outcome.endpoint
            dst = self._meta_of(ep) if ep is not None else WorkloadMeta()
            dst_principal = (ep.identity or "unknown") if ep is not None else "unknown"
            service = cluster.service if cluster is not None else (req.header("host") or "unknown")
            security = "unknown"
        else:
            src = peer or WorkloadMeta()
            src_principal = ctx.peer_identity or "unknown"
            dst, dst_principal = self.me, self.identity
            service = service or (req.header("host") or "unknown").rsplit(":", 1)[0]
            security = "mutual_tls" if ctx.peer_identity else "none"
        parts = service.split(".")
        content_type = req.header("content-type") or ""
        grpc_status = resp.header("grpc-status") or _trailer(resp.body, "grpc-status")
        grpc = bool(grpc_status) or content_type.startswith("application/grpc")
        labels = (reporter, src.workload, src.namespace, src_principal, src.app, src.version, src.canonical_service,
                  src.canonical_revision, dst.workload, dst.namespace, dst_principal, dst.app, dst.version, service,
                  parts[0], parts[1] if len(parts) > 2 else dst.namespace, dst.canonical_service,
                  dst.canonical_revision, "grpc" if grpc else "http",
                  str(resp.status), grpc_status, outcome.flags, security)
        self.telemetry.request(labels, duration_ms, req.body.received, resp.body.received)
        if self.settings.access_log:
            self.telemetry.access_log(self._log_line(req, resp, duration_ms, ctx, outcome))

    def _meta_of(self, endpoint: Endpoint) -> WorkloadMeta:
        """An endpoint's telemetry labels, computed once per endpoint object (not per request)."""
        hit = self._endpoint_meta.get(id(endpoint))
        if hit is not None and hit[0] is endpoint:
            return hit[1]
        meta = WorkloadMeta.from_labels(endpoint.workload, endpoint.namespace, endpoint.labels)
        if len(self._endpoint_meta) > 4096:
            self._endpoint_meta.clear()
        self._endpoint_meta[id(endpoint)] = (endpoint, meta)
        return meta

    def _parse_peer(self, value: str) -> tuple[WorkloadMeta, str]:
        hit = self._peer_meta.get(value)
        if hit is None:
            if len(self._peer_meta) > 4096:
                self._peer_meta.clear()
            hit = self._peer_meta[value] = WorkloadMeta.parse(value)
        return hit

    def _log_line(self, req: Request, resp: Response, duration_ms: float, ctx: ConnContext,
                  outcome: _Outcome) -> str:
        now = time.time()
        second = int(now)
        if second != self._time_second:
            self._time_second = second
            self._time_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = f"{self._time_text}.{int((now - second) * 1000):03d}Z"
        details = outcome.details or ("via_upstream" if outcome.flags in ("-", "URX") else outcome.flags.lower())
        return (f'[{stamp}] "{req.method} {req.path} HTTP/{req.version}" {resp.status} {outcome.flags} {details} - '
                f'"-" {req.body.received} {resp.body.received} {int(duration_ms)} - '
                f'"{req.header("x-forwarded-for") or "-"}" '
                f'"{req.header("user-agent") or "-"}" "{req.header("x-request-id") or "-"}" '
                f'"{req.header("host") or "-"}" "{outcome.upstream}" {outcome.cluster} - {ctx.local} {ctx.remote} - '
                f'{"default" if ctx.direction == "outbound" else "-"}')
