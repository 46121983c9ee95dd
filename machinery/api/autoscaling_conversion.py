"""Conversion of HorizontalPodAutoscalers between autoscaling/v1 and autoscaling/v2 (the storage version).

Used by the apiserver's v1 registry (objects are stored at v2 and served at either version) and by
the table printer. As in Kubernetes (pkg/apis/autoscaling/v1/conversion.go):

- v1 ``spec.targetCPUUtilizationPercentage`` is v2's ``Resource`` metric ``cpu`` with an
  ``Utilization`` target; v1 ``status.currentCPUUtilizationPercentage`` is the matching
  ``currentMetrics`` entry;
- what v1 cannot say travels in annotations so a v2 → v1 → v2 round trip loses nothing:
  ``autoscaling.alpha.kubernetes.io/metrics`` (the other metrics),
  ``autoscaling.alpha.kubernetes.io/current-metrics`` (their current values),
  ``autoscaling.alpha.kubernetes.io/behavior`` and ``autoscaling.alpha.kubernetes.io/conditions``.
  Resource and ContainerResource metrics are written in v1's shape (``targetAverageUtilization``,
  ``targetAverageValue``; ``currentAverageUtilization``, ``currentAverageValue``); other metric
  types keep their v2 shape. A v2 object read at v1 never carries these annotations back into v2.

Pure functions over plain dicts; the inputs are never mutated.
"""

from __future__ import annotations

import copy
import json
from typing import Any

Obj = dict[str, Any]

V1 = "autoscaling/v1"
V2 = "autoscaling/v2"
METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
ROUND_TRIP_ANNOTATIONS = (METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, BEHAVIOR_ANNOTATION,
                          CONDITIONS_ANNOTATION)
_RESOURCE_TYPES = ("Resource", "ContainerResource")
_SOURCE_FIELD = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
                 "Object": "object", "External": "external"}


def _is_cpu_utilization(metric: Obj) -> bool:
    resource = metric.get("resource") or {}
    target = resource.get("target") or {}
    return (metric.get("type") == "Resource" and resource.get("name") == "cpu"
            and target.get("type") == "Utilization" and target.get("averageUtilization") is not None)


def _metric_to_v1(metric: Obj) -> Obj:
    kind = str(metric.get("type") or "")
    field = _SOURCE_FIELD.get(kind, "")
    source = copy.deepcopy(metric.get(field) or {})
    if kind in _RESOURCE_TYPES:
        target = source.pop("target", None) or {}
        if target.get("averageUtilization") is not None:
            source["targetAverageUtilization"] = target["averageUtilization"]
        if target.get("averageValue") is not None:
            source["targetAverageValue"] = target["averageValue"]
    return {"type": kind, field: source} if field else {"type": kind}


def _metric_to_v2(metric: Obj) -> Obj:
    kind = str(metric.get("type") or "")
    field = _SOURCE_FIELD.get(kind, "")
    source = copy.deepcopy(metric.get(field) or {})
    if kind in _RESOURCE_TYPES and "target" not in source:
        target: Obj = {}
        if "targetAverageUtilization" in source:
            target = {"type": "Utilization", "averageUtilization": source.pop("targetAverageUtilization")}
        if "targetAverageValue" in source:
            target = {"type": "AverageValue", "averageValue": source.pop("targetAverageValue")}
        source["target"] = target
    return {"type": kind, field: source} if field else {"type": kind}


def _status_metric_to_v1(metric: Obj) -> Obj:
    kind = str(metric.get("type") or "")
    field = _SOURCE_FIELD.get(kind, "")
    source = copy.deepcopy(metric.get(field) or {})
    if kind in _RESOURCE_TYPES:
        current = source.pop("current", None) or {}
        if current.get("averageUtilization") is not None:
            source["currentAverageUtilization"] = current["averageUtilization"]
        if current.get("averageValue") is not None:
            source["currentAverageValue"] = current["averageValue"]
    return {"type": kind, field: source} if field else {"type": kind}


def _status_metric_to_v2(metric: Obj) -> Obj:
    kind = str(metric.get("type") or "")
    field = _SOURCE_FIELD.get(kind, "")
    source = copy.deepcopy(metric.get(field) or {})
    if kind in _RESOURCE_TYPES and "current" not in source:
        current: Obj = {}
        if "currentAverageUtilization" in source:
            current["averageUtilization"] = source.pop("currentAverageUtilization")
        if "currentAverageValue" in source:
            current["averageValue"] = source.pop("currentAverageValue")
        source["current"] = current
    return {"type": kind, field: source} if field else {"type": kind}


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _load(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def to_v1(obj: Obj) -> Obj:
    """A v2 HorizontalPodAutoscaler as autoscaling/v1 serves it (a new dict)."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = V1
    meta = out.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    spec = out.get("spec") or {}
    v1_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    others: list[Obj] = []
    for metric in spec.get("metrics") or []:
        if _is_cpu_utilization(metric) and "targetCPUUtilizationPercentage" not in v1_spec:
            v1_spec["targetCPUUtilizationPercentage"] = metric["resource"]["target"]["averageUtilization"]
        else:
            others.append(_metric_to_v1(metric))
    if others:
        annotations[METRICS_ANNOTATION] = _dump(others)
    if spec.get("behavior"):
        annotations[BEHAVIOR_ANNOTATION] = _dump(spec["behavior"])
    if "spec" in out:
        out["spec"] = v1_spec
    status = out.get("status")
    if status is not None:
        v1_status: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime") if k in status}
        v1_status["currentReplicas"] = int(status.get("currentReplicas") or 0)
        v1_status["desiredReplicas"] = int(status.get("desiredReplicas") or 0)
        current_others: list[Obj] = []
        for metric in status.get("currentMetrics") or []:
            current = ((metric.get("resource") or {}).get("current") or {})
            if (metric.get("type") == "Resource" and (metric.get("resource") or {}).get("name") == "cpu"
                    and current.get("averageUtilization") is not None
                    and "currentCPUUtilizationPercentage" not in v1_status):
                v1_status["currentCPUUtilizationPercentage"] = current["averageUtilization"]
            else:
                current_others.append(_status_metric_to_v1(metric))
        if current_others:
            annotations[CURRENT_METRICS_ANNOTATION] = _dump(current_others)
        if status.get("conditions"):
            annotations[CONDITIONS_ANNOTATION] = _dump(status["conditions"])
        out["status"] = v1_status
    if annotations:
        meta["annotations"] = annotations
    return out


def to_v2(obj: Obj) -> Obj:
    """An autoscaling/v1 HorizontalPodAutoscaler as stored at v2 (a new dict)."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = V2
    meta = out.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    extra = {name: annotations.pop(name, None) for name in ROUND_TRIP_ANNOTATIONS}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    if "spec" in out:
        spec = out["spec"] or {}
        v2_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
        metrics: list[Obj] = []
        if spec.get("targetCPUUtilizationPercentage") is not None:
            metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}}})
        for metric in _load(extra[METRICS_ANNOTATION]) or []:
            if isinstance(metric, dict):
                metrics.append(_metric_to_v2(metric))
        if metrics:
            v2_spec["metrics"] = metrics
        behavior = _load(extra[BEHAVIOR_ANNOTATION])
        if isinstance(behavior, dict):
            v2_spec["behavior"] = behavior
        out["spec"] = v2_spec
    status = out.get("status")
    if status is not None:
        v2_status: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime") if k in status}
        if status.get("currentReplicas"):
            v2_status["currentReplicas"] = status["currentReplicas"]
        v2_status["desiredReplicas"] = int(status.get("desiredReplicas") or 0)
        current_metrics: list[Obj] = []
        if status.get("currentCPUUtilizationPercentage") is not None:
            current_metrics.append({"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": status["currentCPUUtilizationPercentage"]}}})
        for metric in _load(extra[CURRENT_METRICS_ANNOTATION]) or []:
            if isinstance(metric, dict):
                current_metrics.append(_status_metric_to_v2(metric))
        if current_metrics:
            v2_status["currentMetrics"] = current_metrics
        conditions = _load(extra[CONDITIONS_ANNOTATION])
        if isinstance(conditions, list):
            v2_status["conditions"] = conditions
        out["status"] = v2_status
    return out
