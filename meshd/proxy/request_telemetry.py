"""What each HTTP request leaves behind: a sample in Istio's standard metrics and an access-log line.

:mod:`meshd.proxy.httpproxy` sets :meth:`RequestTelemetry.on_end` as every response's ``on_end``;
the downstream codec calls it once the response has been written whole or cut short, so durations
cover the whole exchange and byte counts are what passed. A response cut short gets the flag for
how it ended (``UT`` route timeout, ``UR`` upstream reset, ``DC`` downstream gone) unless an
earlier one explains it; a fault delay adds ``DI`` in front (Envoy lists every flag: ``DI,UF``).

Labels are Istio's (:data:`~meshd.proxy.telemetry.HTTP_LABELS`), as the reporting side sees them:

* ``source`` (outbound): this workload and its principal, the destination from the endpoint's
  labels and identity, the destination service from the cluster (else the ``Host``);
* ``destination`` (inbound): the peer's labels from the ``x-kubelab-peer-metadata`` header
  (:meth:`RequestTelemetry.peer`, trusted on mTLS only) and its verified principal, this
  workload as the destination, ``mutual_tls`` or ``none`` as the connection security policy.

Label sets of endpoints and peer headers are computed once and kept (bounded), not per request.
The access-log line is Istio's default TEXT format (:data:`~meshd.proxy.telemetry.ACCESS_LOG_FORMAT`),
written through :meth:`~meshd.proxy.telemetry.Telemetry.access_log` when the settings ask for it.
"""

from __future__ import annotations

import time

from meshd.api.resources import Cluster, Endpoint
from meshd.proxy.body import Body, StreamAbandoned
from meshd.proxy.message import Request, Response
from meshd.proxy.peers import WorkloadMeta
from meshd.proxy.settings import ProxySettings
from meshd.proxy.stream_info import ConnContext, StreamInfo
from meshd.proxy.telemetry import Telemetry

__all__ = ["RequestTelemetry"]

_CACHE_LIMIT = 4096


def _trailer(body: Body, name: str) -> str:
    for key, value in body.trailers:
        if key == name:
            return value
    return ""


class RequestTelemetry:
    """Records finished requests of one workload (``me``) into ``telemetry``."""

    def __init__(self, settings: ProxySettings, telemetry: Telemetry, me: WorkloadMeta, *, has_certs: bool) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.me = me
        self.identity = settings.identity.uri
        self.has_certs = has_certs
        """Whether this proxy has a certificate manager (without one its principal is ``unknown``)."""
        self._endpoint_meta: dict[int, tuple[Endpoint, WorkloadMeta]] = {}
        self._peer_meta: dict[str, tuple[WorkloadMeta, str]] = {}
        self._time_second = -1
        self._time_text = ""

    def on_end(self, reporter: str, req: Request, resp: Response, start: float, ctx: ConnContext,
               info: StreamInfo, cluster: Cluster | None, peer: WorkloadMeta | None, service: str,
               error: BaseException | None) -> None:
        """The response was written (``error`` None) or cut short: flags for how it ended, then record."""
        if error is not None and info.flags in ("-", "URX"):
            if isinstance(error, TimeoutError):
                info.flags = "UT"
            elif resp.body.error is None or isinstance(resp.body.error, StreamAbandoned):
                info.flags = "DC"
            else:
                info.flags = "UR"
        self.record(reporter, req, resp, start, ctx, info, cluster, peer=peer, service=service)

    def record(self, reporter: str, req: Request, resp: Response, start: float, ctx: ConnContext,
               info: StreamInfo, cluster: Cluster | None, *, peer: WorkloadMeta | None = None,
               service: str = "") -> None:
        duration_ms = (time.perf_counter() - start) * 1000
        if info.delayed:  # Envoy lists every flag: a delayed request that then failed is "DI,UF"
            info.flags = "DI" if info.flags == "-" else "DI," + info.flags
        if reporter == "source":
            src, src_principal = self.me, self.identity if self.has_certs else "unknown"
            ep = info.endpoint
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
                  str(resp.status), grpc_status, info.flags, security)
        self.telemetry.request(labels, duration_ms, req.body.received, resp.body.received)
        if self.settings.access_log:
            self.telemetry.access_log(self._log_line(req, resp, duration_ms, ctx, info))

    def _meta_of(self, endpoint: Endpoint) -> WorkloadMeta:
        """An endpoint's telemetry labels, computed once per endpoint object (not per request)."""
        hit = self._endpoint_meta.get(id(endpoint))
        if hit is not None and hit[0] is endpoint:
            return hit[1]
        meta = WorkloadMeta.from_labels(endpoint.workload, endpoint.namespace, endpoint.labels)
        if len(self._endpoint_meta) > _CACHE_LIMIT:
            self._endpoint_meta.clear()
        self._endpoint_meta[id(endpoint)] = (endpoint, meta)
        return meta

    def peer(self, value: str) -> tuple[WorkloadMeta, str]:
        """A peer metadata header's labels and destination service, parsed once per distinct value."""
        hit = self._peer_meta.get(value)
        if hit is None:
            if len(self._peer_meta) > _CACHE_LIMIT:
                self._peer_meta.clear()
            hit = self._peer_meta[value] = WorkloadMeta.parse(value)
        return hit

    def _log_line(self, req: Request, resp: Response, duration_ms: float, ctx: ConnContext,
                  info: StreamInfo) -> str:
        now = time.time()
        second = int(now)
        if second != self._time_second:
            self._time_second = second
            self._time_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = f"{self._time_text}.{int((now - second) * 1000):03d}Z"
        details = info.details or ("via_upstream" if info.flags in ("-", "URX") else info.flags.lower())
        return (f'[{stamp}] "{req.method} {req.path} HTTP/{req.version}" {resp.status} {info.flags} {details} - '
                f'"-" {req.body.received} {resp.body.received} {int(duration_ms)} - '
                f'"{req.header("x-forwarded-for") or "-"}" '
                f'"{req.header("user-agent") or "-"}" "{req.header("x-request-id") or "-"}" '
                f'"{req.header("host") or "-"}" "{info.upstream}" {info.cluster} - {ctx.local} {ctx.remote} - '
                f'{"default" if ctx.direction == "outbound" else "-"}')
