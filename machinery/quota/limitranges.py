"""LimitRange rules (Kubernetes' ``plugin/pkg/admission/limitranger`` and ``SetDefaults_LimitRangeItem``).

* :func:`default_limit_range_item` — API defaulting of a ``Container`` item: ``default`` from
  ``max``, then ``defaultRequest`` from ``default``, then from ``min`` (what ``kubectl get limits
  -o yaml`` shows after create).
* :func:`apply_container_defaults` — the admission plugin's mutation of a new pod: each container
  and init container gets the ``default`` limits and ``defaultRequest`` requests it lacks, and the
  pod the ``kubernetes.io/limit-ranger`` annotation saying what was set.
* :func:`pod_violations`, :func:`claim_violations` — the plugin's validation: ``min``, ``max``
  and ``maxLimitRequestRatio`` of ``Container`` items per container, of ``Pod`` items against the
  pod's effective requests and limits, of ``PersistentVolumeClaim`` items against a claim's
  storage request, worded as Kubernetes words them
  (``maximum memory usage per Container is 1Gi, but limit is 2Gi``).

Pure functions over plain dicts; ``apiserver.admission_limitranger`` calls them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from machinery.quantity import Quantity
from machinery.quota.evaluators import pod_resources
from machinery.quota.resourcelists import ResourceList, parse_list

Obj = dict[str, Any]
ANNOTATION = "kubernetes.io/limit-ranger"
CONTAINER = "Container"
POD = "Pod"
CLAIM = "PersistentVolumeClaim"
_MAX_MILLI = 2**63 // 1000


def default_limit_range_item(item: Obj) -> None:
    """``SetDefaults_LimitRangeItem`` (in place): only ``Container`` items get defaults."""
    if item.get("type") != CONTAINER:
        return
    default = item.setdefault("default", {})
    request = item.setdefault("defaultRequest", {})
    for name, value in (item.get("max") or {}).items():
        default.setdefault(name, value)
    for name, value in default.items():
        request.setdefault(name, value)
    for name, value in (item.get("min") or {}).items():
        request.setdefault(name, value)


def default_limit_range(obj: Obj) -> None:
    for item in (obj.get("spec") or {}).get("limits") or []:
        if isinstance(item, dict):
            default_limit_range_item(item)


def _items(limit_ranges: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [item for lr in limit_ranges for item in ((lr.get("spec") or {}).get("limits") or [])
            if item.get("type") == kind]


# ---- mutation ----------------------------------------------------------------------------------

def _container_defaults(limit_ranges: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(limits, requests) defaults of every ``Container`` item, later items winning."""
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for item in _items(limit_ranges, CONTAINER):
        requests.update(item.get("defaultRequest") or {})
        limits.update(item.get("default") or {})
    return limits, requests


def apply_container_defaults(pod: Obj, limit_ranges: Iterable[Mapping[str, Any]]) -> bool:
    """Set missing default limits and requests on every container (in place); True when any was set."""
    limits, requests = _container_defaults(limit_ranges)
    if not limits and not requests:
        return False
    spec = pod.setdefault("spec", {})
    notes: list[str] = []
    for key, what in (("containers", "container"), ("initContainers", "init container")):
        for container in spec.get(key) or []:
            resources = container.setdefault("resources", {})
            set_limits = _fill(resources, "limits", limits)
            set_requests = _fill(resources, "requests", requests)
            if set_requests:
                notes.append(f"{', '.join(sorted(set_requests))} request for {what} {container.get('name', '')}")
            if set_limits:
                notes.append(f"{', '.join(sorted(set_limits))} limit for {what} {container.get('name', '')}")
    if not notes:
        return False
    meta = pod.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    annotations[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
    meta["annotations"] = annotations
    return True


def _fill(resources: Obj, key: str, defaults: Mapping[str, Any]) -> list[str]:
    if not defaults:
        return []
    current = dict(resources.get(key) or {})
    added = [name for name in defaults if name not in current]
    for name in added:
        current[name] = defaults[name]
    if added:
        resources[key] = current
    return added


# ---- validation --------------------------------------------------------------------------------

def _values(req: Quantity | None, lim: Quantity | None, enforced: Quantity) -> tuple[int, int, int]:
    """``requestLimitEnforcedValues``: milli-units when nothing overflows them, else units."""
    parts = [q for q in (req, lim, enforced) if q is not None]
    use_milli = all(abs(q.value()) <= _MAX_MILLI for q in parts)

    def of(q: Quantity | None) -> int:
        if q is None:
            return 0
        return q.milli_value() if use_milli else q.value()
    return of(req), of(lim), of(enforced)


def min_constraint(kind: str, name: str, enforced: Quantity, requests: ResourceList,
                   limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    observed_req, observed_lim, want = _values(req, lim, enforced)
    if req is None:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if observed_req < want:
        return f"minimum {name} usage per {kind} is {enforced}, but request is {req}"
    if lim is not None and observed_lim < want:
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
    return None


def max_constraint(kind: str, name: str, enforced: Quantity, requests: ResourceList,
                   limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    observed_req, observed_lim, want = _values(req, lim, enforced)
    if lim is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if observed_lim > want:
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
    if req is not None and observed_req > want:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def max_request_constraint(kind: str, name: str, enforced: Quantity, requests: ResourceList) -> str | None:
    req = requests.get(name)
    if req is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No request is specified"
    observed_req, _, want = _values(req, None, enforced)
    if observed_req > want:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def ratio_constraint(kind: str, name: str, enforced: Quantity, requests: ResourceList,
                     limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    observed_req, observed_lim, _ = _values(req, lim, enforced)
    if req is None or observed_req == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced}, but no request is specified "
                "or request is 0")
    if lim is None or observed_lim == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified "
                "or limit is 0")
    observed = observed_lim / observed_req
    if observed > float(enforced.amount):
        return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:f}"
    return None


def _check(kind: str, item: Mapping[str, Any], requests: ResourceList, limits: ResourceList) -> list[str]:
    errors: list[str] = []
    for name, enforced in sorted(parse_list(item.get("min")).items()):
        errors.append(min_constraint(kind, name, enforced, requests, limits) or "")
    for name, enforced in sorted(parse_list(item.get("max")).items()):
        errors.append(max_constraint(kind, name, enforced, requests, limits) or "")
    for name, enforced in sorted(parse_list(item.get("maxLimitRequestRatio")).items()):
        errors.append(ratio_constraint(kind, name, enforced, requests, limits) or "")
    return [e for e in errors if e]


def pod_violations(pod: Mapping[str, Any], limit_ranges: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every ``Container`` and ``Pod`` constraint the pod breaks, in Kubernetes' order."""
    errors: list[str] = []
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    for lr in limit_ranges:
        for item in (lr.get("spec") or {}).get("limits") or []:
            if item.get("type") == CONTAINER:
                for container in containers:
                    resources = container.get("resources") or {}
                    errors += _check(CONTAINER, item, parse_list(resources.get("requests")),
                                     parse_list(resources.get("limits")))
            elif item.get("type") == POD:
                errors += _check(POD, item, pod_resources(pod, "requests"), pod_resources(pod, "limits"))
    return errors


def claim_violations(pvc: Mapping[str, Any], limit_ranges: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every ``PersistentVolumeClaim`` constraint a claim's storage request breaks."""
    requests = parse_list(((pvc.get("spec") or {}).get("resources") or {}).get("requests"))
    errors: list[str] = []
    for item in _items(limit_ranges, CLAIM):
        for name, enforced in sorted(parse_list(item.get("min")).items()):
            errors.append(min_constraint(CLAIM, name, enforced, requests, {}) or "")
        for name, enforced in sorted(parse_list(item.get("max")).items()):
            errors.append(max_request_constraint(CLAIM, name, enforced, requests) or "")
    return [e for e in errors if e]


def aggregate(errors: list[str]) -> str:
    """One message for several, as Kubernetes' error aggregate prints them (``[a, b]``)."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
