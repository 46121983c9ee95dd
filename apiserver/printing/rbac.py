"""Printers for RoleBinding and ClusterRoleBinding: the role granted and, wide, to whom.

Kubernetes' columns: NAME, ROLE (``ClusterRole/edit``), AGE, and with ``-o wide`` USERS, GROUPS,
SERVICEACCOUNTS (``namespace:name``). Roles and ClusterRoles keep the default NAME / CREATED AT.
Called through the registry in :mod:`apiserver.printing.table`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column
from apiserver.printing.humanize import dig, since

BINDING_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Role", "string", description="The Role or ClusterRole the binding grants."),
    AGE,
    Column("Users", "string", priority=1, description="Users the binding applies to."),
    Column("Groups", "string", priority=1, description="Groups the binding applies to."),
    Column("ServiceAccounts", "string", priority=1, description="Service accounts the binding applies to."),
)


def _subjects(obj: dict[str, Any], kind: str) -> str:
    names = []
    for subject in obj.get("subjects") or []:
        if subject.get("kind") != kind:
            continue
        if kind == "ServiceAccount":
            names.append(f"{subject.get('namespace') or ''}:{subject.get('name') or ''}")
        else:
            names.append(str(subject.get("name") or ""))
    return ", ".join(names)


def binding_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, ROLE, AGE, USERS, GROUPS, SERVICEACCOUNTS."""
    ref = obj.get("roleRef") or {}
    return [
        dig(obj, "metadata", "name") or "",
        f"{ref.get('kind') or ''}/{ref.get('name') or ''}",
        since(dig(obj, "metadata", "creationTimestamp"), now),
        _subjects(obj, "User"),
        _subjects(obj, "Group"),
        _subjects(obj, "ServiceAccount"),
    ]
