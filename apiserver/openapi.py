"""OpenAPI v3 documents: ``/openapi/v3`` (the index) and one document per group version.

Schemas come from ``machinery.api.openapi_schemas()`` (generated from the pydantic models),
so ``kubectl explain`` works, and every PATCH operation carries the
``x-kubernetes-group-version-kind`` extension and a ``fieldValidation`` parameter, which is
what makes kubectl >= 1.29 hand validation to the server (``fieldValidation=Strict``).
kubectl 1.27/1.28 read ``/openapi/v2`` instead: see :mod:`apiserver.openapi_v2`.

Resources served from a CustomResourceDefinition carry their schema (``ResourceInfo.custom``,
see :mod:`apiserver.apiextensions.served`); the documents are rebuilt when the set of served
resources changes (caches keyed on ``resources.revision()``).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, Protocol

import orjson

from apiserver.apiextensions.crd_openapi import crd_definitions
from machinery import api
from machinery.resources import ResourceInfo, all_resources, group_versions, revision


class PublishedSchema(Protocol):
    """What a custom resource's ``ResourceInfo.custom`` offers for OpenAPI."""

    def openapi_definition(self) -> tuple[str, dict[str, Any]]:
        """(definition name, schema) as the kind's OpenAPI component."""
        ...



def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _definition_name(r: ResourceInfo) -> str:
    if r.custom is not None:
        return _published(r).openapi_definition()[0]
    if r.group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{r.version}.{r.kind}"
    if r.group == "metrics.k8s.io":
        return f"io.k8s.metrics.pkg.apis.metrics.{r.version}.{r.kind}"
    if r.group == "":
        return f"io.k8s.api.core.{r.version}.{r.kind}"
    if r.group.endswith(".k8s.io"):
        return f"io.k8s.api.{r.group.removesuffix('.k8s.io')}.{r.version}.{r.kind}"
    return f"io.k8s.api.{r.group}.{r.version}.{r.kind}"


def _operation(r: ResourceInfo, verb: str, action: str, *, patch: bool = False) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{_definition_name(r)}"}
    params: list[dict[str, Any]] = [
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
    ]
    if verb in ("post", "put", "patch"):
        params.append({"name": "fieldValidation", "in": "query",
                       "schema": {"type": "string", "uniqueItems": True}})
    if patch:
        params.append({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}})
    op: dict[str, Any] = {
        "operationId": f"{action}{r.kind}",
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    }
    if verb in ("post", "put"):
        op["requestBody"] = {"content": {"*/*": {"schema": ref}}, "required": True}
    if patch:
        # Custom resources take no strategic merge patch; kubectl reads this list to choose its patch type.
        types = ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]
        if r.custom is None:
            types.append("application/strategic-merge-patch+json")
        op["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in types}, "required": True}
    return op


def _paths(group: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    base = "/" + gv_path(group, version)
    for r in all_resources():
        if r.group != group or r.version != version:
            continue
        collection = (f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}")
        item = f"{collection}/{{name}}"
        paths[collection] = {"get": _operation(r, "get", "list"), "post": _operation(r, "post", "post")}
        paths[item] = {
            "get": _operation(r, "get", "get"),
            "put": _operation(r, "put", "put"),
            "patch": _operation(r, "patch", "patch", patch=True),
            "delete": _operation(r, "delete", "delete"),
        }
        if r.subresource("status"):
            paths[f"{item}/status"] = {"get": _operation(r, "get", "get"), "put": _operation(r, "put", "put"),
                                       "patch": _operation(r, "patch", "patch", patch=True)}
    return paths


def _referenced(schemas: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    """The schemas reachable from ``roots`` through ``$ref``s."""
    out: dict[str, Any] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in out or name not in schemas:
            continue
        out[name] = schemas[name]
        text = orjson.dumps(schemas[name]).decode()
        marker = '"$ref":"#/components/schemas/'
        start = 0
        while (i := text.find(marker, start)) >= 0:
            j = text.index('"', i + len(marker))
            stack.append(text[i + len(marker):j])
            start = j
    return out


def _published(r: ResourceInfo) -> PublishedSchema:
    custom: Any = r.custom
    return custom  # type: ignore[no-any-return]


def group_version_document(group: str, version: str) -> bytes:
    return _group_version_document(group, version, revision())


@lru_cache(maxsize=256)
def _group_version_document(group: str, version: str, _revision: int) -> bytes:
    schemas = dict(api.openapi_schemas())
    members = [r for r in all_resources() if r.group == group and r.version == version]
    for r in members:
        if r.custom is not None:
            name, schema = _published(r).openapi_definition()
            schemas[name] = schema
        elif r.group == "apiextensions.k8s.io":
            schemas.update(crd_definitions())
    roots = [_definition_name(r) for r in members]
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": _paths(group, version),
        "components": {"schemas": _referenced(schemas, roots)},
    }
    return orjson.dumps(doc)


def index_document() -> bytes:
    return _index_document(revision())


@lru_cache(maxsize=8)
def _index_document(_revision: int) -> bytes:
    paths = {}
    for group, version in group_versions():
        digest = hashlib.sha256(group_version_document(group, version)).hexdigest()[:32].upper()
        path = gv_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return orjson.dumps({"paths": paths})
