"""What an object costs a ResourceQuota: Kubernetes' quota evaluators (``pkg/quota/v1/evaluator/core``).

:func:`usage` answers, for one object of one resource, the resource list it consumes: a pod its
count and compute requests and limits (a terminal pod, or one past its deletion grace period,
only its ``count/pods``), a Service its count, node ports and load balancers, a claim its count
and storage (also per storage class), any other object ``count/<resource>[.<group>]`` (plus the
legacy name for ConfigMaps, Secrets, ReplicationControllers and ResourceQuotas).
:func:`quota_matches` applies a quota's scopes (``scopes`` and ``scopeSelector``) to an object,
:func:`missing_constraints` is the rule that every container states the cpu/memory a quota
constrains, and :func:`resources_for` with :func:`counted_resource` tell which resources to list for a quota.

Objects are plain dicts as stored; the apiserver's ResourceQuota admission and the
controller-manager's resource-quota controller share this module, so both count alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from machinery.meta import parse_rfc3339
from machinery.quantity import Quantity
from machinery.quota.resourcelists import (
    OBJECT_COUNT_NAMES,
    POD_COMPUTE_NAMES,
    STORAGE_CLASS_SUFFIX,
    ResourceList,
    add,
    parse_list,
    scope_applies_to,
)
from machinery.resources import ResourceInfo, lookup

Obj = dict[str, Any]
ONE = Quantity.from_value(1)
_COMPUTE = ("cpu", "memory", "ephemeral-storage")


def count_name(plural: str, group: str) -> str:
    """``count/pods``, ``count/deployments.apps``."""
    return f"count/{plural}.{group}" if group else f"count/{plural}"


# ---- pods ---------------------------------------------------------------------------------------

def _resources(container: Mapping[str, Any], key: str) -> ResourceList:
    return parse_list(((container.get("resources") or {}).get(key)) or {})


def _max(a: ResourceList, b: ResourceList) -> ResourceList:
    out = dict(a)
    for name, q in b.items():
        if name not in out or out[name] < q:
            out[name] = q
    return out


def pod_resources(pod: Mapping[str, Any], key: str) -> ResourceList:
    """A pod's effective ``requests`` or ``limits`` (``PodRequests``/``PodLimits``): app containers
    and sidecars (restartable init containers) add up; each other init container runs alone with
    the sidecars started before it, so the pod needs the largest of those; plus ``overhead``."""
    spec = pod.get("spec") or {}
    total: ResourceList = {}
    for container in spec.get("containers") or []:
        total = add(total, _resources(container, key))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for container in spec.get("initContainers") or []:
        own = _resources(container, key)
        if container.get("restartPolicy") == "Always":
            sidecars = add(sidecars, own)
            init_peak = _max(init_peak, sidecars)
        else:
            init_peak = _max(init_peak, add(sidecars, own))
    total = _max(add(total, sidecars), init_peak)
    overhead = parse_list(spec.get("overhead") or {})
    return add(total, overhead) if overhead else total


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return ((pod.get("status") or {}).get("phase")) in ("Succeeded", "Failed")


def pod_tracked(pod: Mapping[str, Any], now: datetime) -> bool:
    """``QuotaV1Pod``: a pod counts unless terminal or past its deletion grace period."""
    if is_terminal(pod):
        return False
    meta = pod.get("metadata") or {}
    deleted = meta.get("deletionTimestamp")
    grace = meta.get("deletionGracePeriodSeconds")
    if deleted and grace is not None:
        try:
            if now > parse_rfc3339(str(deleted)) + timedelta(seconds=int(grace)):
                return False
        except ValueError:
            return True
    return True


def _compute_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """``podComputeUsageHelper``: requests as ``requests.X`` and ``X``, limits as ``limits.X``."""
    out: ResourceList = {}
    for name in _COMPUTE:
        if name in requests:
            out[name] = requests[name]
            out[f"requests.{name}"] = requests[name]
        if name in limits:
            out[f"limits.{name}"] = limits[name]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            out[f"requests.{name}"] = q
    return out


def pod_usage(pod: Mapping[str, Any], now: datetime) -> ResourceList:
    usage: ResourceList = {count_name("pods", ""): ONE}
    if not pod_tracked(pod, now):
        return usage
    usage["pods"] = ONE
    usage.update(_compute_usage(pod_resources(pod, "requests"), pod_resources(pod, "limits")))
    return usage


def is_best_effort(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = container.get("resources") or {}
        for key in ("requests", "limits"):
            if any(name in ("cpu", "memory") for name in (resources.get(key) or {})):
                return False
    return True


def missing_constraints(pod: Mapping[str, Any], required: Iterable[str]) -> str | None:
    """``must specify limits.cpu for: a,b; requests.memory for: a`` when a quota constrains cpu or
    memory that some container does not state (the pod evaluator's ``Constraints``), else None."""
    wanted = set(required) & POD_COMPUTE_NAMES
    if not wanted:
        return None
    spec = pod.get("spec") or {}
    missing: dict[str, set[str]] = {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        stated = set(_compute_usage(_resources(container, "requests"), _resources(container, "limits")))
        for name in wanted - stated:
            missing.setdefault(name, set()).add(str(container.get("name", "")))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing))


# ---- scopes -------------------------------------------------------------------------------------

def scope_requirements(quota: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(scopeName, operator, values) for each of ``spec.scopes`` (as Exists) and ``scopeSelector``."""
    spec = quota.get("spec") or {}
    out: list[tuple[str, str, list[str]]] = [(str(scope), "Exists", []) for scope in spec.get("scopes") or []]
    for expr in ((spec.get("scopeSelector") or {}).get("matchExpressions")) or []:
        out.append((str(expr.get("scopeName", "")), str(expr.get("operator", "")),
                    [str(v) for v in expr.get("values") or []]))
    return out


def _cross_namespace_affinity(pod: Mapping[str, Any]) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = affinity.get(kind) or {}
        terms = list(rules.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [w.get("podAffinityTerm") or {} for w in rules.get("preferredDuringSchedulingIgnoredDuringExecution")
                  or []]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
            return True
    return False


def _pod_matches_scope(pod: Mapping[str, Any], scope: str, operator: str, values: list[str]) -> bool:
    spec = pod.get("spec") or {}
    if scope == "PriorityClass":
        name = spec.get("priorityClassName") or ""
        if operator == "In":
            return name in values
        if operator == "NotIn":
            return name not in values
        if operator == "DoesNotExist":
            return not name
        return bool(name)
    deadline = spec.get("activeDeadlineSeconds")
    matched = {
        "Terminating": deadline is not None and int(deadline) >= 0,
        "NotTerminating": deadline is None or int(deadline) < 0,
        "BestEffort": is_best_effort(pod),
        "NotBestEffort": not is_best_effort(pod),
        "CrossNamespacePodAffinity": _cross_namespace_affinity(pod),
    }.get(scope, False)
    return matched if operator != "DoesNotExist" else not matched


def quota_matches(quota: Mapping[str, Any], plural: str, group: str, obj: Mapping[str, Any]) -> bool:
    """Whether ``quota`` tracks ``obj``: a quota without scopes tracks every object; a scoped one
    only pods that match each of its scopes."""
    requirements = scope_requirements(quota)
    if not requirements:
        return True
    if group or plural != "pods":
        return False
    return all(_pod_matches_scope(obj, scope, op, values) for scope, op, values in requirements)


def scoped_names(quota: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """The hard names a scoped quota counts (BestEffort: only the pod count)."""
    scopes = {scope for scope, _, _ in scope_requirements(quota)}
    names = list(names)
    if not scopes:
        return names
    return [n for n in names if all(scope_applies_to(s, n) for s in scopes)]


# ---- other kinds --------------------------------------------------------------------------------

def service_usage(svc: Mapping[str, Any]) -> ResourceList:
    spec = svc.get("spec") or {}
    usage: ResourceList = {"services": ONE, count_name("services", ""): ONE}
    kind = spec.get("type") or "ClusterIP"
    ports = len(spec.get("ports") or [])
    if kind == "NodePort" or (kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False):
        usage["services.nodeports"] = Quantity.from_value(ports)
    else:
        usage["services.nodeports"] = Quantity.from_value(0)
    usage["services.loadbalancers"] = Quantity.from_value(1 if kind == "LoadBalancer" else 0)
    return usage


def claim_usage(pvc: Mapping[str, Any]) -> ResourceList:
    spec = pvc.get("spec") or {}
    usage: ResourceList = {"persistentvolumeclaims": ONE, count_name("persistentvolumeclaims", ""): ONE}
    requests = parse_list(((spec.get("resources") or {}).get("requests")) or {})
    allocated = parse_list(((pvc.get("status") or {}).get("allocatedResources")) or {})
    storage = requests.get("storage")
    if "storage" in allocated and (storage is None or storage < allocated["storage"]):
        storage = allocated["storage"]
    class_name = spec.get("storageClassName") or ""
    if class_name:
        usage[f"{class_name}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = ONE
    if storage is not None:
        usage["requests.storage"] = storage
        if class_name:
            usage[f"{class_name}{STORAGE_CLASS_SUFFIX}requests.storage"] = storage
    return usage


def usage(plural: str, group: str, obj: Mapping[str, Any], now: datetime) -> ResourceList:
    """Everything ``obj`` (of resource ``plural`` in ``group``) consumes."""
    if not group:
        if plural == "pods":
            return pod_usage(obj, now)
        if plural == "services":
            return service_usage(obj)
        if plural == "persistentvolumeclaims":
            return claim_usage(obj)
    result: ResourceList = {count_name(plural, group): ONE}
    if not group and plural in OBJECT_COUNT_NAMES:
        result[plural] = ONE
    return result


def resources_for(name: str) -> tuple[str, str] | None:
    """The (group, plural) whose objects a hard name counts, or None for a name nothing counts."""
    if name.startswith("count/"):
        plural, _, group = name[len("count/"):].partition(".")
        return group, plural
    if name in ("persistentvolumeclaims", "requests.storage", "storage") or STORAGE_CLASS_SUFFIX in name:
        return "", "persistentvolumeclaims"
    if name in ("pods", "cpu", "memory", "ephemeral-storage") or name.startswith(("requests.", "limits.",
                                                                                    "hugepages-")):
        return "", "pods"
    if name.startswith("services"):
        return "", "services"
    if name in OBJECT_COUNT_NAMES:
        return "", name
    return None


def counted_resource(group: str, plural: str) -> ResourceInfo | None:
    """The served, namespaced, listable resource ``group``/``plural`` a quota counts (first of v1, v2,
    v1beta1), or None when no such resource is served."""
    for version in ("v1", "v2", "v1beta1"):
        info = lookup(group, version, plural)
        if info is not None and info.namespaced and "list" in info.verbs:
            return info
    return None
