"""The HorizontalPodAutoscaler printer (Kubernetes' ``printHorizontalPodAutoscaler``).

Registered in :mod:`apiserver.printing.table` through :data:`AUTOSCALING_PRINTERS`. Columns:
NAME, REFERENCE (``Deployment/web``), TARGETS, MINPODS, MAXPODS, REPLICAS, AGE. TARGETS pairs
each spec metric with its current value as Kubernetes' ``formatHPAMetrics`` does
(``cpu: 45%/50%``, ``memory: 12Mi/100Mi``, ``<unknown>`` before the first reading, two metrics
then ``+ N more...``). autoscaling/v1 rows are printed from their v2 form.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column, Printer
from apiserver.printing.humanize import NONE, since
from machinery.api.autoscaling_conversion import V1, to_v2

UNKNOWN = "<unknown>"
_SHOWN = 2

HPA_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Reference", "string", description="The scaled object (kind/name)."),
    Column("Targets", "string", description="Current and target values of the metrics."),
    Column("MinPods", "string", description="The lower limit of replicas."),
    Column("MaxPods", "integer", description="The upper limit of replicas."),
    Column("Replicas", "integer", description="The current number of replicas."),
    AGE,
)


def _percent(value: Any) -> str:
    return f"{int(value)}%"


def _one(spec: dict[str, Any], status: dict[str, Any] | None) -> str:
    kind = spec.get("type")
    if kind in ("Resource", "ContainerResource"):
        field = "resource" if kind == "Resource" else "containerResource"
        source = spec.get(field) or {}
        target = source.get("target") or {}
        current_status = ((status or {}).get(field) or {}).get("current") or {}
        name = source.get("name", "")
        if target.get("averageValue") is not None:
            current = str(current_status.get("averageValue") or UNKNOWN)
            return f"{name}: {current}/{target['averageValue']}"
        util = current_status.get("averageUtilization")
        current = _percent(util) if util is not None else UNKNOWN
        wanted = _percent(target["averageUtilization"]) if target.get("averageUtilization") is not None else "<auto>"
        return f"{name}: {current}/{wanted}"
    if kind == "Pods":
        target = (spec.get("pods") or {}).get("target") or {}
        pods_now = ((status or {}).get("pods") or {}).get("current") or {}
        return f"{pods_now.get('averageValue') or UNKNOWN}/{target.get('averageValue')}"
    if kind in ("Object", "External"):
        field = "object" if kind == "Object" else "external"
        target = (spec.get(field) or {}).get("target") or {}
        seen = ((status or {}).get(field) or {}).get("current") or {}
        if target.get("averageValue") is not None:
            return f"{seen.get('averageValue') or UNKNOWN}/{target['averageValue']} (avg)"
        return f"{seen.get('value') or UNKNOWN}/{target.get('value')}"
    return "<unknown type>"


def format_targets(specs: list[dict[str, Any]], statuses: list[dict[str, Any]]) -> str:
    """The TARGETS cell: one ``current/target`` per metric, at most two then ``+ N more...``."""
    if not specs:
        return NONE
    shown = [_one(spec, statuses[i] if i < len(statuses) else None) for i, spec in enumerate(specs)]
    text = ", ".join(shown[:_SHOWN])
    if len(shown) > _SHOWN:
        return f"{text} + {len(shown) - _SHOWN} more..."
    return text


def hpa_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, REFERENCE, TARGETS, MINPODS, MAXPODS, REPLICAS, AGE."""
    if obj.get("apiVersion") == V1:
        obj = to_v2(obj)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    min_pods = spec.get("minReplicas")
    return [
        meta.get("name", ""),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        format_targets(list(spec.get("metrics") or []), list(status.get("currentMetrics") or [])),
        str(min_pods) if min_pods is not None else "<unset>",
        int(spec.get("maxReplicas") or 0),
        int(status.get("currentReplicas") or 0),
        since(meta.get("creationTimestamp"), now),
    ]


AUTOSCALING_PRINTERS: dict[tuple[str, str], Printer] = {
    ("autoscaling", "HorizontalPodAutoscaler"): Printer(HPA_COLUMNS, hpa_cells),
}
