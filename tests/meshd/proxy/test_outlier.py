"""Outlier detection on a fake clock: consecutive errors eject, ejections grow and decay, the
max-ejection bound, panic; the balancer picks around ejected endpoints; shadow hosts."""

from __future__ import annotations

import random

import pytest

from meshd.api.resources import Cluster, Endpoint, OutlierDetection
from meshd.proxy.balancer import Balancer
from meshd.proxy.mirror import shadow_host
from meshd.proxy.outlier import OutlierDetector, render

EPS = tuple(Endpoint(f"10.0.0.{i}", 80) for i in range(1, 5))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def detector(clock: Clock, **policy: float) -> OutlierDetector:
    values = {"interval_ms": 1000, "base_ejection_time_ms": 2000, "max_ejection_percent": 100.0, **policy}
    return OutlierDetector("outbound|80||s.default.svc.cluster.local",
                           OutlierDetection(**values),  # type: ignore[arg-type]
                           clock=clock)


def fail(d: OutlierDetector, endpoint: Endpoint, times: int, status: int = 500) -> None:
    for _ in range(times):
        d.report(endpoint, status, len(EPS))


def test_five_consecutive_5xx_eject_and_a_success_resets_the_count() -> None:
    clock = Clock()
    d = detector(clock)
    fail(d, EPS[0], 4)
    d.report(EPS[0], 200, len(EPS))
    fail(d, EPS[0], 4)
    assert not d.is_ejected(EPS[0])
    fail(d, EPS[0], 1)
    assert d.is_ejected(EPS[0]) and d.ejected == 1
    assert d.available(EPS) == EPS[1:]


def test_gateway_errors_count_only_502_503_504_and_a_zero_threshold_disables() -> None:
    clock = Clock()
    d = detector(clock, consecutive_5xx=0, consecutive_gateway_errors=2)
    fail(d, EPS[0], 10, status=500)
    assert not d.is_ejected(EPS[0])
    fail(d, EPS[0], 1, status=503)
    fail(d, EPS[0], 1, status=504)
    assert d.is_ejected(EPS[0]) and d.enforced["consecutive_gateway_failure"] == 1


def test_ejection_time_grows_with_each_ejection_returns_at_a_sweep_and_decays() -> None:
    clock = Clock()
    d = detector(clock)  # sweeps every 1 s from t=100; base 2 s
    clock.now = 100.5
    fail(d, EPS[0], 5)
    clock.now = 102.4
    assert d.is_ejected(EPS[0])  # 2 s are up at 102.5: back at the next sweep
    clock.now = 103.0
    assert not d.is_ejected(EPS[0])
    fail(d, EPS[0], 5)  # second ejection in a row: 2 x 2 s
    clock.now = 106.9
    assert d.is_ejected(EPS[0])
    clock.now = 107.0
    assert not d.is_ejected(EPS[0])
    clock.now = 120.0  # healthy sweeps bring the multiplier back down
    fail(d, EPS[0], 5)
    clock.now = 123.0
    assert not d.is_ejected(EPS[0])  # 1 x 2 s again


def test_max_ejection_percent_bounds_ejections_but_the_first_always_happens() -> None:
    clock = Clock()
    d = detector(clock, max_ejection_percent=10.0)
    fail(d, EPS[0], 5)
    fail(d, EPS[1], 5)
    assert d.is_ejected(EPS[0]) and not d.is_ejected(EPS[1])
    assert d.overflow == 1


@pytest.mark.parametrize(("min_health", "available"), [
    pytest.param(0.0, EPS[2:], id="no-panic"),
    pytest.param(60.0, EPS, id="panic-below-threshold"),
])
def test_panic_threshold(min_health: float, available: tuple[Endpoint, ...]) -> None:
    d = detector(Clock(), min_health_percent=min_health)
    fail(d, EPS[0], 5)
    fail(d, EPS[1], 5)
    assert tuple(d.available(EPS)) == available


def test_balancer_skips_ejected_endpoints_keeps_state_across_pushes_and_renders_metrics() -> None:
    clock = Clock()
    cluster = Cluster(name="c", service="s", port=80, protocol="http", endpoints=EPS[:2],
                      outlier_detection=OutlierDetection(base_ejection_time_ms=2000, max_ejection_percent=100.0))
    balancer = Balancer(cluster, random.Random(1))
    assert balancer.outlier is not None
    balancer.outlier.clock = clock
    for _ in range(5):
        balancer.report(EPS[0], 503)
    assert [balancer.pick() for _ in range(4)] == [EPS[1]] * 4
    balancer = balancer.updated(cluster)
    assert [balancer.pick() for _ in range(4)] == [EPS[1]] * 4
    for _ in range(5):
        balancer.report(EPS[1], 503)
    assert balancer.pick() is None  # every endpoint ejected, no panic threshold: 503 UH
    lines = render([balancer.outlier])  # type: ignore[list-item]
    assert 'envoy_cluster_outlier_detection_ejections_active{cluster_name="c"} 2' in lines
    assert 'envoy_cluster_outlier_detection_ejections_enforced_consecutive_5xx{cluster_name="c"} 2' in lines
    gone = balancer.updated(Cluster(name="c", service="s", port=80, protocol="http", endpoints=EPS[2:],
                                    outlier_detection=cluster.outlier_detection))
    assert gone.outlier is not None and gone.outlier.ejected == 0  # removed endpoints are forgotten
    plain = Balancer(Cluster(name="p", service="s", port=80, protocol="http", endpoints=EPS[:1]), random.Random(1))
    for _ in range(10):
        plain.report(EPS[0], 500)
    assert plain.outlier is None and plain.pick() == EPS[0]


@pytest.mark.parametrize(("authority", "shadow"), [
    pytest.param("reviews:9080", "reviews-shadow:9080", id="port-kept"),
    pytest.param("reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local-shadow", id="no-port"),
    pytest.param("[::1]:80", "[::1]-shadow:80", id="ipv6"),
])
def test_shadow_host(authority: str, shadow: str) -> None:
    assert shadow_host(authority) == shadow
