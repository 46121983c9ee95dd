"""Checking that a CRD version's ``openAPIV3Schema`` is a structural schema, with Kubernetes' errors.

kube-apiserver refuses a CustomResourceDefinition whose schema breaks any of these rules (its
``ValidateCustomResourceDefinitionOpenAPISchema`` and ``schema.ValidateStructural``); this module
makes the same checks over the schema dict and returns causes with Kubernetes' paths and wording,
e.g. ``spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty
for specified object fields``:

- every node declares ``type`` (except under ``x-kubernetes-int-or-string`` or
  ``x-kubernetes-preserve-unknown-fields``), ``object`` at the root, ``items`` for arrays;
- no ``$ref``, ``id``, ``definitions``, ``dependencies``, ``patternProperties``,
  ``additionalItems``, ``uniqueItems: true``, ``type: null``, item arrays, nor ``nullable`` at the
  root; ``additionalProperties`` never together with ``properties`` and never at the root;
- ``allOf``/``anyOf``/``oneOf``/``not`` only restate what the structural part declares (no
  ``type``, ``default``, ``description``, ``nullable``, ``x-kubernetes-*`` … in them, no field that
  the structural part lacks), except the two int-or-string ``anyOf`` patterns;
- ``metadata`` at the root restricts ``name``/``generateName`` at most; no defaults in it;
- ``x-kubernetes-list-type``/``list-map-keys``/``map-type``/``embedded-resource`` used consistently,
  map-list keys required or defaulted; ``x-kubernetes-validations`` entries well formed;
- ``pattern`` compiles as a Go regular expression; every ``default`` validates and has no field
  that pruning would drop.

CEL rules are compiled and costed by :mod:`.cel` once the schema passes these checks.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from machinery.errors import StatusCause

from . import field
from .pruning import prune
from .regex import PatternError, compile_go
from .schema_keywords import check_keywords
from .validation import validate_value

Schema = dict[str, Any]

ROOT, ITEM, FIELD = "root", "item", "field"
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
_NESTED_FORBIDDEN = [
    ("type", "must be empty to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    ("externalDocs", "must be undefined to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
]
_JUNCTORS = ("allOf", "anyOf", "oneOf")


def check_schema(schema: Schema, path: str = "spec.validation.openAPIV3Schema") -> list[StatusCause]:
    """All reasons ``schema`` cannot serve a CRD version (empty when it is a valid structural schema)."""
    causes: list[StatusCause] = []
    if schema.get("nullable"):
        causes.append(field.forbidden(field.child(path, "nullable"), "nullable cannot be true at the root"))
    check_keywords(schema, path, causes)
    structural: list[StatusCause] = []
    _check_structural(schema, ROOT, path, structural)
    _check_completeness(schema, path, structural)
    structural.sort(key=lambda c: f"{c.field}: {c.message}")
    causes.extend(c for c in structural if c not in causes)
    if not causes:
        _check_defaults(schema, path, causes, is_root=True)
    return causes


# --- the structural invariants (schema.ValidateStructural) ------------------------------------


def _is_int_or_string_any_of(any_of: Any) -> bool:
    return isinstance(any_of, list) and any_of == _INT_OR_STRING_ANY_OF


def _check_structural(s: Schema, level: str, path: str, causes: list[StatusCause]) -> None:
    if not isinstance(s, dict):
        return
    typ = s.get("type", "")
    if typ == "array" and "items" not in s:
        causes.append(field.required(field.child(path, "items"), "must be specified"))
    if isinstance(s.get("items"), dict):
        _check_structural(s["items"], ITEM, field.child(path, "items"), causes)
    for name, sub in (s.get("properties") or {}).items():
        _check_structural(sub, FIELD, field.key(field.child(path, "properties"), name), causes)
    additional = s.get("additionalProperties")
    if additional is not None and additional is not True:
        if level == ROOT:
            causes.append(field.forbidden(field.child(path, "additionalProperties"), "must not be used at the root"))
        if isinstance(additional, dict):
            _check_structural(additional, FIELD, field.child(path, "additionalProperties"), causes)
    int_or_string = bool(s.get("x-kubernetes-int-or-string"))
    preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    if int_or_string and preserve:
        causes.append(
            field.invalid(
                field.child(path, "x-kubernetes-preserve-unknown-fields"),
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    if int_or_string and embedded:
        causes.append(
            field.invalid(
                field.child(path, "x-kubernetes-embedded-resource"),
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    _check_value_validation(s, level, path, causes)
    if embedded and typ != "object":
        detail = "must be object if x-kubernetes-embedded-resource is true"
        causes.append(
            field.invalid(field.child(path, "type"), typ, detail)
            if typ
            else field.required(field.child(path, "type"), detail)
        )
    elif not typ and not int_or_string and not preserve:
        detail = {
            ROOT: "must not be empty at the root",
            ITEM: "must not be empty for specified array items",
            FIELD: "must not be empty for specified object fields",
        }[level]
        causes.append(field.required(field.child(path, "type"), detail))
    if embedded and isinstance(additional, dict):
        causes.append(
            field.forbidden(
                field.child(path, "additionalProperties"), "must not be used if x-kubernetes-embedded-resource is set"
            )
        )
    if level == ROOT and typ and typ != "object":
        causes.append(field.invalid(field.child(path, "type"), typ, "must be object at the root"))
    properties: dict[str, Schema] = s.get("properties") or {}
    check_meta = level == ROOT or embedded
    for name in ("kind", "apiVersion"):
        if name in properties and check_meta and properties[name].get("type") != "string":
            causes.append(
                field.invalid(
                    field.child(field.key(field.child(path, "properties"), name), "type"),
                    properties[name].get("type", ""),
                    "must be string",
                )
            )
    if "metadata" in properties:
        _check_metadata(
            properties["metadata"], check_meta, level, field.key(field.child(path, "properties"), "metadata"), causes
        )
    if embedded and not preserve and not properties:
        causes.append(
            field.required(
                field.child(path, "properties"),
                "must not be empty if x-kubernetes-embedded-resource is true without "
                "x-kubernetes-preserve-unknown-fields",
            )
        )


def _check_metadata(meta: Schema, check_meta: bool, level: str, path: str, causes: list[StatusCause]) -> None:
    if check_meta and meta.get("type") != "object":
        causes.append(field.invalid(field.child(path, "type"), meta.get("type", ""), "must be object"))
    if level != ROOT:
        return
    rest = {k: v for k, v in meta.items() if k not in ("type", "default", "description", "properties")}
    props = set((meta.get("properties") or {}).keys())
    allowed_props = props <= {"name", "generateName"}
    if rest or not allowed_props:
        causes.append(
            field.forbidden(
                path, "must not specify anything other than name and generateName, but metadata is implicitly specified"
            )
        )


def _check_value_validation(s: Schema, level: str, path: str, causes: list[StatusCause]) -> None:
    skip_any_of = _is_int_or_string_any_of(s.get("anyOf"))
    all_of = s.get("allOf") or []
    skip_first_all_of = (
        bool(all_of) and isinstance(all_of[0], dict) and _is_int_or_string_any_of(all_of[0].get("anyOf"))
    )
    _check_junctors(s, level, path, causes, skip_any_of=skip_any_of, skip_first_all_of=skip_first_all_of)
    pattern = s.get("pattern")
    if pattern:
        try:
            compile_go(pattern)
        except PatternError as exc:
            causes.append(
                field.invalid(
                    field.child(path, "pattern"), pattern, f"must be a valid regular expression, but isn't: {exc}"
                )
            )


def _check_junctors(
    s: Schema, level: str, path: str, causes: list[StatusCause], *, skip_any_of: bool, skip_first_all_of: bool
) -> None:
    if not skip_any_of:
        for i, sub in enumerate(s.get("anyOf") or []):
            _check_nested(sub, level, field.index(field.child(path, "anyOf"), i), causes, skip_any_of=False)
    for i, sub in enumerate(s.get("allOf") or []):
        _check_nested(
            sub, level, field.index(field.child(path, "allOf"), i), causes, skip_any_of=skip_first_all_of and i == 0
        )
    for i, sub in enumerate(s.get("oneOf") or []):
        _check_nested(sub, level, field.index(field.child(path, "oneOf"), i), causes, skip_any_of=False)
    if isinstance(s.get("not"), dict):
        _check_nested(s["not"], level, field.child(path, "not"), causes, skip_any_of=False)


def _check_nested(v: Schema, level: str, path: str, causes: list[StatusCause], *, skip_any_of: bool) -> None:
    if not isinstance(v, dict):
        return
    _check_junctors(v, level, path, causes, skip_any_of=skip_any_of, skip_first_all_of=False)
    if v.get("pattern"):
        try:
            compile_go(v["pattern"])
        except PatternError as exc:
            causes.append(
                field.invalid(
                    field.child(path, "pattern"), v["pattern"], f"must be a valid regular expression, but isn't: {exc}"
                )
            )
    if isinstance(v.get("items"), dict):
        _check_nested(v["items"], level, field.child(path, "items"), causes, skip_any_of=False)
    for name, sub in (v.get("properties") or {}).items():
        _check_nested(sub, FIELD, field.key(field.child(path, "properties"), name), causes, skip_any_of=False)
    for keyword, message in _NESTED_FORBIDDEN:
        if v.get(keyword) not in (None, False, "", []):
            causes.append(field.forbidden(field.child(path, keyword), message))
    if v.get("additionalProperties") is not None:
        causes.append(field.forbidden(field.child(path, "additionalProperties"), "must be undefined to be structural"))
    if "metadata" in (v.get("properties") or {}):
        causes.append(
            field.forbidden(
                field.key(field.child(path, "properties"), "metadata"), "must not be specified in a nested context"
            )
        )


def _check_completeness(s: Schema, path: str, causes: list[StatusCause]) -> None:
    """Every field or items that a junctor names must also be declared by the structural part."""
    if not isinstance(s, dict):
        return
    for junctor in _JUNCTORS:
        for i, sub in enumerate(s.get(junctor) or []):
            _complete_against(s, sub, path, field.index(field.child(path, junctor), i), causes)
    if isinstance(s.get("not"), dict):
        _complete_against(s, s["not"], path, field.child(path, "not"), causes)
    if isinstance(s.get("items"), dict):
        _check_completeness(s["items"], field.child(path, "items"), causes)
    for name, sub in (s.get("properties") or {}).items():
        _check_completeness(sub, field.key(field.child(path, "properties"), name), causes)
    if isinstance(s.get("additionalProperties"), dict):
        _check_completeness(s["additionalProperties"], field.child(path, "additionalProperties"), causes)


def _complete_against(s: Schema | None, v: Schema, s_path: str, v_path: str, causes: list[StatusCause]) -> None:
    if not isinstance(v, dict):
        return
    if s is None:
        causes.append(field.required(s_path, f"because it is defined in {v_path}"))
        return
    for junctor in _JUNCTORS:
        for i, sub in enumerate(v.get(junctor) or []):
            _complete_against(s, sub, s_path, field.index(field.child(v_path, junctor), i), causes)
    if isinstance(v.get("not"), dict):
        _complete_against(s, v["not"], s_path, field.child(v_path, "not"), causes)
    if isinstance(v.get("items"), dict):
        items = s.get("items") if isinstance(s.get("items"), dict) else None
        _complete_against(items, v["items"], field.child(s_path, "items"), field.child(v_path, "items"), causes)
    s_props: dict[str, Schema] = s.get("properties") or {}
    additional = s.get("additionalProperties") if isinstance(s.get("additionalProperties"), dict) else None
    for name, sub in (v.get("properties") or {}).items():
        target = s_props.get(name, additional)
        _complete_against(
            target,
            sub,
            field.key(field.child(s_path, "properties"), name),
            field.key(field.child(v_path, "properties"), name),
            causes,
        )


# --- defaults ----------------------------------------------------------------------------------


def _check_defaults(s: Schema, path: str, causes: list[StatusCause], *, is_root: bool) -> None:
    if "default" in s and not is_root:
        default_path = field.child(path, "default")
        value = copy.deepcopy(s["default"])
        if isinstance(value, dict):
            pruned = prune(value, s, is_resource_root=False)
            if pruned:
                causes.append(
                    field.invalid(
                        default_path, s["default"], f"must not have unknown fields, got: {json.dumps(pruned)}"
                    )
                )
        causes.extend(validate_value(s, s["default"], default_path))
    if isinstance(s.get("items"), dict):
        _check_defaults(s["items"], field.child(path, "items"), causes, is_root=False)
    for name, sub in (s.get("properties") or {}).items():
        _check_defaults(sub, field.key(field.child(path, "properties"), name), causes, is_root=False)
    if isinstance(s.get("additionalProperties"), dict):
        _check_defaults(s["additionalProperties"], field.child(path, "additionalProperties"), causes, is_root=False)
