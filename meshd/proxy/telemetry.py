"""Istio's standard metrics and access log, recorded on the hot path and rendered for Prometheus.

Metrics (names, labels and histogram buckets as Istio's telemetry reports them, so dashboards and
Kiali queries work unchanged):

* ``istio_requests_total`` (counter), ``istio_request_duration_milliseconds``,
  ``istio_request_bytes``, ``istio_response_bytes`` (histograms) -- one series per
  :data:`HTTP_LABELS` tuple, recorded by :meth:`Telemetry.request` from
  :mod:`meshd.proxy.request_telemetry` with ``reporter`` ``source`` (outbound) or ``destination``
  (inbound);
* ``istio_tcp_sent_bytes_total``, ``istio_tcp_received_bytes_total``,
  ``istio_tcp_connections_opened_total``, ``istio_tcp_connections_closed_total`` -- from
  :mod:`meshd.proxy.tcpproxy`, with :data:`TCP_LABELS`;
* ``istio_agent_cert_expiry_seconds`` (gauge) from the certificate manager;
* whatever the :attr:`Telemetry.collectors` render (the outlier-detection statistics of
  :mod:`meshd.proxy.outlier`, with their own names and labels).

Rendering is hand-rolled text exposition format (cheaper than a client library's locks on a
path taken per request): series are plain lists updated in place, bucket index by ``bisect``.

Access log: Istio's default TEXT format (:data:`ACCESS_LOG_FORMAT`), one line per HTTP request on
stdout, buffered and flushed at most every 100 ms (or at 64 KiB) so logging is not a syscall per
request.
"""

from __future__ import annotations

import bisect
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

__all__ = ["DURATION_BUCKETS", "HTTP_LABELS", "SIZE_BUCKETS", "TCP_LABELS", "Telemetry"]

HTTP_LABELS: tuple[str, ...] = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
    "source_version", "source_canonical_service", "source_canonical_revision", "destination_workload",
    "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
    "destination_service", "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "request_protocol", "response_code",
    "grpc_response_status", "response_flags", "connection_security_policy",
)
TCP_LABELS: tuple[str, ...] = tuple(n for n in HTTP_LABELS if n not in ("response_code", "grpc_response_status"))

DURATION_BUCKETS: tuple[float, ...] = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                                       60000, 300000, 600000, 1800000, 3600000)
SIZE_BUCKETS: tuple[float, ...] = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)

ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    '%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" '
    '"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% '
    '%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%'
)
"""Istio's default access-log format (Envoy command operators), for reference: see :meth:`Telemetry.access_log`."""


class _HttpSeries:
    __slots__ = ("count", "dur", "dur_sum", "req", "req_sum", "resp", "resp_sum")

    def __init__(self) -> None:
        self.count = 0
        self.dur = [0] * (len(DURATION_BUCKETS) + 1)
        self.dur_sum = 0.0
        self.req = [0] * (len(SIZE_BUCKETS) + 1)
        self.req_sum = 0
        self.resp = [0] * (len(SIZE_BUCKETS) + 1)
        self.resp_sum = 0


class _TcpSeries:
    __slots__ = ("closed", "opened", "received", "sent")

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.sent = 0
        self.received = 0


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    body = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + body + (("," + extra) if extra else "") + "}"


class Telemetry:
    """The proxy's metric series and access log."""

    def __init__(self, *, log_stream: TextIO | None = None, access_log: bool = True) -> None:
        self.http: dict[tuple[str, ...], _HttpSeries] = {}
        self.tcp: dict[tuple[str, ...], _TcpSeries] = {}
        self.gauges: dict[str, Callable[[], float]] = {}
        self.collectors: list[Callable[[], Iterable[str]]] = []
        """Each returns finished exposition lines (``# TYPE`` included), appended to :meth:`render`."""
        self._log_stream = log_stream or sys.stdout
        self._access_log = access_log
        self._log_buffer: list[str] = []
        self._log_size = 0
        self._last_flush = time.monotonic()

    # --- recording -------------------------------------------------------------------------------

    def request(self, labels: tuple[str, ...], duration_ms: float, request_bytes: int, response_bytes: int) -> None:
        series = self.http.get(labels)
        if series is None:
            series = self.http[labels] = _HttpSeries()
        series.count += 1
        series.dur[bisect.bisect_left(DURATION_BUCKETS, duration_ms)] += 1
        series.dur_sum += duration_ms
        series.req[bisect.bisect_left(SIZE_BUCKETS, request_bytes)] += 1
        series.req_sum += request_bytes
        series.resp[bisect.bisect_left(SIZE_BUCKETS, response_bytes)] += 1
        series.resp_sum += response_bytes

    def tcp_series(self, labels: tuple[str, ...]) -> _TcpSeries:
        series = self.tcp.get(labels)
        if series is None:
            series = self.tcp[labels] = _TcpSeries()
        return series

    def access_log(self, line: str) -> None:
        if not self._access_log:
            return
        self._log_buffer.append(line)
        self._log_size += len(line)
        now = time.monotonic()
        if self._log_size > 65536 or now - self._last_flush > 0.1:
            self.flush()

    def flush(self) -> None:
        if self._log_buffer:
            self._log_stream.write("\n".join(self._log_buffer) + "\n")
            self._log_stream.flush()
            self._log_buffer.clear()
            self._log_size = 0
        self._last_flush = time.monotonic()

    # --- rendering -------------------------------------------------------------------------------

    def render(self) -> str:
        """Prometheus text exposition of every series."""
        out: list[str] = []
        out.append("# TYPE istio_requests_total counter")
        for labels, s in self.http.items():
            out.append(f"istio_requests_total{_labels(HTTP_LABELS, labels)} {s.count}")
        for name, buckets, attr in (("istio_request_duration_milliseconds", DURATION_BUCKETS, "dur"),
                                    ("istio_request_bytes", SIZE_BUCKETS, "req"),
                                    ("istio_response_bytes", SIZE_BUCKETS, "resp")):
            out.append(f"# TYPE {name} histogram")
            for labels, s in self.http.items():
                counts: list[int] = getattr(s, attr)
                total = 0
                for bound, count in zip(buckets, counts, strict=False):
                    total += count
                    le = 'le="' + format(bound, "g") + '"'
                    out.append(f"{name}_bucket{_labels(HTTP_LABELS, labels, le)} {total}")
                inf = 'le="+Inf"'
                out.append(f"{name}_bucket{_labels(HTTP_LABELS, labels, inf)} {s.count}")
                out.append(f"{name}_sum{_labels(HTTP_LABELS, labels)} {getattr(s, attr + '_sum'):g}")
                out.append(f"{name}_count{_labels(HTTP_LABELS, labels)} {s.count}")
        for name, attr in (("istio_tcp_sent_bytes_total", "sent"), ("istio_tcp_received_bytes_total", "received"),
                           ("istio_tcp_connections_opened_total", "opened"),
                           ("istio_tcp_connections_closed_total", "closed")):
            out.append(f"# TYPE {name} counter")
            for labels, t in self.tcp.items():
                out.append(f"{name}{_labels(TCP_LABELS, labels)} {getattr(t, attr)}")
        for name, read in self.gauges.items():
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {read():g}")
        for collect in self.collectors:
            out.extend(collect())
        return "\n".join(out) + "\n"
