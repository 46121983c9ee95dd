"""openapi_schemas(): Kubernetes names, GVK extensions, resolvable $refs, descriptions, merge keys."""

from typing import Any

import pytest

import machinery.api as api
from machinery.resources import RESOURCES

REF = "#/components/schemas/"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _gvks(schemas: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(g["group"], g["version"], g["kind"])
            for s in schemas.values() for g in s.get("x-kubernetes-group-version-kind", [])}


# Kinds whose schema the apiserver supplies itself (the CRD kind's lives beside its registry).
SCHEMAS_IN_APISERVER = {("apiextensions.k8s.io", "v1", "CustomResourceDefinition")}


def test_every_served_kind_has_its_gvk() -> None:
    from apiserver.apiextensions.crd_openapi import crd_definitions

    gvks = _gvks(api.openapi_schemas())
    for r in RESOURCES:
        gvk = (r.group, r.version, r.kind)
        assert gvk in (_gvks(crd_definitions()) if gvk in SCHEMAS_IN_APISERVER else gvks), gvk
    for extra in (("autoscaling", "v1", "Scale"), ("", "v1", "Binding"), ("policy", "v1", "Eviction")):
        assert extra in gvks


def test_every_ref_resolves() -> None:
    schemas = api.openapi_schemas()
    refs = _refs(schemas)
    assert refs
    for ref in refs:
        assert ref.startswith(REF) and ref[len(REF):] in schemas, ref


@pytest.mark.parametrize("name", [
    "io.k8s.api.apps.v1.Deployment", "io.k8s.api.core.v1.PodSpec", "io.k8s.api.core.v1.Container",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.k8s.api.coordination.v1.Lease",
    "io.k8s.apimachinery.pkg.api.resource.Quantity", "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
])
def test_kubernetes_definition_names_with_descriptions(name: str) -> None:
    schema = api.openapi_schemas()[name]
    assert schema["description"]
    for prop, body in schema.get("properties", {}).items():
        assert body.get("description"), f"{name}.{prop}"
        assert "anyOf" not in body and "title" not in body


def test_merge_metadata_and_required() -> None:
    schemas = api.openapi_schemas()
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert schemas["io.k8s.api.core.v1.Container"]["required"] == ["name"]


def test_result_is_a_copy() -> None:
    api.openapi_schemas()["io.k8s.api.core.v1.Pod"]["description"] = "changed"
    assert api.openapi_schemas()["io.k8s.api.core.v1.Pod"]["description"] != "changed"
