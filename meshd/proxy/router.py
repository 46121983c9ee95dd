"""The router filter's upstream half (Envoy's router): the route timeout, tries with retries, and one try's send.

Called by :mod:`meshd.proxy.httpproxy` once an outbound request has its route and destination
cluster (:meth:`Router.forward`), and for inbound requests to the app and shadow copies
(:meth:`Router.send`, one try, no retries). Owns the upstream connection pools (HTTP/1.1 and
HTTP/2, :mod:`meshd.proxy.upstream`) and traffic mirroring (:mod:`meshd.proxy.mirror`).

:meth:`Router.forward`:

1. shadows the request to the route's mirrors (:meth:`~meshd.proxy.mirror.Mirroring.shadow`);
2. makes up to ``1 + attempts`` tries, each to an endpoint the balancer picks (not one already
   tried when another exists; none: 503 ``UH``), with the per-try timeout, the retry conditions
   of :mod:`meshd.proxy.retry` and its jittered backoff between tries. The request body is kept
   for a retry while it fits :data:`~meshd.proxy.body.RETRY_BUFFER` (64 KiB); a larger one is
   sent once and not retried, as Envoy does past its buffer limit. Every try's outcome goes to
   the cluster's outlier detection (:meth:`~meshd.proxy.balancer.Balancer.report`);
3. to a meshed endpoint (mTLS) a try carries ``x-kubelab-peer-metadata`` (this workload's
   telemetry labels and the destination service), which the destination sidecar strips;
4. bounds it all by the route timeout (:class:`RouteTimer`, Envoy's semantics): from the end of
   the request body to the end of the response body, 504 ``UT`` before the response head; after
   it, the response is cut short (HTTP/1.1 connection closed, HTTP/2 stream reset). The per-try
   timeout bounds each try until its response head.

:meth:`Router.send` takes a pooled connection; a request that fails on a reused connection the
server had already given up (an idle keep-alive close, an HTTP/2 GOAWAY) is sent once more on a
fresh one when its body can be replayed.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from meshd.api.resources import Cluster, Endpoint
from meshd.proxy.body import Body, Replay
from meshd.proxy.config import ConfigStore
from meshd.proxy.http1_codec import request_head
from meshd.proxy.http2 import RefusedStream
from meshd.proxy.message import Request, Response, forwardable_headers
from meshd.proxy.mirror import Mirroring
from meshd.proxy.peers import PEER_METADATA_HEADER, WorkloadMeta
from meshd.proxy.retry import backoff, retriable_failure, retriable_response, retry_set
from meshd.proxy.routing import CompiledRoute
from meshd.proxy.stream_info import StreamInfo
from meshd.proxy.upstream import ConnectFailure, H2Pool, Http1Pool, wants_mtls

__all__ = ["RouteTimer", "Router"]


class RouteTimer:
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


class Router:
    """Sends requests upstream for one workload (``me``): tries, retries, timeouts, pools, mirrors."""

    def __init__(self, store: ConfigStore, certs: Any, me: WorkloadMeta, rng: random.Random) -> None:
        self.certs = certs
        self.me = me
        self.rng = rng
        self.pool = Http1Pool()
        self.h2pool = H2Pool()
        self._peer_header: dict[str, str] = {}
        self.mirroring = Mirroring(store, self.send, me.header, rng=rng)

    async def forward(self, req: Request, route: CompiledRoute, balancer: Any, info: StreamInfo) -> Response:
        """The response of the tries to ``balancer``'s cluster, within the route timeout."""
        if route.timeout <= 0:
            return await self._tries(req, route, balancer, info)
        timer = RouteTimer(route.timeout, req.body)
        try:
            async with asyncio.timeout(None) as scope:
                timer.scope = scope
                if timer.at is not None:
                    scope.reschedule(timer.at)
                resp = await self._tries(req, route, balancer, info)
        except TimeoutError:
            info.flags = "UT"
            resp = Response(504, [], b"upstream request timeout")
        timer.watch(resp.body)
        return resp

    async def _tries(self, req: Request, route: CompiledRoute, balancer: Any, info: StreamInfo) -> Response:
        policy = route.retries
        attempts = 1 + (policy.attempts if policy is not None else 0)
        retry_on = retry_set(policy.retry_on) if policy is not None else frozenset()
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
                await asyncio.sleep(backoff(self.rng, attempt))
            endpoint = balancer.pick(tried)
            if endpoint is None:
                info.flags = "UH"
                return Response(503, [], b"no healthy upstream")
            tried.append(endpoint)
            info.endpoint = endpoint
            info.upstream = f"{endpoint.address}:{endpoint.port}"
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
                resp = await self.send(req, replay, headers, endpoint.address, endpoint.port, mtls,
                                       endpoint.identity, cluster.connect_timeout_ms / 1000, per_try,
                                       h2=cluster.protocol in ("http2", "grpc"))
            except (ConnectFailure, RefusedStream):
                info.flags = "UF"
                resp = None
                balancer.report(endpoint, 503)
                if retriable_failure(retry_on, connect=True):
                    continue
                return Response(503, [], b"upstream connect error")
            except (ConnectionError, TimeoutError) as exc:
                info.flags = "UT" if isinstance(exc, TimeoutError) else "UC"
                resp = None
                balancer.report(endpoint, 504 if isinstance(exc, TimeoutError) else 503)
                if retriable_failure(retry_on, connect=False):
                    continue
                return Response(504 if isinstance(exc, TimeoutError) else 503, [], b"upstream reset")
            finally:
                balancer.finished(endpoint)
            balancer.report(endpoint, resp.status)
            info.flags = "-"
            if (attempt + 1 < attempts and replay.retriable
                    and retriable_response(retry_on, resp.status, resp.header("grpc-status") or "")):
                info.flags = "URX"
                if not resp.body.done:
                    resp.body.abort()  # not forwarded: its connection (or stream) is given up
                continue
            return resp
        if resp is not None:
            return resp
        return Response(504 if info.flags == "UT" else 503, [], b"upstream connect error")

    async def send(self, req: Request, replay: Replay, headers: list[tuple[str, str]], host: str, port: int,
                   mtls: bool, identity: str, connect_timeout: float, timeout: float, *, h2: bool = False
                   ) -> Response:
        """One try: ``req`` with ``headers`` (forwardable) to ``host:port``, its body from ``replay``.

        ``timeout`` (0: none) bounds the wait for the response head; ``mtls`` presents the workload
        certificate and expects ``identity`` from the server.
        """
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
