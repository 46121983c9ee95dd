"""Printers for the apps/v1 workload controllers: Deployment and ReplicaSet.

Called through the registry in :mod:`apiserver.printing.table`. Replica counts are integer
cells; ``spec.replicas`` defaults to 1 when absent, as Kubernetes' defaulting would set it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, CONTAINERS, IMAGES, NAME, SELECTOR, Column
from apiserver.printing.humanize import (
    container_cells,
    dig,
    format_label_selector,
    label_selector_string,
    since,
)

DEPLOYMENT_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Ready", "string", description="Ready pods out of the desired replicas."),
    Column("Up-to-date", "string", description="Pods running the latest pod template."),
    Column("Available", "string", description="Pods ready for at least minReadySeconds."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
)

REPLICASET_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Desired", "integer", description="Replicas asked for in the spec."),
    Column("Current", "integer", description="Replicas that currently exist."),
    Column("Ready", "integer", description="Replicas whose pods are ready."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
)


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) else default


def deployment_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, READY (``2/3``), UP-TO-DATE, AVAILABLE, AGE, CONTAINERS, IMAGES, SELECTOR."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    desired = _int(spec.get("replicas"), 1)
    names, images = container_cells(dig(spec, "template", "spec", "containers"))
    return [
        dig(obj, "metadata", "name") or "",
        f"{_int(status.get('readyReplicas'))}/{desired}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        since(dig(obj, "metadata", "creationTimestamp"), now),
        names,
        images,
        label_selector_string(spec.get("selector")),
    ]


def replicaset_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, DESIRED, CURRENT, READY, AGE, CONTAINERS, IMAGES, SELECTOR."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = container_cells(dig(spec, "template", "spec", "containers"))
    return [
        dig(obj, "metadata", "name") or "",
        _int(spec.get("replicas"), 1),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        since(dig(obj, "metadata", "creationTimestamp"), now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]
