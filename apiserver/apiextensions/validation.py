"""Validating a custom object against its structural schema, worded as kube-apiserver words it.

kube-apiserver validates custom resources with kube-openapi's ``validate`` package and converts each
result into a ``field.Error`` (``kubeOpenAPIResultToFieldErrors``); it then checks list types
(``x-kubernetes-list-type`` set/map uniqueness) and embedded resources. This module does the same
walk over a JSON value and a schema dict and returns :class:`~machinery.errors.StatusCause` lists:

========================  =================================================================
keyword                   cause
========================  =================================================================
type / nullable / format  ``Invalid value: "string": spec.x in body must be of type integer: "string"``
required                  ``spec.x: Required value``
enum                      ``Unsupported value: "c": supported values: "a", "b"``
pattern                   ``spec.x in body should match '^[a-z]+$'``
minimum / maximum         ``should be greater than or equal to 1`` / ``should be less than 10``
multipleOf                ``should be a multiple of 5``
minLength / maxLength     ``should be at least 2 chars long`` / ``Too long: may not be longer than 5``
minItems / maxItems       ``should have at least 1 items`` / ``Too many: 6: must have at most 5 items``
minProperties / max…      ``should have at least 1 properties`` / ``Too many: …``
uniqueItems               ``shouldn't contain duplicates``
allOf/anyOf/oneOf/not     ``must validate all the schemas (allOf)`` …
list-type set / map       ``Duplicate value: …``
========================  =================================================================

Paths are Kubernetes' (``spec.ports[0].port``); object keys are joined with dots as kube-openapi
does. CEL rules (``x-kubernetes-validations``) are evaluated by :mod:`.cel`, not here.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

from machinery.errors import StatusCause

from . import field
from .formats import valid_format
from .regex import PatternError, go_search

Schema = dict[str, Any]

_DNS1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def json_type(value: Any) -> str:
    """The OpenAPI type name of a decoded JSON value (kube-openapi's wording)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _in_body(path: str) -> str:
    return f"{path or '.'} in body"


def _type_ok(schema: Schema, value: Any) -> tuple[bool, str]:
    """Whether ``value`` has the schema's type; and the expected type as kube-openapi names it."""
    actual = json_type(value)
    if schema.get("x-kubernetes-int-or-string"):
        return actual in ("integer", "string"), "integer,string"
    expected = schema.get("type", "")
    if not expected:
        return True, ""
    if expected == "number":
        return actual in ("integer", "number"), expected
    return actual == expected, expected


def validate_value(schema: Schema, value: Any, path: str = "") -> list[StatusCause]:
    """Every schema violation in ``value`` (kube-openapi's checks plus list types and embedded objects)."""
    causes: list[StatusCause] = []
    _validate(schema, value, path, causes)
    return causes


def _validate(schema: Schema, value: Any, path: str, causes: list[StatusCause]) -> None:
    if value is None:
        if schema.get("nullable") or (not schema.get("type") and not schema.get("x-kubernetes-int-or-string")):
            return
        _, expected = _type_ok(schema, value)
        causes.append(field.type_invalid(path, "null", f'{_in_body(path)} must be of type {expected}: "null"'))
        return
    ok, expected = _type_ok(schema, value)
    if not ok:
        actual = json_type(value)
        causes.append(
            field.type_invalid(path, actual, f"{_in_body(path)} must be of type {expected}: {json.dumps(actual)}")
        )
        return
    if isinstance(value, str):
        _validate_string(schema, value, path, causes)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int | float):
        _validate_number(schema, value, path, causes)
    elif isinstance(value, list):
        _validate_array(schema, value, path, causes)
    elif isinstance(value, dict):
        _validate_object(schema, value, path, causes)
    if "enum" in schema and not any(_json_equal(value, allowed) for allowed in schema["enum"]):
        causes.append(field.not_supported(path, value, list(schema["enum"])))
    _validate_junctors(schema, value, path, causes)


def _validate_junctors(schema: Schema, value: Any, path: str, causes: list[StatusCause]) -> None:
    for sub in schema.get("allOf") or []:
        sub_causes = validate_value(sub, value, path)
        if sub_causes:
            causes.extend(sub_causes)
            causes.append(field.invalid(path, "", f"{_in_body(path)} must validate all the schemas (allOf)"))
            break
    any_of = schema.get("anyOf") or []
    if any_of and not any(not validate_value(sub, value, path) for sub in any_of):
        causes.append(field.invalid(path, "", f"{_in_body(path)} must validate at least one schema (anyOf)"))
    one_of = schema.get("oneOf") or []
    if one_of:
        passing = sum(1 for sub in one_of if not validate_value(sub, value, path))
        if passing != 1:
            causes.append(field.invalid(path, "", f"{_in_body(path)} must validate one and only one schema (oneOf)"))
    if "not" in schema and not validate_value(schema["not"], value, path):
        causes.append(field.invalid(path, "", f"{_in_body(path)} must not validate the schema (not)"))


def _validate_string(schema: Schema, value: str, path: str, causes: list[StatusCause]) -> None:
    length = len(value)
    if "maxLength" in schema and length > schema["maxLength"]:
        causes.append(field.too_long(path, int(schema["maxLength"])))
    if "minLength" in schema and length < schema["minLength"]:
        causes.append(
            field.invalid(path, value, f"{_in_body(path)} should be at least {schema['minLength']} chars long")
        )
    pattern = schema.get("pattern")
    if pattern:
        try:
            matched = go_search(pattern, value)
        except PatternError:
            matched = True  # refused when the CRD was written; never reached for a stored CRD
        if not matched:
            causes.append(field.invalid(path, value, f"{_in_body(path)} should match '{pattern}'"))
    fmt = schema.get("format")
    if fmt and not schema.get("x-kubernetes-int-or-string") and not valid_format(fmt, value):
        causes.append(field.type_invalid(path, value, f"{_in_body(path)} must be of type {fmt}: {json.dumps(value)}"))


def _validate_number(schema: Schema, value: float, path: str, causes: list[StatusCause]) -> None:
    if "maximum" in schema:
        maximum = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= maximum:
            causes.append(
                field.invalid(path, value, f"{_in_body(path)} should be less than {field.go_number(maximum)}")
            )
        elif value > maximum:
            causes.append(
                field.invalid(
                    path, value, f"{_in_body(path)} should be less than or equal to {field.go_number(maximum)}"
                )
            )
    if "minimum" in schema:
        minimum = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= minimum:
            causes.append(
                field.invalid(path, value, f"{_in_body(path)} should be greater than {field.go_number(minimum)}")
            )
        elif value < minimum:
            causes.append(
                field.invalid(
                    path, value, f"{_in_body(path)} should be greater than or equal to {field.go_number(minimum)}"
                )
            )
    multiple = schema.get("multipleOf")
    if multiple and not _is_multiple(value, multiple):
        causes.append(
            field.invalid(path, value, f"{_in_body(path)} should be a multiple of {field.go_number(multiple)}")
        )


def _is_multiple(value: float, factor: float) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    quotient = Fraction(value) / Fraction(factor)
    return quotient.denominator == 1 or abs(float(quotient) - round(float(quotient))) < 1e-9


def _validate_array(schema: Schema, value: list[Any], path: str, causes: list[StatusCause]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(field.too_many(path, len(value), int(schema["maxItems"])))
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(field.invalid(path, value, f"{_in_body(path)} should have at least {schema['minItems']} items"))
    if schema.get("uniqueItems") and _has_duplicates(value):
        causes.append(field.invalid(path, value, f"{_in_body(path)} shouldn't contain duplicates"))
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(items, item, field.index(path, i), causes)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if any(_json_equal(item, other) for other in seen):
                causes.append(field.duplicate(field.index(path, i), item))
            else:
                seen.append(item)
    elif list_type == "map":
        keys = list(schema.get("x-kubernetes-list-map-keys") or [])
        item_schema = items if isinstance(items, dict) else {}
        seen_keys: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            identity = {k: item.get(k, _key_default(item_schema, k)) for k in keys}
            identity = {k: v for k, v in identity.items() if v is not None}
            encoded = json.dumps(identity, sort_keys=True)
            if encoded in seen_keys:
                causes.append(field.duplicate(field.index(path, i), identity))
            seen_keys.add(encoded)


def _key_default(item_schema: Schema, key: str) -> Any:
    return ((item_schema.get("properties") or {}).get(key) or {}).get("default")


def _validate_object(schema: Schema, value: dict[str, Any], path: str, causes: list[StatusCause]) -> None:
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(field.too_many(path, len(value), int(schema["maxProperties"])))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            field.invalid(path, value, f"{_in_body(path)} should have at least {schema['minProperties']} properties")
        )
    for name in schema.get("required") or []:
        if name not in value:
            causes.append(field.required(field.child(path, name)))
    properties: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for name, item in value.items():
        sub = properties.get(name)
        if sub is not None:
            _validate(sub, item, field.child(path, name), causes)
        elif isinstance(additional, dict):
            _validate(additional, item, field.child(path, name), causes)
    if schema.get("x-kubernetes-embedded-resource"):
        _validate_embedded(value, path, causes)


def _validate_embedded(value: dict[str, Any], path: str, causes: list[StatusCause]) -> None:
    """``x-kubernetes-embedded-resource``: apiVersion, kind and a well-formed metadata."""
    if not value.get("apiVersion"):
        causes.append(field.required(field.child(path, "apiVersion"), "must not be empty"))
    if not value.get("kind"):
        causes.append(field.required(field.child(path, "kind"), "must not be empty"))
    metadata = value.get("metadata")
    if metadata is None:
        return
    meta_path = field.child(path, "metadata")
    if not isinstance(metadata, dict):
        causes.append(field.invalid(meta_path, metadata, "must be an object"))
        return
    for name_field in ("name", "generateName"):
        name = metadata.get(name_field)
        if (
            isinstance(name, str)
            and name
            and not _is_dns_subdomain(name.rstrip("-") if name_field == "generateName" else name)
        ):
            causes.append(field.invalid(field.child(meta_path, name_field), name, _DNS1123_SUBDOMAIN))


def _is_dns_subdomain(name: str) -> bool:
    if len(name) > 253:
        return False
    labels = name.split(".")
    return all(
        label
        and label[0].isalnum()
        and label[-1].isalnum()
        and all(c.islower() or c.isdigit() or c == "-" for c in label)
        and label.isascii()
        for label in labels
    )


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _has_duplicates(values: list[Any]) -> bool:
    return any(_json_equal(values[i], values[j]) for i in range(len(values)) for j in range(i))
