"""Defaults and validation of HorizontalPodAutoscalers (``SetDefaults_HorizontalPodAutoscaler`` of
autoscaling/v1 and v2, ``ValidateHorizontalPodAutoscaler`` of pkg/apis/autoscaling/validation).

Registered in :data:`machinery.api.defaults.DEFAULTERS` and :data:`machinery.api.validation.CHECKS`
through :data:`AUTOSCALING_DEFAULTERS` and :data:`AUTOSCALING_CHECKS`. Both versions share one
kind name, so each function looks at ``apiVersion``; a v1 object is validated in its v2 form
(:mod:`machinery.api.autoscaling_conversion`), with v1's field names where they differ. The
controller reads :func:`scale_up_rules` and :func:`scale_down_rules` for the behavior of an HPA
that leaves a direction unset.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from machinery.api.autoscaling_conversion import V1, to_v2
from machinery.api.names import Errors
from machinery.api.validation_pod import label_selector

Obj = dict[str, Any]
Check = Callable[[Errors, Obj, Obj | None], None]

DEFAULT_CPU_UTILIZATION = 80
METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
TARGET_TYPES = ("AverageValue", "Utilization", "Value")
POLICY_TYPES = ("Percent", "Pods")
SELECT_POLICIES = ("Disabled", "Max", "Min")
MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_WINDOW_SECONDS = 3600

_SCALE_UP_DEFAULT: Obj = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                 {"type": "Percent", "value": 100, "periodSeconds": 15}],
}
_SCALE_DOWN_DEFAULT: Obj = {
    # No window: the controller's --horizontal-pod-autoscaler-downscale-stabilization (300 s) applies.
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}


def _rules(given: Obj | None, default: Obj) -> Obj:
    """GenerateHPAScale{Up,Down}Rules: the default rules, or the given ones with unset fields filled."""
    if given is None:
        return copy.deepcopy(default)
    rules = copy.deepcopy(given)
    if not rules.get("policies"):
        rules["policies"] = copy.deepcopy(default["policies"])
    if rules.get("selectPolicy") is None:
        rules["selectPolicy"] = default["selectPolicy"]
    if rules.get("stabilizationWindowSeconds") is None and "stabilizationWindowSeconds" in default:
        rules["stabilizationWindowSeconds"] = default["stabilizationWindowSeconds"]
    return rules


def scale_up_rules(given: Obj | None) -> Obj:
    """The scale-up rules of a behavior (Kubernetes' defaults where unset)."""
    return _rules(given, _SCALE_UP_DEFAULT)


def scale_down_rules(given: Obj | None) -> Obj:
    """The scale-down rules of a behavior (Kubernetes' defaults where unset)."""
    return _rules(given, _SCALE_DOWN_DEFAULT)


def horizontal_pod_autoscaler(obj: Obj) -> None:
    """minReplicas 1; v2: a CPU target of 80 % without metrics, behavior filled in when given."""
    spec = obj.setdefault("spec", {})
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if obj.get("apiVersion") == V1:
        return
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]
    behavior = spec.get("behavior")
    if behavior is not None:
        behavior["scaleUp"] = scale_up_rules(behavior.get("scaleUp"))
        behavior["scaleDown"] = scale_down_rules(behavior.get("scaleDown"))


def _target(errs: Errors, path: str, target: Obj | None, *, resource: bool) -> None:
    if not target:
        errs.required(f"{path}.target", "must specify a metric target")
        return
    kind = target.get("type")
    if not kind:
        errs.required(f"{path}.target.type", "must specify a metric target type")
    elif kind not in TARGET_TYPES:
        errs.not_supported(f"{path}.target.type", kind, TARGET_TYPES)
    utilization = target.get("averageUtilization")
    if utilization is not None and utilization < 1:
        errs.invalid(f"{path}.target.averageUtilization", utilization, "must be greater than 0")
    if kind == "Utilization" and utilization is None:
        errs.required(f"{path}.target.averageUtilization", "must set either a target raw value or a target "
                      "utilization")
    if kind == "Utilization" and not resource:
        errs.invalid(f"{path}.target.type", kind, "must be either Value or AverageValue")
    if kind == "AverageValue" and target.get("averageValue") is None:
        errs.required(f"{path}.target.averageValue", "must set either a target value for metric or a per-pod "
                      "target")
    if kind == "Value" and target.get("value") is None:
        errs.required(f"{path}.target.value", "must set either a target value for metric or a per-pod target")


def _metric(errs: Errors, path: str, metric: Obj) -> None:
    kind = metric.get("type")
    if not kind:
        errs.required(f"{path}.type", "must specify a metric source type")
        return
    if kind not in METRIC_TYPES:
        errs.not_supported(f"{path}.type", kind, METRIC_TYPES)
        return
    field = {"ContainerResource": "containerResource", "External": "external", "Object": "object",
             "Pods": "pods", "Resource": "resource"}[kind]
    source = metric.get(field)
    if not source:
        errs.required(f"{path}.{field}", f"must populate information for the given metric source "
                      f"(only allowed when type is {kind})")
        return
    for other in ("containerResource", "external", "object", "pods", "resource"):
        if other != field and metric.get(other) is not None:
            errs.forbidden(f"{path}.{other}", "must populate the given metric source only")
    if kind in ("Resource", "ContainerResource"):
        if not source.get("name"):
            errs.required(f"{path}.{field}.name", "must specify a resource name")
        if kind == "ContainerResource" and not source.get("container"):
            errs.required(f"{path}.{field}.container", "must specify a container")
        _target(errs, f"{path}.{field}", source.get("target"), resource=True)
        return
    ident = source.get("metric") or {}
    if not ident.get("name"):
        errs.required(f"{path}.{field}.metric.name", "must specify a metric name")
    if ident.get("selector"):
        label_selector(errs, f"{path}.{field}.metric.selector", ident["selector"])
    _target(errs, f"{path}.{field}", source.get("target"), resource=False)


def _scaling_rules(errs: Errors, path: str, rules: Obj | None) -> None:
    if rules is None:
        return
    window = rules.get("stabilizationWindowSeconds")
    if window is not None and not 0 <= window <= MAX_STABILIZATION_WINDOW_SECONDS:
        errs.invalid(f"{path}.stabilizationWindowSeconds", window,
                     f"must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}" if window > 0
                     else "must be greater than or equal to zero")
    select = rules.get("selectPolicy")
    if select is not None and select not in SELECT_POLICIES:
        errs.not_supported(f"{path}.selectPolicy", select, SELECT_POLICIES)
    policies = rules.get("policies")
    if policies is not None and not policies:
        errs.required(f"{path}.policies", "must specify at least one Policy")
    for i, policy in enumerate(policies or []):
        p = f"{path}.policies[{i}]"
        kind = policy.get("type")
        if kind not in POLICY_TYPES:
            errs.not_supported(f"{p}.type", kind, POLICY_TYPES)
        value = policy.get("value")
        if value is None or value <= 0:
            errs.invalid(f"{p}.value", value, "must be greater than zero")
        period = policy.get("periodSeconds")
        if period is None or period <= 0:
            errs.invalid(f"{p}.periodSeconds", period, "must be greater than zero")
        elif period > MAX_PERIOD_SECONDS:
            errs.invalid(f"{p}.periodSeconds", period, f"must be less than or equal to {MAX_PERIOD_SECONDS}")


def validate_horizontal_pod_autoscaler(errs: Errors, obj: Obj, old: Obj | None) -> None:
    """ValidateHorizontalPodAutoscaler(Update): bounds, target reference, metrics, behavior."""
    v1 = obj.get("apiVersion") == V1
    form = to_v2(obj) if v1 else obj
    spec = form.get("spec") or {}
    min_replicas = spec.get("minReplicas")
    if min_replicas is not None and min_replicas < 1:
        errs.invalid("spec.minReplicas", min_replicas, "must be greater than or equal to 1")
    max_replicas = spec.get("maxReplicas")
    if max_replicas is None or max_replicas < 1:
        errs.invalid("spec.maxReplicas", max_replicas or 0, "must be greater than 0")
    elif min_replicas is not None and max_replicas < min_replicas:
        errs.invalid("spec.maxReplicas", max_replicas, "must be greater than or equal to `minReplicas`")
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind"):
        errs.required("spec.scaleTargetRef.kind")
    if not ref.get("name"):
        errs.required("spec.scaleTargetRef.name")
    elif "/" in ref["name"] or ref["name"] in (".", ".."):
        errs.invalid("spec.scaleTargetRef.name", ref["name"], "may not contain '/'")
    if v1:
        target = (obj.get("spec") or {}).get("targetCPUUtilizationPercentage")
        if target is not None and target < 1:
            errs.invalid("spec.targetCPUUtilizationPercentage", target, "must be greater than 0")
        return
    for i, metric in enumerate(spec.get("metrics") or []):
        _metric(errs, f"spec.metrics[{i}]", metric)
    behavior = spec.get("behavior") or {}
    _scaling_rules(errs, "spec.behavior.scaleUp", behavior.get("scaleUp"))
    _scaling_rules(errs, "spec.behavior.scaleDown", behavior.get("scaleDown"))


AUTOSCALING_DEFAULTERS: dict[str, Callable[[Obj], None]] = {"HorizontalPodAutoscaler": horizontal_pod_autoscaler}
AUTOSCALING_CHECKS: dict[str, Check] = {"HorizontalPodAutoscaler": validate_horizontal_pod_autoscaler}
