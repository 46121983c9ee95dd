"""Field paths and field errors worded as Kubernetes' ``field.Error`` (k8s.io/apimachinery).

Every check in this package reports a :class:`~machinery.errors.StatusCause` whose ``field`` is a
Kubernetes field path (``spec.ports[0].name``, ``metadata.labels[app]`` for schema keys) and whose
``message`` is the part of ``field.Error.Error()`` after ``<field>: `` — so that
``machinery.errors.invalid`` renders exactly what kube-apiserver prints::

    spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"
    spec.mode: Unsupported value: "x": supported values: "a", "b"
    spec.name: Required value

Values are formatted as Go's ``%q`` / ``%v`` would (strings quoted, ``3`` not ``3.0``, ``null``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from machinery.errors import StatusCause


def child(path: str, name: str) -> str:
    """``spec`` + ``replicas`` → ``spec.replicas`` (a struct field)."""
    return f"{path}.{name}" if path else name


def key(path: str, name: str) -> str:
    """``properties`` + ``spec`` → ``properties[spec]`` (a map key, as ``field.Path.Key``)."""
    return f"{path}[{name}]"


def index(path: str, i: int) -> str:
    """``spec.ports`` + 0 → ``spec.ports[0]``."""
    return f"{path}[{i}]"


def go_number(value: float | int) -> str:
    """A number as Go's ``%v`` prints a float64: ``1`` for 1.0, ``1.5``, ``1e+21``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        digits = exponent.lstrip("+-").rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    return text


def go_quote(text: str) -> str:
    """Go's ``%q`` for the strings that occur in practice (JSON escaping is the same for ASCII)."""
    return json.dumps(text, ensure_ascii=False)


def go_value(value: Any) -> str:
    """A value as ``field.Error`` prints it: strings quoted, numbers bare, the rest as JSON."""
    if value is None:
        return '"null"'
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool | int | float):
        return go_number(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def invalid(path: str, value: Any, detail: str) -> StatusCause:
    """``field.Invalid``: ``Invalid value: <value>: <detail>``."""
    message = f"Invalid value: {go_value(value)}"
    if detail:
        message += f": {detail}"
    return StatusCause(path, message, "FieldValueInvalid")


def type_invalid(path: str, value: Any, detail: str) -> StatusCause:
    """``field.TypeInvalid``: worded like Invalid, reason ``FieldValueTypeInvalid``."""
    return StatusCause(path, f"Invalid value: {go_value(value)}: {detail}", "FieldValueTypeInvalid")


def required(path: str, detail: str = "") -> StatusCause:
    """``field.Required``: ``Required value`` (``: <detail>`` when given)."""
    return StatusCause(path, f"Required value: {detail}" if detail else "Required value", "FieldValueRequired")


def forbidden(path: str, detail: str) -> StatusCause:
    """``field.Forbidden``: ``Forbidden: <detail>``."""
    return StatusCause(path, f"Forbidden: {detail}", "FieldValueForbidden")


def duplicate(path: str, value: Any) -> StatusCause:
    """``field.Duplicate``: ``Duplicate value: <value>``."""
    return StatusCause(path, f"Duplicate value: {go_value(value)}", "FieldValueDuplicate")


def not_supported(path: str, value: Any, supported: list[Any]) -> StatusCause:
    """``field.NotSupported``: ``Unsupported value: "x": supported values: "a", "b"``."""
    quoted = ", ".join(go_quote(v) if isinstance(v, str) else go_quote(json.dumps(v)) for v in supported)
    message = f"Unsupported value: {go_value(value)}"
    if supported:
        message += f": supported values: {quoted}"
    return StatusCause(path, message, "FieldValueNotSupported")


def too_long(path: str, max_length: int) -> StatusCause:
    """``field.TooLongMaxLength``: ``Too long: may not be longer than 5``."""
    return StatusCause(path, f"Too long: may not be longer than {max_length}", "FieldValueTooLong")


def too_many(path: str, actual: int, maximum: int) -> StatusCause:
    """``field.TooMany``: ``Too many: 6: must have at most 5 items``."""
    return StatusCause(path, f"Too many: {actual}: must have at most {maximum} items", "FieldValueTooMany")


def internal(path: str, detail: str) -> StatusCause:
    """``field.InternalError``."""
    return StatusCause(path, f"Internal error: {detail}", "InternalError")
