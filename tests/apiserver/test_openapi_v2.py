"""/openapi/v2: the gnostic protobuf document kubectl 1.27/1.28 read (decoded here field by field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from apiserver import openapi_v2
from machinery.protobuf.wire import iter_fields
from tests.apiserver.conftest import embedded_api


def fields(data: bytes) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for number, _, value in iter_fields(data):
        out.setdefault(number, []).append(value)
    return out


def text(value: Any) -> str:
    assert isinstance(value, bytes)
    return value.decode()


def patch_operations(doc: bytes) -> dict[str, bytes]:
    """path -> its PATCH Operation message (Document.paths(8).path(2) -> NamedPathItem -> PathItem.patch(8))."""
    top = fields(doc)
    out = {}
    for named in fields(top[8][0])[2]:
        item = fields(named)
        path_item = fields(item[2][0])
        if 8 in path_item:
            out[text(item[1][0])] = path_item[8][0]
    return out


def describe(operation: bytes) -> tuple[dict[str, Any], list[str]]:
    """An Operation's extensions (name -> parsed YAML) and query parameter names."""
    op = fields(operation)
    extensions = {}
    for named in op.get(13, []):
        ext = fields(named)
        extensions[text(ext[1][0])] = yaml.safe_load(text(fields(ext[2][0])[2][0]))
    names = []
    for item in op.get(8, []):
        parameter = fields(fields(item)[1][0])  # ParametersItem.parameter
        query = fields(fields(parameter[2][0])[3][0])  # Parameter.non_body_parameter.query_parameter_sub_schema
        assert text(query[2][0]) == "query"
        names.append(text(query[4][0]))
    return extensions, names


def test_the_document_is_swagger_2_with_info() -> None:
    top = fields(openapi_v2.protobuf_document())
    assert text(top[1][0]) == "2.0"
    info = fields(top[2][0])
    assert (text(info[1][0]), text(info[2][0])) == ("Kubernetes", openapi_v2.INFO_VERSION)
    assert 9 not in top, "no definitions: kubectl then builds apply patches from its own types"


def test_every_patch_names_its_kind_and_takes_field_validation() -> None:
    operations = patch_operations(openapi_v2.protobuf_document())
    deployment = operations["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    extensions, names = describe(deployment)
    assert extensions["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert extensions["x-kubernetes-action"] == "patch"
    assert "fieldValidation" in names and "dryRun" in names
    core = describe(operations["/api/v1/namespaces/{name}"])[0]["x-kubernetes-group-version-kind"]
    assert core == {"group": "", "version": "v1", "kind": "Namespace"}
    with_patch = {path for path, item in orjson.loads(openapi_v2.json_document())["paths"].items() if "patch" in item}
    assert set(operations) == with_patch


async def test_served_as_protobuf_or_json(tmp_path: Path) -> None:
    async with embedded_api(tmp_path) as api:
        accept = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        async with await api.response("GET", "/openapi/v2", headers={"Accept": accept}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            assert await resp.read() == openapi_v2.protobuf_document()
        status, doc = await api.request("GET", "/openapi/v2")
        assert status == 200 and doc["swagger"] == "2.0"
        assert "/apis/apps/v1/namespaces/{namespace}/deployments" in doc["paths"]
