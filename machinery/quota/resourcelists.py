"""Resource lists (``{"requests.cpu": Quantity, ...}``) and the names a ResourceQuota may hold.

The arithmetic of Kubernetes' ``quota/v1`` helpers (Add, Subtract, Mask, LessThanOrEqual,
the ``name=value,...`` form of its messages) over :class:`machinery.quantity.Quantity`, and the
resource-name rules of ``pkg/apis/core/helper`` (standard quota names, names that must be whole
numbers, which scope applies to which name). Read by the API validation, the LimitRanger and
ResourceQuota admission plugins and the resource-quota controller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from machinery.quantity import Quantity, parse_quantity

ResourceList = dict[str, Quantity]

OBJECT_COUNT_NAMES = frozenset({
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers",
})
"""Counted resources with a legacy (pre ``count/``) name; their quantities are whole numbers."""

COMPUTE_NAMES = frozenset({
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage",
    "limits.cpu", "limits.memory", "limits.ephemeral-storage",
})
STORAGE_NAMES = frozenset({"requests.storage", "storage"})
STANDARD_QUOTA_NAMES = OBJECT_COUNT_NAMES | COMPUTE_NAMES | STORAGE_NAMES

POD_COMPUTE_NAMES = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})
"""The names for which every container must state a request or limit when a quota constrains them."""

SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
          "CrossNamespacePodAffinity")
SCOPE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"


def is_hugepages(name: str) -> bool:
    return name.startswith(("hugepages-", "requests.hugepages-"))


def is_standard_quota_name(name: str) -> bool:
    """``IsStandardQuotaResourceName``: a name a quota may use without a domain prefix."""
    return name in STANDARD_QUOTA_NAMES or is_hugepages(name)


def is_integer_name(name: str) -> bool:
    """``IsIntegerResourceName``: object counts, which must be whole numbers."""
    return name in OBJECT_COUNT_NAMES or name.startswith("count/")


def scope_applies_to(scope: str, name: str) -> bool:
    """``IsResourceQuotaScopeValidForResource``: BestEffort quotas count pods only; the other
    pod scopes count pods and their compute resources."""
    if scope == "BestEffort":
        return name in ("pods", "count/pods")
    if scope in SCOPES:
        return name in ("pods", "count/pods") or name in COMPUTE_NAMES or is_hugepages(name)
    return False


def parse_list(raw: Mapping[str, Any] | None) -> ResourceList:
    """A stored ``{name: "quantity"}`` map as quantities (unparseable entries are skipped)."""
    out: ResourceList = {}
    for name, value in (raw or {}).items():
        try:
            out[str(name)] = parse_quantity(value)
        except (ValueError, TypeError):
            continue
    return out


def dump_list(values: Mapping[str, Quantity]) -> dict[str, str]:
    """Quantities in their canonical text, as the API serves them."""
    return {name: str(q) for name, q in sorted(values.items())}


def add(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> ResourceList:
    out = dict(a)
    for name, q in b.items():
        out[name] = out[name] + q if name in out else q
    return out


def subtract(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> ResourceList:
    out = dict(a)
    for name, q in b.items():
        out[name] = out[name] - q if name in out else -q
    return out


def mask(values: Mapping[str, Quantity], names: Iterable[str]) -> ResourceList:
    """Only the entries of ``values`` named in ``names``."""
    wanted = set(names)
    return {name: q for name, q in values.items() if name in wanted}


def zero_fill(values: Mapping[str, Quantity], names: Iterable[str]) -> ResourceList:
    """``values`` with a zero for each of ``names`` it lacks."""
    out = dict(values)
    for name in names:
        out.setdefault(name, Quantity.from_value(0))
    return out


def exceeded(used: Mapping[str, Quantity], hard: Mapping[str, Quantity]) -> list[str]:
    """The names whose ``used`` is above ``hard`` (``LessThanOrEqual``'s failures), sorted."""
    return sorted(name for name, q in used.items() if name in hard and hard[name] < q)


def pretty(values: Mapping[str, Quantity]) -> str:
    """``a=1,b=2Gi``: a resource list as Kubernetes' quota messages print it."""
    return ",".join(f"{name}={values[name]}" for name in sorted(values))
