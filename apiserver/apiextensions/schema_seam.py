"""The seam between serving custom resources and the structural-schema library.

Serving code (:mod:`~apiserver.apiextensions.served`, :mod:`~apiserver.apiextensions.cr_registry`,
:mod:`~apiserver.apiextensions.crd_validation`) needs four things from a CRD version's
``openAPIV3Schema``: whether it is a valid structural schema (field errors with Kubernetes'
wording), and, compiled, ``validate`` / ``prune`` / ``default`` / ``openapi``. This module
names that contract (:class:`CompiledSchema`) and answers it with the library in this package
(``apiserver.apiextensions.compile_schema``) when it is present, otherwise with a small built-in
fallback that checks types, ``required`` and ``enum``, prunes unknown fields and applies
``default``.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, Protocol

import orjson

from machinery.api.names import show
from machinery.errors import StatusCause

Obj = dict[str, Any]


class CompiledSchema(Protocol):
    """A CRD version's schema, ready to check objects."""

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]: ...

    def prune(self, obj: Obj) -> list[str]: ...

    def default(self, obj: Obj) -> None: ...

    def openapi(self) -> Obj: ...


class SchemaError(Exception):
    """A schema that cannot be served: its causes name fields under ``field_path``."""

    def __init__(self, causes: list[StatusCause]) -> None:
        super().__init__("; ".join(f"{c.field}: {c.message}" for c in causes))
        self.causes = causes


def _library() -> Any | None:
    try:
        module = importlib.import_module("apiserver.apiextensions")
    except ImportError:
        return None
    return module if hasattr(module, "compile_schema") else None


def schema_path(versions: list[Obj], index: int) -> str:
    """Where Kubernetes reports errors in version ``index``'s schema (``spec.validation...`` when
    every version shares one schema, as Kubernetes' internal form hoists it)."""
    library = _library()
    if library is not None and hasattr(library, "version_schema_path"):
        return str(library.version_schema_path(versions, index))
    return f"spec.versions[{index}].schema.openAPIV3Schema"


_CACHE_SIZE = 256
_compiled: dict[bytes, CompiledSchema | SchemaError] = {}


def compile_schema(schema: Obj, *, field_path: str) -> CompiledSchema:
    """Compile ``schema``; raises :class:`SchemaError` naming fields under ``field_path``.

    Results are remembered by the schema's JSON (validation and serving compile the same
    schemas, and a CRD's status updates must not compile them again).
    """
    key = orjson.dumps([schema, field_path], option=orjson.OPT_SORT_KEYS)
    found = _compiled.get(key)
    if found is None:
        try:
            found = _compile(schema, field_path=field_path)
        except SchemaError as exc:
            found = exc
        if len(_compiled) >= _CACHE_SIZE:
            _compiled.pop(next(iter(_compiled)))
        _compiled[key] = found
    if isinstance(found, SchemaError):
        raise SchemaError(found.causes)
    return found


def _compile(schema: Obj, *, field_path: str) -> CompiledSchema:
    library = _library()
    if library is not None:
        return _compile_with_library(library, schema, field_path)
    causes = _structural_errors(schema, field_path, root=True)
    if causes:
        raise SchemaError(causes)
    return _Fallback(schema)


def _compile_with_library(library: Any, schema: Obj, field_path: str) -> CompiledSchema:
    error_type = getattr(library, "SchemaError", None)
    try:
        compiled: CompiledSchema = library.compile_schema(schema, field_path=field_path)
    except TypeError:
        compiled = library.compile_schema(schema)
    except Exception as exc:
        if error_type is not None and isinstance(exc, error_type):
            causes = list(getattr(exc, "causes", None) or [StatusCause(field_path, str(exc))])
            raise SchemaError(causes) from exc
        raise
    return compiled


# ---- fallback ---------------------------------------------------------------------------------

_TYPES = ("array", "boolean", "integer", "number", "object", "string")


def _structural_errors(node: Any, path: str, *, root: bool = False) -> list[StatusCause]:
    if not isinstance(node, dict):
        return [StatusCause(path, f"Invalid value: {show(node)}: must be an object")]
    causes: list[StatusCause] = []
    typ = node.get("type")
    special = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    if not typ and not special:
        causes.append(StatusCause(f"{path}.type", "Required value: must not be empty for specified object fields"
                                  if node.get("properties") else "Required value: must not be empty at the root"
                                  if root else "Required value: must not be empty for specified fields",
                                  "FieldValueRequired"))
    elif typ and typ not in _TYPES:
        causes.append(StatusCause(f"{path}.type", f'Unsupported value: "{typ}": supported values: '
                                  + ", ".join(f'"{t}"' for t in _TYPES), "FieldValueNotSupported"))
    elif root and typ != "object":
        causes.append(StatusCause(f"{path}.type", f'Invalid value: "{typ}": must be object at the root'))
    for name, sub in (node.get("properties") or {}).items():
        causes.extend(_structural_errors(sub, f"{path}.properties[{name}]"))
    if isinstance(node.get("items"), dict):
        causes.extend(_structural_errors(node["items"], f"{path}.items"))
    elif typ == "array" and "items" not in node:
        causes.append(StatusCause(f"{path}.items", "Required value: must be specified", "FieldValueRequired"))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        causes.extend(_structural_errors(extra, f"{path}.additionalProperties"))
    return causes


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


class _Fallback:
    """Types, required, enum, pruning and defaults: the fallback when the library cannot be imported."""

    def __init__(self, schema: Obj) -> None:
        self.schema = schema

    def openapi(self) -> Obj:
        return copy.deepcopy(self.schema)

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        causes: list[StatusCause] = []
        self._check(self.schema, obj, "", causes, root=True)
        return causes

    def _check(self, node: Obj, value: Any, path: str, causes: list[StatusCause], *, root: bool = False) -> None:
        if value is None:
            if not node.get("nullable") and not root:
                causes.append(StatusCause(path, f'Invalid value: "null": {path} in body must be of type '
                                          f'{node.get("type") or "object"}: "null"', "FieldValueTypeInvalid"))
            return
        typ = node.get("type")
        actual = _json_type(value)
        if node.get("x-kubernetes-int-or-string"):
            if actual not in ("integer", "string"):
                causes.append(StatusCause(path, f'Invalid value: "{actual}": {path} in body must be of type '
                                          'integer,string: "' + actual + '"', "FieldValueTypeInvalid"))
            return
        if typ and not (actual == typ or (typ == "number" and actual == "integer")):
            causes.append(StatusCause(path, f'Invalid value: "{actual}": {path} in body must be of type {typ}: '
                                      f'"{actual}"', "FieldValueTypeInvalid"))
            return
        enum = node.get("enum")
        if enum is not None and value not in enum:
            allowed = ", ".join(show(e) for e in enum)
            causes.append(StatusCause(path, f"Unsupported value: {show(value)}: supported values: {allowed}",
                                      "FieldValueNotSupported"))
        if isinstance(value, dict):
            props = node.get("properties") or {}
            for name in node.get("required") or []:
                if name not in value:
                    causes.append(StatusCause(f"{path}.{name}" if path else name, "Required value",
                                              "FieldValueRequired"))
            for name, sub in value.items():
                child = props.get(name)
                if child is None and isinstance(node.get("additionalProperties"), dict):
                    child = node["additionalProperties"]
                if child is not None and not (root and name in ("apiVersion", "kind", "metadata")):
                    self._check(child, sub, f"{path}.{name}" if path else name, causes)
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for i, item in enumerate(value):
                self._check(node["items"], item, f"{path}[{i}]", causes)

    def prune(self, obj: Obj) -> list[str]:
        pruned: list[str] = []
        self._prune(self.schema, obj, "", pruned, root=True)
        return pruned

    def _prune(self, node: Obj, value: Any, path: str, pruned: list[str], *, root: bool = False) -> None:
        if isinstance(value, dict):
            props = node.get("properties") or {}
            extra = node.get("additionalProperties")
            preserve = node.get("x-kubernetes-preserve-unknown-fields")
            for name in list(value):
                if root and name in ("apiVersion", "kind", "metadata"):
                    continue
                child = props.get(name)
                if child is None and isinstance(extra, dict):
                    child = extra
                if child is None:
                    if not preserve and extra is not True:
                        pruned.append(f"{path}.{name}" if path else name)
                        del value[name]
                    continue
                self._prune(child, value[name], f"{path}.{name}" if path else name, pruned)
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for i, item in enumerate(value):
                self._prune(node["items"], item, f"{path}[{i}]", pruned)

    def default(self, obj: Obj) -> None:
        self._default(self.schema, obj)

    def _default(self, node: Obj, value: Any) -> None:
        if isinstance(value, dict):
            for name, sub in (node.get("properties") or {}).items():
                if name not in value and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
                if name in value:
                    self._default(sub, value[name])
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for item in value:
                self._default(node["items"], item)
