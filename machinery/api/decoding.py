"""Decoding a JSON object into a kind's model, as Kubernetes' strict JSON decoder does.

Called by :func:`machinery.api.prepare`. Guarantees: type mismatches raise ``BadRequestError``
worded like Go's ``encoding/json`` (naming the Go struct, the field path and the Go type);
unknown fields follow ``fieldValidation`` (Strict raises listing every field, Warn drops them
with one warning each, Ignore drops them); the result is a fresh dict without unset or null
fields. The input is never mutated.
"""

import copy
import types
import typing
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from machinery.api.base import GoType, K8sModel
from machinery.errors import BadRequestError, DecodingError

Loc = tuple[int | str, ...]


def _strip_optional(ann: Any) -> Any:
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _unwrap(ann: Any) -> tuple[Any, str | None]:
    """The bare type under Optional/Annotated and the GoType name found on the way."""
    ann = _strip_optional(ann)
    go: str | None = None
    while get_origin(ann) is Annotated:
        args = get_args(ann)
        for meta in args[1:]:
            if isinstance(meta, GoType):
                go = meta.name
        ann = _strip_optional(args[0])
    return ann, go


def _go_type(ann: Any) -> str:
    bare, go = _unwrap(ann)
    if go:
        return go
    if bare is str:
        return "string"
    if bare is bool:
        return "bool"
    if bare is int:
        return "int"
    if bare is float:
        return "float64"
    origin = get_origin(bare)
    if origin is list:
        return "[]" + _go_type(get_args(bare)[0])
    if origin is dict:
        return "map[string]" + _go_type(get_args(bare)[1])
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        return f"v1.{bare.__name__}"
    return "interface {}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _field_by_alias(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields.get(name)
    if field is None:
        field = next((f for f in model.model_fields.values() if f.alias == name), None)
    if field is None:
        return None
    if field.metadata:
        return Annotated[(field.annotation, *field.metadata)]  # keep GoType markers
    return field.annotation


class _Walk(typing.NamedTuple):
    struct: str
    go_path: str
    pretty: str
    go_type: str


def walk(model: type[BaseModel], loc: Loc) -> _Walk:
    """Follow a pydantic error location through the model, naming things as Go would."""
    ann: Any = model
    struct = model.__name__
    go_parts: list[str] = []
    pretty = ""
    for part in loc:
        bare, _ = _unwrap(ann)
        if isinstance(part, int):
            pretty += f"[{part}]"
            ann = get_args(bare)[0] if get_origin(bare) is list else Any
        elif isinstance(bare, type) and issubclass(bare, BaseModel):
            struct = bare.__name__
            go_parts.append(part)
            pretty = f"{pretty}.{part}" if pretty else part
            ann = _field_by_alias(bare, part)
        else:
            pretty = f"{pretty}.{part}" if pretty else part
            ann = get_args(bare)[1] if get_origin(bare) is dict else Any
    return _Walk(struct, ".".join(go_parts), pretty, _go_type(ann))


def _delete(obj: Any, loc: Loc) -> None:
    for part in loc[:-1]:
        obj = obj[part]
    del obj[loc[-1]]


def _type_error_message(model: type[BaseModel], err: ErrorDetails) -> str:
    where = walk(model, tuple(err["loc"]))
    if err["type"] == "k8s_decode":
        ctx = err.get("ctx") or {}
        return f'{ctx.get("message", err["msg"])} (field "{where.pretty}")'
    return (f"json: cannot unmarshal {_json_type(err['input'])} into Go struct field "
            f"{where.struct}.{where.go_path} of type {where.go_type}")


def decode(obj: dict[str, Any], *, model: type[K8sModel], api_version: str, kind: str,
           field_validation: str) -> tuple[dict[str, Any], list[str]]:
    """Validate ``obj`` against ``model``; returns the cleaned dict and unknown-field warnings."""
    prefix = f'{kind} in version "{api_version.rsplit("/", 1)[-1]}" cannot be handled as a {kind}: '
    try:
        instance = model.model_validate(obj)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        unknown = [e for e in errors if e["type"] == "extra_forbidden"]
        others = [e for e in errors if e["type"] != "extra_forbidden"]
        if others:
            raise DecodingError(prefix + _type_error_message(model, others[0]), kind=kind) from None
        paths = [walk(model, tuple(e["loc"])).pretty for e in unknown]
        if field_validation == "Strict":
            listed = ", ".join(f'unknown field "{p}"' for p in paths)
            raise BadRequestError(prefix + "strict decoding error: " + listed, kind=kind) from None
        cleaned = copy.deepcopy(obj)
        for e in sorted(unknown, key=lambda e: len(e["loc"]), reverse=True):
            _delete(cleaned, tuple(e["loc"]))
        instance = model.model_validate(cleaned)
        warnings = [f'unknown field "{p}"' for p in paths] if field_validation == "Warn" else []
        return instance.model_dump(by_alias=True, exclude_unset=True, exclude_none=True), warnings
    return instance.model_dump(by_alias=True, exclude_unset=True, exclude_none=True), []
