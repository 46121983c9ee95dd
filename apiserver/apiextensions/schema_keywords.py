"""The keyword-level checks of a CRD schema, node by node (junctors included), with Kubernetes' errors.

Kubernetes' ``ValidateCustomResourceDefinitionOpenAPISchema`` walks every schema node, including
those under ``allOf``/``anyOf``/``oneOf``/``not``, and refuses keywords that structural schemas
cannot express (``$ref``, ``definitions``, ``dependencies``, ``id``, ``patternProperties``,
``additionalItems``, ``uniqueItems``, ``type: null``, item arrays), ``additionalProperties`` beside
``properties``, defaults inside top-level ``metadata``/``kind``/``apiVersion``, inconsistent
``x-kubernetes-list-type``/``list-map-keys``/``map-type``, and malformed
``x-kubernetes-validations`` entries (empty rule, message with line breaks, unknown ``reason``,
``fieldPath`` not in the schema). :func:`check_keywords` does the same; :mod:`.structural` adds
the structural invariants on top.
"""

from __future__ import annotations

import re
from typing import Any

from machinery.errors import StatusCause

from . import field

Schema = dict[str, Any]

OPENAPI_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
VALIDATION_REASONS = ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"]
_JUNCTORS = ("allOf", "anyOf", "oneOf")
_UNSUPPORTED = [
    ("id", "id is not supported"),
    ("additionalItems", "additionalItems is not supported"),
    ("patternProperties", "patternProperties is not supported"),
    ("definitions", "definitions is not supported"),
    ("dependencies", "dependencies is not supported"),
    ("$ref", "$ref is not supported"),
]


def check_keywords(schema: Schema, path: str, causes: list[StatusCause]) -> None:
    """Append the keyword-level errors of ``schema`` (the version's root schema) to ``causes``."""
    _check_openapi(schema, path, causes, is_root=True, in_meta=False, defaults_reason="")


def _check_openapi(
    s: Schema, path: str, causes: list[StatusCause], *, is_root: bool, in_meta: bool, defaults_reason: str
) -> None:
    if not isinstance(s, dict):
        causes.append(field.invalid(path, s, "must be a schema object"))
        return
    typ = s.get("type", "")
    if typ and typ not in OPENAPI_TYPES and typ != "null":
        causes.append(field.not_supported(field.child(path, "type"), typ, OPENAPI_TYPES))
    if "default" in s and defaults_reason:
        causes.append(field.forbidden(field.child(path, "default"), f"must not be set {defaults_reason}"))
    for keyword, message in _UNSUPPORTED:
        if s.get(keyword):
            causes.append(field.forbidden(field.child(path, keyword), message))
    if typ == "null":
        causes.append(
            field.forbidden(field.child(path, "type"), "type cannot be set to null, use nullable as an alternative")
        )
    if isinstance(s.get("items"), list):
        causes.append(field.forbidden(field.child(path, "items"), "items must be a schema object and not an array"))
    if in_meta and s.get("x-kubernetes-embedded-resource"):
        causes.append(
            field.forbidden(
                field.child(path, "x-kubernetes-embedded-resource"), "must not be used inside of resource meta"
            )
        )
    if s.get("uniqueItems"):
        causes.append(
            field.forbidden(
                field.child(path, "uniqueItems"),
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    additional = s.get("additionalProperties")
    properties: dict[str, Schema] = s.get("properties") or {}
    if additional is not None:
        if properties and (additional is False or isinstance(additional, dict)):
            causes.append(
                field.forbidden(
                    field.child(path, "additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                )
            )
        if isinstance(additional, dict):
            reason = "inside additionalProperties applying to object metadata" if in_meta else defaults_reason
            _check_openapi(
                additional,
                field.child(path, "additionalProperties"),
                causes,
                is_root=False,
                in_meta=in_meta,
                defaults_reason=reason,
            )
    for name, sub in properties.items():
        sub_meta, reason = in_meta, defaults_reason
        if (is_root or s.get("x-kubernetes-embedded-resource")) and name in ("metadata", "kind", "apiVersion"):
            sub_meta = True
            if is_root:
                reason = f"in top-level {name}"
        _check_openapi(
            sub,
            field.key(field.child(path, "properties"), name),
            causes,
            is_root=False,
            in_meta=sub_meta,
            defaults_reason=reason,
        )
    if isinstance(s.get("not"), dict):
        _check_openapi(
            s["not"], field.child(path, "not"), causes, is_root=False, in_meta=in_meta, defaults_reason=defaults_reason
        )
    for junctor in _JUNCTORS:
        for i, sub in enumerate(s.get(junctor) or []):
            _check_openapi(
                sub,
                field.index(field.child(path, junctor), i),
                causes,
                is_root=False,
                in_meta=in_meta,
                defaults_reason=defaults_reason,
            )
    if isinstance(s.get("items"), dict):
        _check_openapi(
            s["items"],
            field.child(path, "items"),
            causes,
            is_root=False,
            in_meta=in_meta,
            defaults_reason=defaults_reason,
        )
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        causes.append(
            field.invalid(field.child(path, "x-kubernetes-preserve-unknown-fields"), False, "must be true or undefined")
        )
    _check_map_and_list_types(s, path, causes)
    _check_validation_rules(s, path, causes)


def _check_map_and_list_types(s: Schema, path: str, causes: list[StatusCause]) -> None:
    typ = s.get("type", "")
    map_type = s.get("x-kubernetes-map-type")
    if map_type is not None:
        if typ != "object":
            detail = "must be object if x-kubernetes-map-type is specified"
            causes.append(
                field.invalid(field.child(path, "type"), typ, detail)
                if typ
                else field.required(field.child(path, "type"), detail)
            )
        if map_type not in ("atomic", "granular"):
            causes.append(
                field.not_supported(field.child(path, "x-kubernetes-map-type"), map_type, ["atomic", "granular"])
            )
    list_type = s.get("x-kubernetes-list-type")
    if list_type is not None and typ != "array":
        detail = "must be array if x-kubernetes-list-type is specified"
        causes.append(
            field.invalid(field.child(path, "type"), typ, detail)
            if typ
            else field.required(field.child(path, "type"), detail)
        )
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        causes.append(
            field.not_supported(field.child(path, "x-kubernetes-list-type"), list_type, ["atomic", "set", "map"])
        )
    map_keys = list(s.get("x-kubernetes-list-map-keys") or [])
    if map_keys and list_type != "map":
        detail = "must be map if x-kubernetes-list-map-keys is non-empty"
        lt_path = field.child(path, "x-kubernetes-list-type")
        causes.append(
            field.required(lt_path, detail) if list_type is None else field.invalid(lt_path, list_type, detail)
        )
    items = s.get("items")
    if list_type == "map":
        if not map_keys:
            causes.append(
                field.required(
                    field.child(path, "x-kubernetes-list-map-keys"),
                    "must not be empty if x-kubernetes-list-type is map",
                )
            )
        if items is None:
            causes.append(
                field.required(field.child(path, "items"), "must have a schema if x-kubernetes-list-type is map")
            )
        elif isinstance(items, dict) and items.get("type") != "object":
            causes.append(
                field.invalid(
                    field.child(field.child(path, "items"), "type"),
                    items.get("type", ""),
                    "must be object if parent array's x-kubernetes-list-type is map",
                )
            )
        elif isinstance(items, dict):
            item_props: dict[str, Schema] = items.get("properties") or {}
            required = set(items.get("required") or [])
            seen: set[str] = set()
            for k in map_keys:
                prop_path = field.key(field.child(field.child(path, "items"), "properties"), k)
                if k not in item_props:
                    causes.append(
                        field.invalid(
                            field.child(path, "x-kubernetes-list-map-keys"),
                            map_keys,
                            "entries must all be names of item properties",
                        )
                    )
                else:
                    if item_props[k].get("type") in ("array", "object"):
                        causes.append(
                            field.invalid(
                                field.child(prop_path, "type"),
                                "object",
                                "must be a scalar type if parent array's x-kubernetes-list-type is map",
                            )
                        )
                    if k not in required and "default" not in item_props[k]:
                        causes.append(
                            field.required(
                                field.child(prop_path, "default"),
                                "this property is in x-kubernetes-list-map-keys, so it must have a default "
                                "or be a required "
                                "property",
                            )
                        )
                    if item_props[k].get("nullable"):
                        causes.append(
                            field.forbidden(
                                field.child(prop_path, "nullable"),
                                "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                            )
                        )
                if k in seen:
                    causes.append(
                        field.invalid(
                            field.child(path, "x-kubernetes-list-map-keys"),
                            map_keys,
                            "must not contain duplicate entries",
                        )
                    )
                seen.add(k)
    if list_type in ("set", "map") and isinstance(items, dict) and items.get("nullable"):
        causes.append(
            field.forbidden(
                field.child(field.child(path, "items"), "nullable"),
                f"cannot be nullable when x-kubernetes-list-type is {list_type}",
            )
        )


def _check_validation_rules(s: Schema, path: str, causes: list[StatusCause]) -> None:
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        rule_path = field.index(field.child(path, "x-kubernetes-validations"), i)
        text = str(rule.get("rule", ""))
        message = rule.get("message")
        if not text.strip():
            causes.append(field.required(field.child(rule_path, "rule"), "rule is not specified"))
        elif message is not None and message and not message.strip():
            causes.append(
                field.invalid(field.child(rule_path, "message"), message, "message must be non-empty if specified")
            )
        elif message and re.search(r"[\n\r]", message.strip()):
            causes.append(
                field.invalid(field.child(rule_path, "message"), message, "message must not contain line breaks")
            )
        elif re.search(r"[\n\r]", text.strip()) and not (message or "").strip():
            causes.append(
                field.required(
                    field.child(rule_path, "message"), "message must be specified if rule contains line breaks"
                )
            )
        expr = rule.get("messageExpression")
        if expr is not None and expr and not expr.strip():
            causes.append(
                field.required(
                    field.child(rule_path, "messageExpression"), "messageExpression must be non-empty if specified"
                )
            )
        reason = rule.get("reason")
        if reason is not None and reason not in VALIDATION_REASONS:
            causes.append(field.not_supported(field.child(rule_path, "reason"), reason, VALIDATION_REASONS))
        fpath = rule.get("fieldPath")
        if fpath is not None and fpath:
            if not fpath.strip():
                causes.append(
                    field.invalid(
                        field.child(rule_path, "fieldPath"), fpath, "fieldPath must be non-empty if specified"
                    )
                )
            elif re.search(r"[\n\r]", fpath):
                causes.append(
                    field.invalid(field.child(rule_path, "fieldPath"), fpath, "fieldPath must not contain line breaks")
                )
            elif resolve_field_path(s, fpath) is None:
                causes.append(
                    field.invalid(field.child(rule_path, "fieldPath"), fpath, "fieldPath must be a valid path")
                )


_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]")


def resolve_field_path(s: Schema, fpath: str) -> str | None:
    """A rule's ``fieldPath`` (``.spec.ports``, ``['a.b']``) as a field path suffix; None if the schema lacks it."""
    position, out, node = 0, "", s
    while position < len(fpath):
        match = _PATH_STEP.match(fpath, position)
        if not match:
            return None
        name, quoted, idx = match.groups()
        if idx is not None:
            if node.get("type") != "array" or not isinstance(node.get("items"), dict):
                return None
            node, out = node["items"], f"{out}[{idx}]"
        else:
            step = name if name is not None else quoted.replace("\\'", "'")
            props: dict[str, Schema] = node.get("properties") or {}
            if step in props:
                node = props[step]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                return None
            out = f"{out}.{step}" if name is not None else f"{out}[{step}]"
        position = match.end()
    return out
