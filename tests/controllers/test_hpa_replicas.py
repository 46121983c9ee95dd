"""The HPA replica calculator, case by case as Kubernetes' replica_calculator_test.go reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controllers.hpa_replicas import PodMetric, ReplicaCalculationError, ReplicaCalculator, pod_requests

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=15)
COOL = NOW - timedelta(minutes=10)  # started long ago: out of the CPU initialization period
HOT = NOW - timedelta(seconds=20)  # started (and became ready) just now


def ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Case:
    current: int
    levels: list[int | None]
    """Per pod: milli-CPU used, None for a pod without a sample."""
    target: int = 50
    requests: list[int] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    started: list[datetime] = field(default_factory=list)
    deleting: list[bool] = field(default_factory=list)

    def pods(self) -> list[dict[str, Any]]:
        out = []
        for i in range(len(self.levels)):
            start = self.started[i] if self.started else COOL
            cond = {"type": "Ready", "status": self.ready[i] if self.ready else "True",
                    "lastTransitionTime": ts(start + timedelta(seconds=5))}
            meta: dict[str, Any] = {"name": f"p{i}", "namespace": "default"}
            if self.deleting and self.deleting[i]:
                meta["deletionTimestamp"] = ts(NOW)
            request = self.requests[i] if self.requests else 1000
            out.append({"metadata": meta,
                        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": f"{request}m"}}}]},
                        "status": {"phase": self.phases[i] if self.phases else "Running", "startTime": ts(start),
                                   "conditions": [cond]}})
        return out

    def metrics(self) -> dict[str, PodMetric]:
        return {f"p{i}": PodMetric(level, NOW - timedelta(seconds=1), WINDOW)
                for i, level in enumerate(self.levels) if level is not None}


@pytest.mark.parametrize(("case", "replicas", "utilization"), [
    pytest.param(Case(3, [300, 500, 700], target=30), 5, 50, id="scale-up"),
    pytest.param(Case(3, [300, 500, 700], target=30, ready=["False", "True", "True"]), 4, 60,
                 id="scale-up-unready-pods-count-as-zero"),
    pytest.param(Case(3, [300, 500, 700], target=30, started=[HOT, COOL, COOL]), 4, 60,
                 id="scale-up-hot-cpu-pod-is-unready"),
    pytest.param(Case(2, [500, 700, 0, 0], target=30, phases=["Running", "Running", "Failed", "Failed"]), 4, 60,
                 id="scale-up-ignores-failed-pods"),
    pytest.param(Case(2, [500, 700, 0, 0], target=30, deleting=[False, False, True, True]), 4, 60,
                 id="scale-up-ignores-deleted-pods"),
    pytest.param(Case(3, [500, 700, 0], target=30, phases=["Running", "Running", "Pending"]), 4, 60,
                 id="scale-up-pending-pod-counts-as-zero"),
    pytest.param(Case(5, [100, 300, 500, 250, 250]), 3, 28, id="scale-down"),
    pytest.param(Case(5, [100, 300, 500, 250, 250], ready=["True", "True", "True", "False", "False"]), 2, 30,
                 id="scale-down-excludes-unready-pods"),
    pytest.param(Case(3, [1010, 1030, 1020], target=100, requests=[900, 1000, 1100]), 3, 102,
                 id="within-tolerance"),
    pytest.param(Case(4, [1400, 1600, None, None]), 6, 150, id="scale-up-missing-pods-count-as-zero"),
    pytest.param(Case(4, [900, 1000, None, None]), 4, 95, id="missing-pods-would-reverse-the-scale-up"),
    pytest.param(Case(4, [100, 100, None, None]), 4, 10, id="missing-pods-would-reverse-the-scale-down"),
    pytest.param(Case(4, [100, 100, None, None], target=200), 3, 10,
                 id="scale-down-missing-pods-count-as-the-target"),
])
def test_resource_utilization_proposals(case: Case, replicas: int, utilization: int) -> None:
    got, util, _raw = ReplicaCalculator().resource_replicas(
        current_replicas=case.current, target_utilization=case.target, resource="cpu", metrics=case.metrics(),
        pods=case.pods(), now=NOW)
    assert (got, util) == (replicas, utilization)


def test_raw_average_value_scales_on_the_mean() -> None:
    case = Case(2, [400, 600])
    got, usage = ReplicaCalculator().raw_resource_replicas(
        current_replicas=2, target_usage=250, resource="cpu", metrics=case.metrics(), pods=case.pods(), now=NOW)
    assert (got, usage) == (4, 500)


def test_memory_ignores_readiness() -> None:
    case = Case(2, [400, 600], ready=["False", "True"])
    got, _util, _raw = ReplicaCalculator().resource_replicas(
        current_replicas=2, target_utilization=25, resource="memory",
        metrics=case.metrics(), pods=[_memory(p) for p in case.pods()], now=NOW)
    assert got == 4


def _memory(pod: dict[str, Any]) -> dict[str, Any]:
    pod["spec"]["containers"][0]["resources"]["requests"] = {"memory": "1000m"}
    return pod


@pytest.mark.parametrize(("case", "metrics", "message"), [
    pytest.param(Case(1, []), {}, "no pods returned by selector while calculating replica count", id="no-pods"),
    pytest.param(Case(2, [100, 100], ready=["False", "False"], started=[HOT, HOT]), None,
                 "did not receive metrics for targeted pods (pods might be unready)", id="only-unready"),
])
def test_nothing_to_propose(case: Case, metrics: dict[str, PodMetric] | None, message: str) -> None:
    with pytest.raises(ReplicaCalculationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ReplicaCalculator().resource_replicas(current_replicas=case.current, target_utilization=50, resource="cpu",
                                              metrics=case.metrics() if metrics is None else metrics,
                                              pods=case.pods(), now=NOW)


def test_a_container_without_request_is_an_error() -> None:
    pod = Case(1, [1]).pods()[0]
    pod["spec"]["containers"].append({"name": "sidecar"})
    with pytest.raises(ReplicaCalculationError, match="missing request for cpu in container sidecar of Pod p0"):
        pod_requests([pod], "cpu")
    assert pod_requests([pod], "cpu", container="app") == {"p0": 1000}
