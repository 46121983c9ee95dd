"""The HPA's replica calculator: from pod metrics and pods to a proposed replica count.

A port of the semantics of Kubernetes' ``pkg/controller/podautoscaler/replica_calculator.go``
(and the ratio helpers of its ``metrics`` package), called by :mod:`controllers.hpa` once per
Resource / ContainerResource metric. Pure: pods are plain dicts, metrics a :data:`PodMetrics`
map, the clock is an argument.

How a proposal is made (``ceil(ratio * pods)``):

- pods being deleted or ``Failed`` are ignored; ``Pending`` pods count as unready; pods without a
  sample are *missing*; for CPU, a pod is unready while it is not Ready or its sample predates
  one metrics window after it became Ready within ``cpu_initialization_period`` (5 min), and
  afterwards only if it became not Ready within ``delay_of_initial_readiness`` (30 s) of its
  start and never was Ready since;
- the usage ratio is computed over the ready pods with samples; within ``tolerance`` (0.1) of
  1.0 the count stays; otherwise, with no missing or unready pods to worry about, the ratio
  scales the ready pods;
- missing pods are then assumed to use 100 % of their request (or the target, if higher) when
  scaling down, nothing when scaling up; unready pods nothing when scaling up. A scale that
  this more conservative ratio would reverse, or bring within tolerance, does not happen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from machinery.meta import parse_rfc3339
from machinery.quantity import parse_quantity

Obj = dict[str, Any]

DEFAULT_TOLERANCE = 0.1
DEFAULT_CPU_INITIALIZATION_PERIOD = 300.0
DEFAULT_DELAY_OF_INITIAL_READINESS = 30.0


class ReplicaCalculationError(Exception):
    """No proposal can be made (no pods, no metrics, a missing request); the message is upstream's."""


@dataclass(frozen=True)
class PodMetric:
    """One pod's usage of a resource (milli-units) and when and over which window it was sampled."""

    value: int
    timestamp: datetime
    window: timedelta


PodMetrics = dict[str, PodMetric]
"""Pod name → its sample."""


@dataclass(frozen=True)
class ReplicaCalculator:
    """Kubernetes' replica calculator with its tunables (see the module docstring)."""

    tolerance: float = DEFAULT_TOLERANCE
    cpu_initialization_period: float = DEFAULT_CPU_INITIALIZATION_PERIOD
    delay_of_initial_readiness: float = DEFAULT_DELAY_OF_INITIAL_READINESS

    def resource_replicas(self, *, current_replicas: int, target_utilization: int, resource: str,
                          metrics: PodMetrics, pods: Iterable[Obj], now: datetime,
                          container: str = "") -> tuple[int, int, int]:
        """(replicas, utilization %, raw average usage in milli-units) for a Utilization target."""
        pod_list = list(pods)
        if not pod_list:
            raise ReplicaCalculationError("no pods returned by selector while calculating replica count")
        samples = dict(metrics)
        ready, unready, missing, ignored = self.group_pods(pod_list, samples, resource, now)
        for name in ignored | unready:
            samples.pop(name, None)
        if not samples:
            raise ReplicaCalculationError("did not receive metrics for targeted pods (pods might be unready)")
        requests = pod_requests(pod_list, resource, container)
        ratio, utilization, raw = utilization_ratio(samples, requests, target_utilization)
        scale_up_with_unready = bool(unready) and ratio > 1.0
        if not scale_up_with_unready and not missing:
            if abs(1.0 - ratio) <= self.tolerance:
                return current_replicas, utilization, raw
            return math.ceil(ratio * ready), utilization, raw
        if missing:
            if ratio < 1.0:
                fallback = max(100, target_utilization)
                for name in missing:
                    samples[name] = PodMetric(requests[name] * fallback // 100, now, timedelta())
            elif ratio > 1.0:
                for name in missing:
                    samples[name] = PodMetric(0, now, timedelta())
        if scale_up_with_unready:
            for name in unready:
                samples[name] = PodMetric(0, now, timedelta())
        new_ratio, _, _ = utilization_ratio(samples, requests, target_utilization)
        return self._rebalanced(current_replicas, ratio, new_ratio, len(samples)), utilization, raw

    def raw_resource_replicas(self, *, current_replicas: int, target_usage: int, resource: str,
                              metrics: PodMetrics, pods: Iterable[Obj], now: datetime) -> tuple[int, int]:
        """(replicas, average usage in milli-units) for an AverageValue target (milli-units)."""
        pod_list = list(pods)
        if not pod_list:
            raise ReplicaCalculationError("no pods returned by selector while calculating replica count")
        samples = dict(metrics)
        ready, unready, missing, ignored = self.group_pods(pod_list, samples, resource, now)
        for name in ignored | unready:
            samples.pop(name, None)
        if not samples:
            raise ReplicaCalculationError("did not receive metrics for targeted pods (pods might be unready)")
        return self.plain_metric_replicas(samples, current_replicas, target_usage, ready, missing, unready, now)

    def plain_metric_replicas(self, samples: PodMetrics, current_replicas: int, target_usage: int, ready: int,
                              missing: set[str], unready: set[str], now: datetime) -> tuple[int, int]:
        """calcPlainMetricReplicas: the average of the samples against a per-pod target."""
        ratio, usage = usage_ratio(samples, target_usage)
        scale_up_with_unready = bool(unready) and ratio > 1.0
        if not scale_up_with_unready and not missing:
            if abs(1.0 - ratio) <= self.tolerance:
                return current_replicas, usage
            return math.ceil(ratio * ready), usage
        samples = dict(samples)
        if missing:
            for name in missing:
                samples[name] = PodMetric(target_usage if ratio < 1.0 else 0, now, timedelta())
        if scale_up_with_unready:
            for name in unready:
                samples[name] = PodMetric(0, now, timedelta())
        new_ratio, _ = usage_ratio(samples, target_usage)
        return self._rebalanced(current_replicas, ratio, new_ratio, len(samples)), usage

    def _rebalanced(self, current: int, ratio: float, new_ratio: float, counted: int) -> int:
        if (abs(1.0 - new_ratio) <= self.tolerance or (ratio < 1.0 < new_ratio)
                or (ratio > 1.0 > new_ratio)):
            return current
        proposal = math.ceil(new_ratio * counted)
        if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
            return current
        return proposal

    def group_pods(self, pods: list[Obj], metrics: Mapping[str, PodMetric], resource: str,
                   now: datetime) -> tuple[int, set[str], set[str], set[str]]:
        """groupPods: (ready count, unready names, missing names, ignored names)."""
        ready = 0
        unready: set[str] = set()
        missing: set[str] = set()
        ignored: set[str] = set()
        for pod in pods:
            meta = pod.get("metadata") or {}
            status = pod.get("status") or {}
            name = str(meta.get("name", ""))
            phase = status.get("phase")
            if meta.get("deletionTimestamp") or phase == "Failed":
                ignored.add(name)
                continue
            if phase == "Pending":
                unready.add(name)
                continue
            sample = metrics.get(name)
            if sample is None:
                missing.add(name)
                continue
            if resource == "cpu" and self._cpu_unready(status, sample, now):
                unready.add(name)
                continue
            ready += 1
        return ready, unready, missing, ignored

    def _cpu_unready(self, status: Obj, sample: PodMetric, now: datetime) -> bool:
        condition = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        start = status.get("startTime")
        if condition is None or not start:
            return True
        started = parse_rfc3339(str(start))
        changed_text = condition.get("lastTransitionTime")
        changed = parse_rfc3339(str(changed_text)) if changed_text else started
        not_ready = condition.get("status") == "False"
        if started + timedelta(seconds=self.cpu_initialization_period) > now:
            return not_ready or sample.timestamp < changed + sample.window
        return not_ready and started + timedelta(seconds=self.delay_of_initial_readiness) > changed


def pod_requests(pods: Iterable[Obj], resource: str, container: str = "") -> dict[str, int]:
    """calculatePodRequests: pod name → the summed request (milli-units) of its containers (or of
    ``container``); every counted container must request ``resource``."""
    requests: dict[str, int] = {}
    for pod in pods:
        name = str((pod.get("metadata") or {}).get("name", ""))
        total = 0
        spec = pod.get("spec") or {}
        counted = list(spec.get("containers") or [])
        # Native sidecars run beside the app and are counted like containers, as upstream does.
        counted += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        for c in counted:
            if container and c.get("name") != container:
                continue
            value = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if value is None:
                raise ReplicaCalculationError(
                    f"missing request for {resource} in container {c.get('name', '')} of Pod {name}")
            total += parse_quantity(str(value)).milli_value()
        requests[name] = total
    return requests


def utilization_ratio(metrics: Mapping[str, PodMetric], requests: Mapping[str, int],
                      target_utilization: int) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (ratio to the target, utilization %, average raw usage)."""
    usage_total = request_total = counted = 0
    for name, sample in metrics.items():
        request = requests.get(name)
        if request is None:
            continue
        usage_total += sample.value
        request_total += request
        counted += 1
    if request_total == 0:
        raise ReplicaCalculationError("no metrics returned matched known pods")
    utilization = usage_total * 100 // request_total
    return utilization / target_utilization, utilization, usage_total // counted


def usage_ratio(metrics: Mapping[str, PodMetric], target_usage: int) -> tuple[float, int]:
    """GetMetricUsageRatio: (average / target, average) with Go's integer division."""
    total = sum(sample.value for sample in metrics.values())
    average = int(total / len(metrics)) if metrics else 0
    return average / target_usage, average
