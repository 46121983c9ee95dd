"""Validation of ResourceQuota, LimitRange and PodTemplate with Kubernetes' field paths and messages
(``ValidateResourceQuota`` and its scope rules, ``ValidateLimitRange``, ``ValidatePodTemplate`` in
pkg/apis/core/validation).

Registered in :data:`machinery.api.validation.CHECKS` through :data:`QUOTA_CHECKS`; the LimitRange
defaulter is registered in :data:`machinery.api.defaults.DEFAULTERS` through :data:`QUOTA_DEFAULTERS`.
"""

from collections.abc import Callable
from typing import Any

from machinery.api import names
from machinery.api.names import Errors
from machinery.api.validation_pod import pod_spec
from machinery.quantity import Quantity, parse_quantity
from machinery.quota.limitranges import default_limit_range
from machinery.quota.resourcelists import (
    SCOPE_OPERATORS,
    SCOPES,
    is_hugepages,
    is_integer_name,
    is_standard_quota_name,
    scope_applies_to,
)

Obj = dict[str, Any]
Check = Callable[[Errors, Obj, Obj | None], None]

NOT_QUOTA_NAME = "must be a standard resource for quota"
NOT_LIMIT_NAME = "must be a standard limit type or fully qualified"
NOT_INTEGER = "must be an integer"
NEGATIVE = "must be greater than or equal to 0"
CONTAINER_NAMES = ("cpu", "memory", "ephemeral-storage")


def _quantity(errs: Errors, path: str, value: Any) -> Quantity | None:
    try:
        return parse_quantity(value)
    except (ValueError, TypeError):
        errs.invalid(path, value, "must be a valid resource quantity")
        return None


def _quota_name(errs: Errors, path: str, name: str) -> bool:
    before = len(errs.causes)
    errs.check(path, name, names.qualified_name)
    if len(errs.causes) == before and "/" not in name and not is_standard_quota_name(name):
        errs.invalid(path, name, NOT_QUOTA_NAME)
    return len(errs.causes) == before


def _quota_list(errs: Errors, path: str, values: Obj | None) -> None:
    for name, value in sorted((values or {}).items()):
        p = f"{path}[{name}]"
        if not _quota_name(errs, p, str(name)):
            continue
        q = _quantity(errs, p, value)
        if q is None:
            continue
        if q.amount < 0:
            errs.invalid(p, str(q), NEGATIVE)
        if is_integer_name(str(name)) and q.amount.denominator != 1:
            errs.invalid(p, str(q), NOT_INTEGER)


def _scopes(errs: Errors, spec: Obj) -> None:
    scopes = [str(s) for s in spec.get("scopes") or []]
    hard = [str(k) for k in (spec.get("hard") or {})]
    for scope in scopes:
        if scope not in SCOPES:
            errs.invalid("spec.scopes", scopes, "unsupported scope")
        for name in sorted(hard):
            if is_standard_quota_name(name) and not scope_applies_to(scope, name):
                errs.invalid("spec.scopes", scopes, "unsupported scope applied to resource")
    for pair in (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating")):
        if set(pair) <= set(scopes):
            errs.invalid("spec.scopes", scopes, "conflicting scopes")
    selector = spec.get("scopeSelector")
    if selector is None:
        return
    expressions = selector.get("matchExpressions") or []
    if not expressions:
        errs.required("spec.scopeSelector.matchExpressions", "must have at least one scope selector requirement")
    for i, expr in enumerate(expressions):
        p = f"spec.scopeSelector.matchExpressions[{i}]"
        scope, operator, values = expr.get("scopeName"), expr.get("operator"), expr.get("values") or []
        if scope not in SCOPES:
            errs.invalid(f"{p}.scopeName", scope, "unsupported scope")
        if operator not in SCOPE_OPERATORS:
            errs.invalid(f"{p}.operator", operator, "not a valid selector operator")
            continue
        if scope in SCOPES and scope != "PriorityClass" and operator not in ("Exists", "DoesNotExist"):
            errs.invalid(f"{p}.operator", operator,
                         "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, "
                         "ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, "
                         "ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity")
        if operator in ("In", "NotIn") and not values:
            errs.required(f"{p}.values", "must be at least one value when `operator` is 'In' or 'NotIn' for "
                                          "scope selector")
        if operator in ("Exists", "DoesNotExist") and values:
            errs.invalid(f"{p}.values", values, "must be no value when `operator` is 'Exist' or 'DoesNotExist' "
                                                 "for scope selector")


def _resource_quota(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    _quota_list(errs, "spec.hard", spec.get("hard"))
    _scopes(errs, spec)
    status = obj.get("status") or {}
    _quota_list(errs, "status.hard", status.get("hard"))
    _quota_list(errs, "status.used", status.get("used"))
    if old is not None:
        old_spec = old.get("spec") or {}
        if (spec.get("scopes") or []) != (old_spec.get("scopes") or []):
            errs.invalid("spec.scopes", spec.get("scopes") or [], "field is immutable")


def _limit_name(errs: Errors, path: str, kind: Any, name: str) -> bool:
    before = len(errs.causes)
    errs.check(path, name, names.qualified_name)
    if len(errs.causes) == before and "/" not in name:
        allowed = name == "storage" if kind == "PersistentVolumeClaim" else (
            name in CONTAINER_NAMES or is_hugepages(name))
        if not allowed:
            errs.invalid(path, name, NOT_LIMIT_NAME)
    return len(errs.causes) == before


def _limit_range(errs: Errors, obj: Obj, old: Obj | None) -> None:
    limits = (obj.get("spec") or {}).get("limits")
    if limits is None:
        errs.required("spec.limits")
        return
    seen: set[str] = set()
    for i, item in enumerate(limits):
        p = f"spec.limits[{i}]"
        kind = item.get("type")
        if not kind:
            errs.required(f"{p}.type")
        elif kind in seen:
            errs.duplicate(f"{p}.type", kind)
        seen.add(str(kind))
        sections: dict[str, dict[str, Quantity]] = {}
        for section in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            values = item.get(section) or {}
            if kind == "Pod" and section in ("default", "defaultRequest") and values:
                errs.forbidden(f"{p}.{section}", "may not be specified when `type` is 'Pod'")
                continue
            parsed: dict[str, Quantity] = {}
            for name, value in sorted(values.items()):
                path = f"{p}.{section}[{name}]"
                if _limit_name(errs, path, kind, str(name)) and (q := _quantity(errs, path, value)) is not None:
                    parsed[str(name)] = q
            sections[section] = parsed
        _limit_order(errs, p, sections)
        if kind == "PersistentVolumeClaim" and "storage" not in sections.get("min", {}) \
                and "storage" not in sections.get("max", {}):
            errs.required(f"{p}.limits", "either minimum or maximum storage value is required, but neither "
                                         "was provided")


def _limit_order(errs: Errors, p: str, s: dict[str, dict[str, Quantity]]) -> None:
    mn, mx, df, dr, ratio = (s.get(k, {}) for k in ("min", "max", "default", "defaultRequest",
                                                    "maxLimitRequestRatio"))
    for name in sorted(set(mn) | set(mx) | set(df) | set(dr) | set(ratio)):
        if name in mn and name in mx and mn[name] > mx[name]:
            errs.invalid(f"{p}.min[{name}]", str(mn[name]),
                         f"min value {mn[name]} is greater than max value {mx[name]}")
        if name in dr and name in mn and mn[name] > dr[name]:
            errs.invalid(f"{p}.defaultRequest[{name}]", str(dr[name]),
                         f"min value {mn[name]} is greater than default request value {dr[name]}")
        if name in dr and name in mx and dr[name] > mx[name]:
            errs.invalid(f"{p}.defaultRequest[{name}]", str(dr[name]),
                         f"default request value {dr[name]} is greater than max value {mx[name]}")
        if name in dr and name in df and dr[name] > df[name]:
            errs.invalid(f"{p}.defaultRequest[{name}]", str(dr[name]),
                         f"default request value {dr[name]} is greater than default limit value {df[name]}")
        if name in df and name in mn and mn[name] > df[name]:
            errs.invalid(f"{p}.default[{name}]", str(mn[name]),
                         f"min value {mn[name]} is greater than default value {df[name]}")
        if name in df and name in mx and df[name] > mx[name]:
            errs.invalid(f"{p}.default[{name}]", str(mx[name]),
                         f"default value {df[name]} is greater than max value {mx[name]}")
        if name in ratio and ratio[name].amount < 1:
            errs.invalid(f"{p}.maxLimitRequestRatio[{name}]", str(ratio[name]), f"ratio {ratio[name]} is less than 1")
        if name in ratio and name in mn and name in mx and mn[name].amount > 0:
            bound = float(mx[name].amount / mn[name].amount)
            if float(ratio[name].amount) > bound:
                errs.invalid(f"{p}.maxLimitRequestRatio[{name}]", str(ratio[name]),
                             f"ratio {ratio[name]} is greater than max/min = {bound:f}")


def _pod_template(errs: Errors, obj: Obj, old: Obj | None) -> None:
    template = obj.get("template")
    if template is None:
        errs.required("template")
        return
    labels: dict[str, str] = (template.get("metadata") or {}).get("labels") or {}
    for key, value in labels.items():
        errs.check("template.metadata.labels", key, names.qualified_name)
        errs.check("template.metadata.labels", value, names.label_value)
    pod_spec(errs, "template.spec", template.get("spec") or {})


QUOTA_CHECKS: dict[str, Check] = {
    "ResourceQuota": _resource_quota,
    "LimitRange": _limit_range,
    "PodTemplate": _pod_template,
}


def _pod_template_defaults(obj: Obj) -> None:
    # Imported here: machinery.api.defaults registers this module's defaulters.
    from machinery.api.defaults import pod_spec as default_pod_spec

    template = obj.get("template")
    if isinstance(template, dict):
        default_pod_spec(template.setdefault("spec", {}))


QUOTA_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "LimitRange": default_limit_range,
    "PodTemplate": _pod_template_defaults,
}
