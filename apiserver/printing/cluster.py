"""Printers for Node, Namespace, Lease and Event.

Called through the registry in :mod:`apiserver.printing.table`. Node STATUS is ``Ready`` /
``NotReady`` from the Ready condition (``Unknown`` without one) plus ``SchedulingDisabled``
when cordoned; ROLES come from ``node-role.kubernetes.io/<role>`` and ``kubernetes.io/role``
labels. Event rows name their object as ``kind/name`` in lower case and fall back from
``lastTimestamp`` to ``firstTimestamp`` to ``eventTime``, as kubectl users expect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column
from apiserver.printing.humanize import NONE, UNKNOWN, dig, since

NODE_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Status", "string", description="Readiness of the node, and whether it is cordoned."),
    Column("Roles", "string", description="Roles from the node's node-role labels."),
    AGE,
    Column("Version", "string", description="Version of the node's kubelet."),
    Column("Internal-IP", "string", priority=1, description="The node's internal address."),
    Column("External-IP", "string", priority=1, description="The node's external address."),
    Column("OS-Image", "string", priority=1, description="Operating system reported by the node."),
    Column("Kernel-Version", "string", priority=1, description="Kernel reported by the node."),
    Column("Container-Runtime", "string", priority=1, description="Container runtime and its version."),
)

NAMESPACE_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Status", "string", description="Phase of the namespace (Active or Terminating)."),
    AGE,
)

LEASE_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Holder", "string", description="Identity currently holding the lease."),
    AGE,
)

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("Last Seen", "string", description="Time since the event was last observed."),
    Column("Type", "string", description="Normal or Warning."),
    Column("Reason", "string", description="Short machine-readable cause of the event."),
    Column("Object", "string", description="The object the event is about."),
    Column("Subobject", "string", priority=1, description="Field path inside the object, if any."),
    Column("Source", "string", priority=1, description="Component (and host) that reported the event."),
    Column("Message", "string", description="Human-readable description of the event."),
    Column("First Seen", "string", priority=1, description="Time since the event was first observed."),
    Column("Count", "string", priority=1, description="How many times the event occurred."),
    Column("Name", "string", "name", priority=1, description="Name of the event object."),
)

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def node_status(node: dict[str, Any]) -> str:
    """``Ready``, ``NotReady`` or ``Unknown``, with ``,SchedulingDisabled`` when cordoned."""
    parts: list[str] = []
    for condition in dig(node, "status", "conditions") or []:
        if condition.get("type") == "Ready":
            parts = ["Ready" if condition.get("status") == "True" else "NotReady"]
    if not parts:
        parts = ["Unknown"]
    if dig(node, "spec", "unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(node: dict[str, Any]) -> str:
    """Sorted roles joined by commas, or ``<none>``."""
    roles: set[str] = set()
    for key, value in (dig(node, "metadata", "labels") or {}).items():
        if key.startswith(_ROLE_PREFIX) and key[len(_ROLE_PREFIX):]:
            roles.add(key[len(_ROLE_PREFIX):])
        elif key == _ROLE_LABEL and value:
            roles.add(str(value))
    return ",".join(sorted(roles)) or NONE


def _node_address(node: dict[str, Any], address_type: str) -> str:
    for address in dig(node, "status", "addresses") or []:
        if address.get("type") == address_type:
            return str(address.get("address", ""))
    return NONE


def node_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, STATUS, ROLES, AGE, VERSION, then the wide node-info columns."""
    info = dig(obj, "status", "nodeInfo") or {}
    return [
        dig(obj, "metadata", "name") or "",
        node_status(obj),
        node_roles(obj),
        since(dig(obj, "metadata", "creationTimestamp"), now),
        info.get("kubeletVersion") or "",
        _node_address(obj, "InternalIP"),
        _node_address(obj, "ExternalIP"),
        info.get("osImage") or UNKNOWN,
        info.get("kernelVersion") or UNKNOWN,
        info.get("containerRuntimeVersion") or UNKNOWN,
    ]


def namespace_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, STATUS, AGE."""
    return [
        dig(obj, "metadata", "name") or "",
        dig(obj, "status", "phase") or "",
        since(dig(obj, "metadata", "creationTimestamp"), now),
    ]


def lease_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, HOLDER, AGE."""
    return [
        dig(obj, "metadata", "name") or "",
        dig(obj, "spec", "holderIdentity") or "",
        since(dig(obj, "metadata", "creationTimestamp"), now),
    ]


def _event_source(event: dict[str, Any]) -> str:
    """``kubelet, node-1``: the component, then the host when known (new-API fields as fallback)."""
    component = dig(event, "source", "component") or event.get("reportingComponent") or ""
    host = dig(event, "source", "host") or event.get("reportingInstance") or ""
    return f"{component}, {host}" if host else str(component)


def event_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """LAST SEEN, TYPE, REASON, OBJECT, SUBOBJECT, SOURCE, MESSAGE, FIRST SEEN, COUNT, NAME."""
    first_seen = since(obj.get("firstTimestamp"), now)
    if not obj.get("firstTimestamp"):
        first_seen = since(obj.get("eventTime"), now)
    last_seen = since(obj.get("lastTimestamp"), now) if obj.get("lastTimestamp") else first_seen
    count = int(obj.get("count") or 0)
    series = obj.get("series")
    if series:
        last_seen = since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1  # events from the events.k8s.io API leave count unset when they happened once
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [
        last_seen,
        obj.get("type") or "",
        obj.get("reason") or "",
        target,
        involved.get("fieldPath") or "",
        _event_source(obj),
        str(obj.get("message") or "").strip(),
        first_seen,
        count,
        dig(obj, "metadata", "name") or "",
    ]
