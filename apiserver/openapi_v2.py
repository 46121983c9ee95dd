"""``/openapi/v2``: the Swagger 2.0 document kubectl 1.27/1.28 fetch as protobuf before ``apply -f``.

Those kubectl versions read only this document (gnostic's ``openapi.v2.Document`` message,
asked for as ``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``), for one question:
does the PATCH operation of the object's group/version/kind take a ``fieldValidation`` query
parameter? If it does, they leave validation to the server (``fieldValidation=Strict``), exactly
as kubectl >= 1.29 does after reading ``/openapi/v3``. A 404 here made them fail with
"failed to download openapi".

So the document carries the paths and operations (with their ``x-kubernetes-group-version-kind``
and ``x-kubernetes-action`` extensions and query parameters), and no definitions: without a
model for a kind, kubectl computes apply patches from its built-in types (the same patches it
sends to any server) and ``kubectl.1.27 explain`` says it cannot find the resource — use a
newer kubectl for ``explain``. Clients asking for JSON get the same document as JSON.

Only the few gnostic fields used are encoded (field numbers from gnostic's OpenAPIv2.proto).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from machinery.protobuf.wire import len_field, varint_field
from machinery.resources import ResourceInfo, all_resources, revision

PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
"""What Kubernetes answers; kubectl asks with ``…spec.v2@v1.0+protobuf``, which Go's MIME parser rejects."""
INFO_VERSION = "v1.32.0"

_QUERY_PARAMETERS = {
    "get": ("resourceVersion", "labelSelector", "fieldSelector", "limit", "continue", "watch", "timeoutSeconds"),
    "post": ("dryRun", "fieldManager", "fieldValidation"),
    "put": ("dryRun", "fieldManager", "fieldValidation"),
    "patch": ("dryRun", "fieldManager", "fieldValidation", "force"),
    "delete": ("dryRun", "gracePeriodSeconds", "propagationPolicy"),
}


# ---- the document as plain data (Swagger 2.0 JSON) ---------------------------------------------------

def _operation(r: ResourceInfo, verb: str, *, listing: bool = False) -> dict[str, Any]:
    action = "list" if listing else verb
    names = _QUERY_PARAMETERS[verb]
    return {
        "operationId": f"{action}{r.kind}",
        "parameters": [{"name": n, "in": "query", "type": "boolean" if n in ("watch", "force") else "string",
                        "uniqueItems": True} for n in names],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    }


def _base(r: ResourceInfo) -> str:
    return f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"


def document() -> dict[str, Any]:
    """The Swagger 2.0 document: every served resource's collection, item and status paths
    (custom resources included; rebuilt when the served set changes)."""
    return _document(revision())


@lru_cache(maxsize=4)
def _document(_revision: int) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in all_resources():
        collection = (f"{_base(r)}/namespaces/{{namespace}}/{r.plural}" if r.namespaced
                      else f"{_base(r)}/{r.plural}")
        item = f"{collection}/{{name}}"
        paths[collection] = {"get": _operation(r, "get", listing=True), "post": _operation(r, "post")}
        paths[item] = {verb: _operation(r, verb) for verb in ("get", "put", "delete", "patch")}
        if r.subresource("status"):
            paths[f"{item}/status"] = {verb: _operation(r, verb) for verb in ("get", "put", "patch")}
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": INFO_VERSION}, "paths": paths}


def json_document() -> bytes:
    return _json_document(revision())


@lru_cache(maxsize=4)
def _json_document(_revision: int) -> bytes:
    return orjson.dumps(_document(_revision))


# ---- protobuf encoding (gnostic openapi.v2) ----------------------------------------------------------

def _str(number: int, text: str) -> bytes:
    return len_field(number, text) if text else b""


def _true(number: int) -> bytes:
    return varint_field(number, 1)


def _yaml(value: dict[str, str] | str) -> str:
    """The YAML text of an extension value (gnostic keeps extensions as YAML in ``Any.yaml``)."""
    if isinstance(value, str):
        return f"{value}\n"
    return "".join(f"{k}: {orjson.dumps(v).decode()}\n" for k, v in sorted(value.items()))


def _named_any(name: str, value: dict[str, str] | str) -> bytes:
    any_message = _str(2, _yaml(value))  # Any.yaml
    return _str(1, name) + len_field(2, any_message)  # NamedAny{name, value}


def _parameter(p: dict[str, Any]) -> bytes:
    query = (_true(1) if p.get("required") else b"") + _str(2, "query") + _str(4, p["name"]) + _str(6, p["type"])
    if p.get("uniqueItems"):
        query += _true(20)
    non_body = len_field(3, query)  # NonBodyParameter.query_parameter_sub_schema
    parameter = len_field(2, non_body)  # Parameter.non_body_parameter
    return len_field(1, parameter)  # ParametersItem.parameter


def _operation_message(op: dict[str, Any]) -> bytes:
    out = _str(5, op["operationId"])
    for p in op["parameters"]:
        out += len_field(8, _parameter(p))
    responses = b""
    for code, response in op["responses"].items():
        value = len_field(1, _str(1, response["description"]))  # ResponseValue.response{description}
        responses += len_field(1, _str(1, code) + len_field(2, value))  # Responses.response_code
    out += len_field(9, responses)
    for name in ("x-kubernetes-action", "x-kubernetes-group-version-kind"):
        out += len_field(13, _named_any(name, op[name]))
    return out


_PATH_ITEM_FIELDS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}  # in field order


def protobuf_document() -> bytes:
    """:func:`document` as gnostic's ``openapi.v2.Document`` message."""
    return _protobuf_document(revision())


@lru_cache(maxsize=4)
def _protobuf_document(_revision: int) -> bytes:
    doc = _document(_revision)
    info = _str(1, doc["info"]["title"]) + _str(2, doc["info"]["version"])
    paths = b""
    for path, item in doc["paths"].items():
        body = b"".join(len_field(number, _operation_message(item[verb]))
                        for verb, number in _PATH_ITEM_FIELDS.items() if verb in item)
        paths += len_field(2, _str(1, path) + len_field(2, body))  # Paths.path: NamedPathItem{name, value}
    return _str(1, doc["swagger"]) + len_field(2, info) + len_field(8, paths)
