"""Printers for ResourceQuota, LimitRange and PodTemplate (``kubectl get quota,limits,podtemplates``).

Called through the registry in :mod:`apiserver.printing.table`. The quota row follows Kubernetes'
``printResourceQuota``: every name of ``status.hard`` in order, as ``name: used/hard``, in the
REQUEST column, or in the LIMIT column for ``limits.*`` names. A LimitRange prints its creation
time as a date, as Kubernetes' ``CREATED AT`` column does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column, Printer
from apiserver.printing.humanize import container_cells, dig, format_labels, since
from machinery.quantity import Quantity
from machinery.quota.resourcelists import parse_list

RESOURCEQUOTA_COLUMNS: tuple[Column, ...] = (
    NAME,
    AGE,
    Column("Request", "string", description="Request represents a minimum amount of cpu/memory that a "
                                            "container may consume."),
    Column("Limit", "string", description="Limits control the maximum amount of cpu/memory that a container "
                                          "may use independent of contention on the node."),
)

LIMITRANGE_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Created At", "date", description="CreationTimestamp is a timestamp representing the server time "
                                             "when this object was created."),
)

PODTEMPLATE_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Containers", "string", description="Names of each container in the template."),
    Column("Images", "string", description="Images referenced by each container in the template."),
    Column("Pod Labels", "string", description="The labels for the pod template."),
)


def resourcequota_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, AGE, REQUEST, LIMIT."""
    status = obj.get("status") or {}
    hard = parse_list(status.get("hard"))
    used = parse_list(status.get("used"))
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        pieces = name.split(".")
        target = limits if len(pieces) > 1 and pieces[0] == "limits" else requests
        target.append(f"{name}: {used.get(name, Quantity.from_value(0))}/{hard[name]}")
    return [dig(obj, "metadata", "name") or "", since(dig(obj, "metadata", "creationTimestamp"), now),
            ", ".join(requests), ", ".join(limits)]


def limitrange_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, CREATED AT."""
    return [dig(obj, "metadata", "name") or "", dig(obj, "metadata", "creationTimestamp") or ""]


def podtemplate_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, CONTAINERS, IMAGES, POD LABELS."""
    names, images = container_cells(dig(obj, "template", "spec", "containers"))
    return [dig(obj, "metadata", "name") or "", names, images,
            format_labels(dig(obj, "template", "metadata", "labels"))]


QUOTA_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "ResourceQuota"): Printer(RESOURCEQUOTA_COLUMNS, resourcequota_cells),
    ("", "LimitRange"): Printer(LIMITRANGE_COLUMNS, limitrange_cells),
    ("", "PodTemplate"): Printer(PODTEMPLATE_COLUMNS, podtemplate_cells),
}
