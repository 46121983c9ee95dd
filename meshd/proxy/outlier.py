"""Outlier detection: passive health checking of one cluster's endpoints, with Envoy's semantics.

Owned by the cluster's :class:`~meshd.proxy.balancer.Balancer` (kept across pushes of the same
cluster, like its in-flight counts) when the cluster carries an
:class:`~meshd.api.resources.OutlierDetection` (Istio's ``trafficPolicy.outlierDetection``).
The HTTP proxy reports the outcome of every try to an endpoint (:meth:`OutlierDetector.report`:
the response status, or 503/504 for a connect failure, reset or timeout, as Envoy maps locally
originated errors when it does not split them); the TCP proxy reports connect failures and
successes. The balancer asks :meth:`OutlierDetector.available` which endpoints it may pick.

Envoy's algorithm, as implemented here:

* consecutive 5xx (``consecutive_5xx``) and consecutive gateway errors (502/503/504,
  ``consecutive_gateway_errors``) are counted per endpoint; any other status resets both; a
  count reaching its threshold ejects the endpoint at once (0 disables that detection type);
* no ejection while ``100 * ejected / endpoints`` is already ``>= max_ejection_percent`` (so
  the first ejection always happens when the percentage is above 0; the refused ejection is
  counted as an overflow);
* an ejection lasts ``base_ejection_time * n`` where ``n`` (the multiplier) grows by one with
  each ejection, capped at ``max_ejection_time``; ejected endpoints return at the first
  interval sweep after their time is up, and each sweep that finds an endpoint in service
  lowers its multiplier by one;
* panic (Envoy's ``healthy_panic_threshold``, Istio's ``minHealthPercent``): when fewer than
  ``min_health_percent`` of the endpoints are healthy, all of them are used; otherwise only the
  healthy ones -- possibly none, which the proxy answers 503 ``UH``.

Sweeps are computed lazily (no timer task per cluster): sweep ``k`` happens at ``epoch + k *
interval``; when the detector is consulted it applies every sweep that has passed since the last
one, in closed form per endpoint. The clock is injectable for tests.

Telemetry, named as Istio exposes Envoy's outlier statistics on ``/stats/prometheus``:
``envoy_cluster_outlier_detection_ejections_active`` (gauge),
``envoy_cluster_outlier_detection_ejections_enforced_total``,
``envoy_cluster_outlier_detection_ejections_enforced_consecutive_5xx``,
``envoy_cluster_outlier_detection_ejections_enforced_consecutive_gateway_failure`` and
``envoy_cluster_outlier_detection_ejections_overflow`` (counters), each with ``cluster_name``
(:func:`render`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from meshd.api.resources import Endpoint, OutlierDetection

__all__ = ["GATEWAY_ERRORS", "OutlierDetector", "render"]

HostKey = tuple[str, int]
Ejection = Literal["consecutive_5xx", "consecutive_gateway_failure"]
GATEWAY_ERRORS = frozenset({502, 503, 504})


class _Host:
    __slots__ = ("ejected_at", "five_xx", "gateway", "multiplier")

    def __init__(self) -> None:
        self.five_xx = 0
        self.gateway = 0
        self.multiplier = 0
        self.ejected_at: float | None = None


class OutlierDetector:
    """The health state of one cluster's endpoints (see the module docstring)."""

    def __init__(self, cluster: str, policy: OutlierDetection, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.policy = policy
        self.clock = clock
        self._hosts: dict[HostKey, _Host] = {}
        self._epoch = clock()
        self._sweep = 0
        """Index of the last sweep applied."""
        self.ejected = 0
        self.enforced: dict[Ejection, int] = {"consecutive_5xx": 0, "consecutive_gateway_failure": 0}
        self.overflow = 0

    def updated(self, policy: OutlierDetection, endpoints: Iterable[Endpoint]) -> OutlierDetector:
        """This detector with a new policy (state kept); endpoints no longer in the cluster are forgotten."""
        self._advance(self.clock())
        if policy.interval_ms != self.policy.interval_ms:  # re-base the sweeps on the new interval
            self._epoch = self.clock()
            self._sweep = 0
        self.policy = policy
        keep = {(e.address, e.port) for e in endpoints}
        for key in [k for k in self._hosts if k not in keep]:
            if self._hosts.pop(key).ejected_at is not None:
                self.ejected -= 1
        return self

    # --- reading ---------------------------------------------------------------------------------

    def is_ejected(self, endpoint: Endpoint) -> bool:
        self._advance(self.clock())
        host = self._hosts.get((endpoint.address, endpoint.port))
        return host is not None and host.ejected_at is not None

    def available(self, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        """The endpoints to balance over: the healthy ones, or all of them in panic."""
        self._advance(self.clock())
        if not self.ejected or not endpoints:
            return endpoints
        hosts = self._hosts
        healthy = tuple(e for e in endpoints
                        if (h := hosts.get((e.address, e.port))) is None or h.ejected_at is None)
        if 100.0 * len(healthy) / len(endpoints) < self.policy.min_health_percent:
            return endpoints  # panic: Envoy balances over every host
        return healthy

    # --- reporting -------------------------------------------------------------------------------

    def report(self, endpoint: Endpoint, status: int, total: int) -> None:
        """The outcome of one try to ``endpoint`` (a status; 503/504 for local failures); ``total``:
        the cluster's endpoint count."""
        now = self.clock()
        self._advance(now)
        key = (endpoint.address, endpoint.port)
        host = self._hosts.get(key)
        if status < 500:
            if host is not None:
                host.five_xx = host.gateway = 0
            return
        if host is None:
            host = self._hosts[key] = _Host()
        if host.ejected_at is not None:
            return  # a late result from an ejected host changes nothing
        policy = self.policy
        host.five_xx += 1
        host.gateway = host.gateway + 1 if status in GATEWAY_ERRORS else 0
        if policy.consecutive_gateway_errors and host.gateway >= policy.consecutive_gateway_errors:
            host.gateway = 0
            self._eject(host, "consecutive_gateway_failure", now, total)
        elif policy.consecutive_5xx and host.five_xx >= policy.consecutive_5xx:
            host.five_xx = 0
            self._eject(host, "consecutive_5xx", now, total)

    def _eject(self, host: _Host, kind: Ejection, now: float, total: int) -> None:
        if total <= 0 or 100.0 * self.ejected / total >= self.policy.max_ejection_percent:
            self.overflow += 1
            return
        policy = self.policy
        if host.multiplier * policy.base_ejection_time_ms < policy.max_ejection_time_ms + policy.base_ejection_time_ms:
            host.multiplier += 1
        host.ejected_at = now
        self.ejected += 1
        self.enforced[kind] += 1

    # --- sweeps ----------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        interval = self.policy.interval_ms / 1000.0
        sweep = int((now - self._epoch) // interval)
        if sweep <= self._sweep:
            return
        last, self._sweep = self._sweep, sweep
        policy = self.policy
        for host in self._hosts.values():
            passed = sweep - last
            if host.ejected_at is not None:
                duration = min(policy.base_ejection_time_ms * host.multiplier, policy.max_ejection_time_ms) / 1000.0
                back = max(last + 1, math.ceil((host.ejected_at + duration - self._epoch) / interval - 1e-9))
                if back > sweep:
                    continue
                host.ejected_at = None
                host.five_xx = host.gateway = 0
                self.ejected -= 1
                passed = sweep - back  # the sweep that returns a host does not lower its multiplier
            if host.multiplier:
                host.multiplier = max(0, host.multiplier - passed)


def render(detectors: Iterable[OutlierDetector]) -> list[str]:
    """Prometheus text lines for every detector's statistics."""
    items = list(detectors)
    if not items:
        return []
    out: list[str] = []
    series: tuple[tuple[str, str, Callable[[OutlierDetector], int]], ...] = (
        ("ejections_active", "gauge", lambda d: d.ejected),
        ("ejections_enforced_total", "counter", lambda d: sum(d.enforced.values())),
        ("ejections_enforced_consecutive_5xx", "counter", lambda d: d.enforced["consecutive_5xx"]),
        ("ejections_enforced_consecutive_gateway_failure", "counter",
         lambda d: d.enforced["consecutive_gateway_failure"]),
        ("ejections_overflow", "counter", lambda d: d.overflow),
    )
    for name, kind, read in series:
        metric = f"envoy_cluster_outlier_detection_{name}"
        out.append(f"# TYPE {metric} {kind}")
        for detector in items:
            detector._advance(detector.clock())
            cluster = detector.cluster.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'{metric}{{cluster_name="{cluster}"}} {read(detector)}')
    return out
