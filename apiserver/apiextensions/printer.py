"""Server-side Table printing of custom resources from ``additionalPrinterColumns``.

Called by :mod:`apiserver.printing.table` for resources served from a CRD. As in Kubernetes,
the first column is ``Name``; then the version's ``additionalPrinterColumns`` in order, or, when
it declares none, ``Age`` (a ``date`` column on ``.metadata.creationTimestamp``; kubectl prints
``date`` cells as ages). A column's JSONPath is the simple subset Kubernetes accepts for
columns, plus filters: ``.spec.x``, ``.spec.list[0]``, ``.metadata.labels['app']``,
``.status.conditions[?(@.type=="Ready")].status``. String columns print the value as kubectl's
JSONPath printer does (lists and maps as JSON); other types pass the value through; a path that
finds nothing is an empty cell.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from apiserver.apiextensions.served import ServedVersion
from apiserver.printing.columns import NAME, Column, Printer

_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_-]+)"""
    r"""|\[(?P<index>-?\d+|\*)\]"""
    r"""|\[['"](?P<key>[^'"]+)['"]\]"""
    r"""|\[\?\(@\.(?P<fpath>[A-Za-z0-9_.-]+)\s*==\s*['"](?P<fvalue>[^'"]*)['"]\)\]""")

_MISSING = object()


def compile_path(path: str) -> list[tuple[str, str]]:
    """The steps of a column JSONPath; raises ValueError for what it cannot follow."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    steps: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {text[pos:]!r}")
        if m.group("field") is not None:
            steps.append(("field", m.group("field")))
        elif m.group("index") is not None:
            steps.append(("index", m.group("index")))
        elif m.group("key") is not None:
            steps.append(("field", m.group("key")))
        else:
            steps.append(("filter", f"{m.group('fpath')}={m.group('fvalue')}"))
        pos = m.end()
    return steps


def _dig(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def find(obj: Any, steps: list[tuple[str, str]]) -> list[Any]:
    """Every value the path reaches (a filter or ``[*]`` may reach several)."""
    current = [obj]
    for kind, arg in steps:
        following: list[Any] = []
        for value in current:
            if kind == "field":
                if isinstance(value, dict) and arg in value:
                    following.append(value[arg])
            elif kind == "index":
                if isinstance(value, list):
                    if arg == "*":
                        following.extend(value)
                    elif -len(value) <= int(arg) < len(value):
                        following.append(value[int(arg)])
            else:
                fpath, _, fvalue = arg.partition("=")
                if isinstance(value, list):
                    following.extend(v for v in value if _text(_dig(v, fpath)) == fvalue)
        current = following
    return current


def _text(value: Any) -> str:
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
        "description": "CreationTimestamp is a timestamp representing the server time when this object was "
                       "created."}


@lru_cache(maxsize=256)
def _printer(served: ServedVersion) -> Printer:
    specs = list(served.columns) or [_AGE]
    columns = [NAME]
    paths: list[tuple[str, list[tuple[str, str]]]] = []
    for spec in specs:
        columns.append(Column(str(spec.get("name") or ""), str(spec.get("type") or "string"),
                              str(spec.get("format") or ""), str(spec.get("description") or ""),
                              int(spec.get("priority") or 0)))
        try:
            steps = compile_path(str(spec.get("jsonPath") or ""))
        except ValueError:
            steps = [("field", "\0")]  # finds nothing: an empty cell, as Kubernetes prints a bad path
        paths.append((str(spec.get("type") or "string"), steps))

    def cells(obj: dict[str, Any], now: datetime) -> list[Any]:
        row: list[Any] = [(obj.get("metadata") or {}).get("name") or ""]
        for typ, steps in paths:
            found = find(obj, steps)
            if not found:
                row.append(None)
            elif typ == "string":
                row.append(" ".join(_text(v) for v in found))
            else:
                row.append(found[0])
        return row

    return Printer(tuple(columns), cells)


def custom_printer(served: ServedVersion) -> Printer:
    """The Table printer of one served version (built once per version)."""
    return _printer(served)
