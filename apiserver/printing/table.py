"""Server-side printing: turn objects into a ``meta.k8s.io/v1`` ``Table`` for ``kubectl get``.

Called by the list / get handlers when the client's Accept asks for ``as=Table;g=meta.k8s.io``,
and by the watch path, which wraps each event's object in a one-row Table. Column sets and cell
text follow Kubernetes' built-in printers kind by kind (see the sibling modules); a kind with
no printer gets Kubernetes' default ``Name`` / ``Created At`` table. Cells are always computed
"wide" (every column); kubectl hides priority-1 columns unless ``-o wide``.

Guarantees: column definitions are built once per kind and shared (callers must not mutate
them); every row carries ``object`` unless ``include_object="None"``, because kubectl needs it
for ``-A`` (NAMESPACE), ``--show-labels`` and ``--sort-by``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from apiserver.apiextensions.printer import custom_printer
from apiserver.apiextensions.served import served_version
from apiserver.printing.autoscaling import AUTOSCALING_PRINTERS
from apiserver.printing.cluster import (
    EVENT_COLUMNS,
    LEASE_COLUMNS,
    NAMESPACE_COLUMNS,
    NODE_COLUMNS,
    event_cells,
    lease_cells,
    namespace_cells,
    node_cells,
)
from apiserver.printing.columns import NAME, Column, Printer
from apiserver.printing.config import (
    CONFIGMAP_COLUMNS,
    SECRET_COLUMNS,
    SERVICEACCOUNT_COLUMNS,
    configmap_cells,
    secret_cells,
    serviceaccount_cells,
)
from apiserver.printing.network import ENDPOINTS_COLUMNS, SERVICE_COLUMNS, endpoints_cells, service_cells
from apiserver.printing.networking import NETWORKING_PRINTERS
from apiserver.printing.pods import POD_COLUMNS, pod_cells, pod_row_conditions
from apiserver.printing.quota import QUOTA_PRINTERS
from apiserver.printing.rbac import BINDING_COLUMNS, binding_cells
from apiserver.printing.storage import STORAGE_PRINTERS
from apiserver.printing.workload_kinds import WORKLOAD_KIND_PRINTERS
from apiserver.printing.workloads import (
    DEPLOYMENT_COLUMNS,
    REPLICASET_COLUMNS,
    deployment_cells,
    replicaset_cells,
)
from machinery.errors import BadRequestError
from machinery.resources import ResourceInfo

INCLUDE_OBJECT_VALUES: tuple[str, ...] = ("None", "Metadata", "Object")
"""Accepted values of the ``includeObject`` query parameter."""

TABLE_API_VERSION = "meta.k8s.io/v1"


def _default_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    metadata = obj.get("metadata") or {}
    return [metadata.get("name") or "", metadata.get("creationTimestamp")]


_DEFAULT_PRINTER = Printer(
    (NAME, Column("Created At", "date", description="When the object was created.")),
    _default_cells,
)

_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): Printer(POD_COLUMNS, pod_cells, pod_row_conditions),
    ("", "Service"): Printer(SERVICE_COLUMNS, service_cells),
    ("", "Endpoints"): Printer(ENDPOINTS_COLUMNS, endpoints_cells),
    ("", "Node"): Printer(NODE_COLUMNS, node_cells),
    ("", "Namespace"): Printer(NAMESPACE_COLUMNS, namespace_cells),
    ("", "ConfigMap"): Printer(CONFIGMAP_COLUMNS, configmap_cells),
    ("", "Secret"): Printer(SECRET_COLUMNS, secret_cells),
    ("", "ServiceAccount"): Printer(SERVICEACCOUNT_COLUMNS, serviceaccount_cells),
    ("", "Event"): Printer(EVENT_COLUMNS, event_cells),
    ("apps", "Deployment"): Printer(DEPLOYMENT_COLUMNS, deployment_cells),
    ("apps", "ReplicaSet"): Printer(REPLICASET_COLUMNS, replicaset_cells),
    ("coordination.k8s.io", "Lease"): Printer(LEASE_COLUMNS, lease_cells),
    ("rbac.authorization.k8s.io", "RoleBinding"): Printer(BINDING_COLUMNS, binding_cells),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): Printer(BINDING_COLUMNS, binding_cells),
}

_PRINTERS.update(NETWORKING_PRINTERS)
_PRINTERS.update(STORAGE_PRINTERS)
_PRINTERS.update(WORKLOAD_KIND_PRINTERS)
_PRINTERS.update(AUTOSCALING_PRINTERS)
_PRINTERS.update(QUOTA_PRINTERS)


def printer_for(resource: ResourceInfo) -> Printer:
    """The printer of this resource's kind (the default Name / Created At one if none)."""
    if resource.custom is not None:
        return custom_printer(served_version(resource))
    return _PRINTERS.get((resource.group, resource.kind), _DEFAULT_PRINTER)


@cache
def _column_dicts(group: str, kind: str) -> tuple[dict[str, Any], ...]:
    printer = _PRINTERS.get((group, kind), _DEFAULT_PRINTER)
    return tuple(column.to_dict() for column in printer.columns)


def column_definitions(resource: ResourceInfo) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` of this kind's Table; the dicts are cached, do not mutate them."""
    if resource.custom is not None:
        return [column.to_dict() for column in printer_for(resource).columns]
    return list(_column_dicts(resource.group, resource.kind))


def check_include_object(value: str) -> str:
    """Validate an ``includeObject`` value ("" means the default, ``Metadata``)."""
    if value == "":
        return "Metadata"
    if value not in INCLUDE_OBJECT_VALUES:
        raise BadRequestError(
            f'includeObject must be one of {", ".join(INCLUDE_OBJECT_VALUES)}, got "{value}"'
        )
    return value


def _row_object(resource: ResourceInfo, obj: dict[str, Any], include_object: str) -> dict[str, Any]:
    if include_object == "Object":
        if obj.get("kind") and obj.get("apiVersion"):
            return obj
        # List items may omit their type; the row object must carry it for kubectl to decode.
        return {"kind": resource.kind, "apiVersion": resource.api_version, **obj}
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": TABLE_API_VERSION,
        "metadata": obj.get("metadata") or {},
    }


def row_for(
    resource: ResourceInfo,
    obj: dict[str, Any],
    include_object: str = "Metadata",
    now: datetime | None = None,
) -> dict[str, Any]:
    """One ``TableRow``: its cells (all columns), its conditions, and the object as asked."""
    include_object = check_include_object(include_object)
    printer = printer_for(resource)
    moment = now if now is not None else datetime.now(UTC)
    row: dict[str, Any] = {"cells": printer.cells(obj, moment)}
    conditions = printer.conditions(obj)
    if conditions:
        row["conditions"] = conditions
    if include_object != "None":
        row["object"] = _row_object(resource, obj, include_object)
    return row


def to_table(
    resource: ResourceInfo,
    objects: list[dict[str, Any]],
    *,
    resource_version: str,
    continue_token: str = "",
    include_object: str = "Metadata",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The whole ``Table`` answer for a list (or a one-item list for a single GET)."""
    include_object = check_include_object(include_object)
    moment = now if now is not None else datetime.now(UTC)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": column_definitions(resource),
        "rows": [row_for(resource, obj, include_object, moment) for obj in objects],
    }

