"""Pruning unknown fields from custom objects, as kube-apiserver's structural pruning does.

A field that the structural schema does not declare is dropped, unless the schema node (or an
ancestor, until a node that declares ``properties``) sets ``x-kubernetes-preserve-unknown-fields``.
At the resource root ``apiVersion``, ``kind`` and ``metadata`` are always kept (metadata has its own
rules, applied by the object-meta code); inside ``x-kubernetes-embedded-resource`` objects the
same three are kept and ``metadata`` is reduced to ObjectMeta's fields.

:func:`prune` returns the removed paths, sorted, worded as Kubernetes' field paths
(``spec.foo``, ``spec.ports[0].bogus``, ``spec.selector[app].x``): kube-apiserver turns each into a
warning ``unknown field "spec.foo"`` with ``fieldValidation=Warn`` and refuses the request with
``Strict``; the caller chooses.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_TYPE_META = ("apiVersion", "kind", "metadata")


def prune(obj: dict[str, Any], schema: Schema, *, is_resource_root: bool = True) -> list[str]:
    """Remove unknown fields from ``obj`` in place; return the removed paths (sorted)."""
    pruned: list[str] = []
    _prune_object(obj, schema, "", pruned, is_resource_root=is_resource_root)
    return sorted(pruned)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _prune(value: Any, schema: Schema | None, path: str, pruned: list[str]) -> None:
    if schema is None:
        return
    if isinstance(value, dict):
        _prune_object(value, schema, path, pruned, is_resource_root=False)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _prune(item, items, f"{path}[{i}]", pruned)


def _prune_object(obj: dict[str, Any], schema: Schema, path: str, pruned: list[str], *, is_resource_root: bool) -> None:
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    keep_type_meta = is_resource_root or embedded
    properties: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for name in list(obj):
        child_path = _join(path, name)
        if keep_type_meta and name in _TYPE_META:
            if name == "metadata" and embedded and isinstance(obj[name], dict):
                _prune_embedded_metadata(obj[name], properties.get("metadata"), child_path, pruned)
            continue
        if name in properties:
            _prune(obj[name], properties[name], child_path, pruned)
        elif isinstance(additional, dict):
            _prune(obj[name], additional, f"{path}[{name}]" if path else name, pruned)
        elif additional is True or preserve:
            continue
        else:
            del obj[name]
            pruned.append(child_path)


def _prune_embedded_metadata(meta: dict[str, Any], schema: Schema | None, path: str, pruned: list[str]) -> None:
    for name in list(meta):
        if name not in OBJECT_META_FIELDS:
            del meta[name]
            pruned.append(_join(path, name))
