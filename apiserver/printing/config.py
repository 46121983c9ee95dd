"""Printers for ConfigMap, Secret and ServiceAccount: a name, a count and an age.

Called through the registry in :mod:`apiserver.printing.table`. Counts are integer cells,
as Kubernetes sends them (the column type still says ``string``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column
from apiserver.printing.humanize import dig, since

CONFIGMAP_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Data", "string", description="Number of keys in data and binaryData."),
    AGE,
)

SECRET_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Type", "string", description="Type of the secret's contents."),
    Column("Data", "string", description="Number of keys in data."),
    AGE,
)

SERVICEACCOUNT_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Secrets", "string", description="Number of secrets listed for the account."),
    AGE,
)


def configmap_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, DATA, AGE."""
    return [
        dig(obj, "metadata", "name") or "",
        len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
        since(dig(obj, "metadata", "creationTimestamp"), now),
    ]


def secret_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, TYPE, DATA, AGE."""
    return [
        dig(obj, "metadata", "name") or "",
        obj.get("type") or "Opaque",
        len(obj.get("data") or {}),
        since(dig(obj, "metadata", "creationTimestamp"), now),
    ]


def serviceaccount_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, SECRETS, AGE."""
    return [
        dig(obj, "metadata", "name") or "",
        len(obj.get("secrets") or []),
        since(dig(obj, "metadata", "creationTimestamp"), now),
    ]
