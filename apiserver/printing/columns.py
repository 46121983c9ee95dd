"""The ``TableColumnDefinition`` type, the columns every kind shares, and the printer record.

Imported by each per-kind printer module and by :mod:`apiserver.printing.table`. A column's
``priority`` follows Kubernetes: 0 is always shown, 1 only with ``kubectl get -o wide``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CellsFn = Callable[[dict[str, Any], datetime], list[Any]]
"""Builds every cell of one row (wide ones included) from an object and "now"."""

ConditionsFn = Callable[[dict[str, Any]], list[dict[str, str]]]
"""Optional ``TableRowCondition`` list of a row (only pods set one)."""


@dataclass(frozen=True)
class Column:
    """One ``meta.k8s.io/v1`` ``TableColumnDefinition``."""

    name: str
    type: str
    format: str = ""
    description: str = ""
    priority: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The wire form kubectl reads."""
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def _no_conditions(obj: dict[str, Any]) -> list[dict[str, str]]:
    return []


@dataclass(frozen=True)
class Printer:
    """How one kind prints: its columns and the function that fills a row's cells."""

    columns: tuple[Column, ...]
    cells: CellsFn
    conditions: ConditionsFn = field(default=_no_conditions)


NAME = Column("Name", "string", "name", "Name of the object, unique within its namespace.")
AGE = Column("Age", "string", description="Time since the object was created.")
CONTAINERS = Column("Containers", "string", priority=1, description="Names of the template's containers.")
IMAGES = Column("Images", "string", priority=1, description="Images of the template's containers.")
SELECTOR = Column("Selector", "string", priority=1, description="Label query selecting the pods.")
