"""Applying schema ``default`` values to custom objects, as kube-apiserver's structural defaulting.

Kubernetes defaults custom objects when they are decoded: on every write after pruning (so a
default never brings back a pruned field) and on every read from storage (so a default added to a
CRD later shows up in old objects). :func:`apply_defaults` follows its rules:

- a missing property whose schema has ``default`` gets a deep copy of that default;
- a ``null`` property that is not ``nullable`` is replaced by its default, or removed when it has
  none (``nullable: true`` keeps the ``null``: an explicit null is not defaulted);
- defaults apply inside nested objects, inside every item of an array (``items``) and inside every
  value of a map (``additionalProperties``); defaults of a freshly defaulted value apply too.

Defaults are validated and pruned when the CRD is written (:mod:`.structural`), so applying one
never creates an invalid or unknown field.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]


def apply_defaults(value: Any, schema: Schema | None) -> None:
    """Default ``value`` (an object or array) in place."""
    if schema is None:
        return
    if isinstance(value, dict):
        _default_object(value, schema)
    elif isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return
        for i, item in enumerate(value):
            if item is None and not items.get("nullable") and "default" in items:
                value[i] = item = copy.deepcopy(items["default"])
            apply_defaults(item, items)


def _default_object(obj: dict[str, Any], schema: Schema) -> None:
    properties: dict[str, Schema] = schema.get("properties") or {}
    for name, sub in properties.items():
        if name not in obj:
            if "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
        elif obj[name] is None and not sub.get("nullable"):
            if "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            else:
                del obj[name]
                continue
        if name in obj:
            apply_defaults(obj[name], sub)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for name in list(obj):
            if name in properties:
                continue
            if obj[name] is None and not additional.get("nullable") and "default" in additional:
                obj[name] = copy.deepcopy(additional["default"])
            apply_defaults(obj[name], additional)
