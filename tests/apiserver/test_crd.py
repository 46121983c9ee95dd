"""CustomResourceDefinitions served end to end by an embedded apiserver (memory store).

Covers the CRD kind (validation with Kubernetes' messages, NamesAccepted/Established, name
conflicts, storedVersions), dynamic serving (routing, discovery, OpenAPI) and custom objects
(schema validation, pruning under fieldValidation, defaults, generation, status and scale
subresources, several versions, selectors, paging, watch, patch types, Tables) and the
clean-up when a CRD is deleted.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.apiserver.conftest import Api, embedded_api

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"

WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer"},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "replicas": {"type": "integer"},
                "selector": {"type": "string"},
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer"},
                "conditions": {"type": "array", "items": {"type": "object", "properties": {
                    "type": {"type": "string"}, "status": {"type": "string"}}}},
            },
        },
    },
}


def widget_crd(**overrides: Any) -> dict[str, Any]:
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"],
                      "categories": ["all", "gadgets"]},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": WIDGET_SCHEMA},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                          "statusReplicasPath": ".status.replicas",
                                                          "labelSelectorPath": ".spec.selector"}},
                 "additionalPrinterColumns": [
                     {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                     {"name": "Ready", "type": "string",
                      "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                     {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]},
                {"name": "v1beta1", "served": True, "storage": False,
                 "schema": {"openAPIV3Schema": WIDGET_SCHEMA}},
            ],
        },
    }
    crd.update(overrides)
    return copy.deepcopy(crd)


def widget(name: str, size: Any = 3, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": size, **spec}}


async def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def established(api: Api, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        code, body = await api.request("GET", f"{CRDS}/{name}")
        if code != 200:
            return None
        conditions = {c["type"]: c for c in body.get("status", {}).get("conditions", [])}
        ok = conditions.get("Established", {}).get("status") == "True"
        return body if ok else None
    result: dict[str, Any] = await wait_for(check)
    return result


@pytest.fixture
async def crd_api(tmp_path: Path) -> AsyncIterator[Api]:
    async with embedded_api(tmp_path) as api:
        code, body = await api.request("POST", CRDS, widget_crd())
        assert code == 201, body
        await established(api, "widgets.example.com")
        yield api


# ---- the CRD kind -------------------------------------------------------------------------------

async def test_crd_established_with_names_and_stored_versions(crd_api: Api) -> None:
    crd = await established(crd_api, "widgets.example.com")
    status = crd["status"]
    assert status["acceptedNames"]["plural"] == "widgets"
    assert status["acceptedNames"]["listKind"] == "WidgetList"
    assert status["acceptedNames"]["shortNames"] == ["wd"]
    assert status["storedVersions"] == ["v1"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["NamesAccepted"]["reason"] == "NoConflicts"
    assert conditions["Established"]["reason"] == "InitialNamesAccepted"
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert crd["metadata"]["generation"] == 1


def _bad(mutate: Any) -> dict[str, Any]:
    crd = widget_crd()
    mutate(crd)
    return crd


@pytest.mark.parametrize(("crd", "field", "message"), [
    pytest.param(_bad(lambda c: c["metadata"].update(name="gadgets.example.com")), "metadata.name",
                 'must be spec.names.plural+"."+spec.group', id="name-not-plural-group"),
    pytest.param(_bad(lambda c: c["spec"]["versions"][1].update(storage=True)), "spec.versions",
                 "must have exactly one version marked as storage version", id="two-storage-versions"),
    pytest.param(_bad(lambda c: c["spec"]["versions"][0].pop("schema")),
                 "spec.versions[0].schema.openAPIV3Schema", "Required value: schemas are required", id="no-schema"),
    pytest.param(_bad(lambda c: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                      .pop("type")),
                 "spec.validation.openAPIV3Schema.properties[spec].type", "Required value",
                 id="non-structural"),
    pytest.param(_bad(lambda c: c["spec"].update(conversion={"strategy": "Webhook"})),
                 "spec.conversion.strategy", 'Unsupported value: "Webhook"', id="conversion-webhook"),
    pytest.param(_bad(lambda c: c["spec"].update(scope="Galaxy")), "spec.scope", 'Unsupported value: "Galaxy"',
                 id="bad-scope"),
    pytest.param(_bad(lambda c: c["spec"]["names"].update(shortNames=["Not_OK"])), "spec.names.shortNames[0]",
                 "a DNS-1035 label must consist of", id="bad-short-name"),
])
async def test_malformed_crds_are_refused(api: Api, crd: dict[str, Any], field: str, message: str) -> None:
    code, body = await api.request("POST", CRDS, crd)
    assert code == 422, body
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "CustomResourceDefinition"
    causes = [c for c in body["details"]["causes"] if c.get("field") == field]
    assert causes and any(message in c["message"] for c in causes), body


async def test_name_conflict_with_another_crd(crd_api: Api) -> None:
    other = widget_crd()
    other["metadata"]["name"] = "gizmos.example.com"
    other["spec"]["names"] = {"plural": "gizmos", "kind": "Gizmo", "listKind": "WidgetList"}
    code, body = await crd_api.request("POST", CRDS, other)
    assert code == 201, body

    async def conflict() -> dict[str, Any] | None:
        _, crd = await crd_api.request("GET", f"{CRDS}/gizmos.example.com")
        conds = {c["type"]: c for c in crd.get("status", {}).get("conditions", [])}
        return conds if conds.get("NamesAccepted", {}).get("status") == "False" else None
    conds = await wait_for(conflict)
    assert conds["NamesAccepted"]["reason"] == "ListKindConflict"
    assert conds["NamesAccepted"]["message"] == '"WidgetList" is already in use'
    assert conds["Established"]["status"] == "False"


# ---- serving ------------------------------------------------------------------------------------

async def test_discovery_and_openapi_follow_the_crd(crd_api: Api) -> None:
    code, group = await crd_api.request("GET", "/apis/example.com")
    assert code == 200
    assert group["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    code, listing = await crd_api.request("GET", "/apis/example.com/v1")
    entry = next(r for r in listing["resources"] if r["name"] == "widgets")
    assert entry["shortNames"] == ["wd"] and "all" in entry["categories"] and entry["namespaced"]
    assert {r["name"] for r in listing["resources"]} == {"widgets", "widgets/status", "widgets/scale"}
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    code, agg = await crd_api.request("GET", "/apis", headers={"Accept": accept})
    item = next(i for i in agg["items"] if i["metadata"]["name"] == "example.com")
    assert item["versions"][0]["resources"][0]["resource"] == "widgets"
    code, index = await crd_api.request("GET", "/openapi/v3")
    assert "apis/example.com/v1" in index["paths"]
    code, doc = await crd_api.request("GET", "/openapi/v3/apis/example.com/v1")
    schema = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert schema["x-kubernetes-group-version-kind"] == [{"group": "example.com", "version": "v1",
                                                          "kind": "Widget"}]
    assert "size" in schema["properties"]["spec"]["properties"]


async def test_custom_object_lifecycle(crd_api: Api) -> None:
    code, created = await crd_api.request("POST", WIDGETS, widget("w1"))
    assert code == 201, created
    assert created["spec"]["color"] == "red"  # defaulted
    assert created["metadata"]["generation"] == 1
    code, got = await crd_api.request("GET", f"{WIDGETS}/w1")
    assert code == 200 and got["spec"] == {"size": 3, "color": "red"}
    code, listed = await crd_api.request("GET", WIDGETS)
    assert listed["kind"] == "WidgetList" and [i["metadata"]["name"] for i in listed["items"]] == ["w1"]
    code, patched = await crd_api.request("PATCH", f"{WIDGETS}/w1", {"spec": {"size": 5}},
                                          content_type="application/merge-patch+json")
    assert code == 200 and patched["spec"]["size"] == 5 and patched["metadata"]["generation"] == 2
    code, patched = await crd_api.request("PATCH", f"{WIDGETS}/w1",
                                          [{"op": "replace", "path": "/spec/color", "value": "blue"}],
                                          content_type="application/json-patch+json")
    assert code == 200 and patched["spec"]["color"] == "blue"
    code, status = await crd_api.request("PATCH", f"{WIDGETS}/w1", {"spec": {"size": 6}},
                                         content_type="application/strategic-merge-patch+json")
    assert code == 415 and status["reason"] == "UnsupportedMediaType"
    code, _ = await crd_api.request("DELETE", f"{WIDGETS}/w1")
    assert code == 200
    code, _ = await crd_api.request("GET", f"{WIDGETS}/w1")
    assert code == 404


async def test_invalid_custom_object_is_refused_naming_the_field(crd_api: Api) -> None:
    code, body = await crd_api.request("POST", WIDGETS, widget("bad", size="big"))
    assert code == 422, body
    assert body["reason"] == "Invalid"
    assert body["details"]["group"] == "example.com" and body["details"]["kind"] == "Widget"
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.size"]
    code, body = await crd_api.request("POST", WIDGETS, widget("bad2", color="green"))
    assert code == 422 and body["details"]["causes"][0]["field"] == "spec.color"
    code, body = await crd_api.request("POST", WIDGETS, {"apiVersion": "example.com/v1", "kind": "Widget",
                                                         "metadata": {"name": "bad3"}, "spec": {}})
    assert code == 422 and body["details"]["causes"][0]["field"] == "spec.size"


@pytest.mark.parametrize(("validation", "code", "warned"), [
    pytest.param("Strict", 400, False, id="strict"),
    pytest.param("Warn", 201, True, id="warn"),
    pytest.param("Ignore", 201, False, id="ignore"),
])
async def test_unknown_fields_follow_field_validation(crd_api: Api, validation: str, code: int,
                                                      warned: bool) -> None:
    obj = widget(f"u-{validation.lower()}", extra="x")
    resp = await crd_api.response("POST", f"{WIDGETS}?fieldValidation={validation}", data=orjson.dumps(obj),
                                  headers={"Content-Type": "application/json"})
    body = orjson.loads(await resp.read())
    assert resp.status == code, body
    if code == 400:
        assert body["message"] == 'strict decoding error: unknown field "spec.extra"'
    else:
        assert "extra" not in body["spec"]  # pruned
        assert ('spec.extra' in resp.headers.get("Warning", "")) is warned


async def test_status_subresource_semantics(crd_api: Api) -> None:
    obj = widget("s1")
    obj["status"] = {"replicas": 9}
    code, created = await crd_api.request("POST", WIDGETS, obj)
    assert code == 201 and "status" not in created  # status is dropped on create
    code, updated = await crd_api.request("PATCH", f"{WIDGETS}/s1/status", {"status": {"replicas": 2}},
                                          content_type="application/merge-patch+json")
    assert code == 200 and updated["status"] == {"replicas": 2}
    assert updated["metadata"]["generation"] == 1  # status is not a spec change
    code, updated = await crd_api.request("PATCH", f"{WIDGETS}/s1", {"status": {"replicas": 7}},
                                          content_type="application/merge-patch+json")
    assert code == 200 and updated["status"] == {"replicas": 2}  # main resource ignores status
    code, updated = await crd_api.request("PATCH", f"{WIDGETS}/s1/status", {"spec": {"size": 99}},
                                          content_type="application/merge-patch+json")
    assert code == 200 and updated["spec"]["size"] == 3  # /status ignores spec


async def test_scale_subresource(crd_api: Api) -> None:
    code, _ = await crd_api.request("POST", WIDGETS, widget("sc", replicas=1, selector="app=sc"))
    assert code == 201
    code, scale = await crd_api.request("GET", f"{WIDGETS}/sc/scale")
    assert code == 200
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 1} and scale["status"] == {"replicas": 0, "selector": "app=sc"}
    code, scale = await crd_api.request("PATCH", f"{WIDGETS}/sc/scale", {"spec": {"replicas": 4}},
                                        content_type="application/merge-patch+json")
    assert code == 200 and scale["spec"]["replicas"] == 4
    code, got = await crd_api.request("GET", f"{WIDGETS}/sc")
    assert got["spec"]["replicas"] == 4 and got["metadata"]["generation"] == 2


async def test_second_version_serves_the_same_objects(crd_api: Api) -> None:
    code, _ = await crd_api.request("POST", WIDGETS, widget("mv"))
    assert code == 201
    code, got = await crd_api.request("GET", "/apis/example.com/v1beta1/namespaces/default/widgets/mv")
    assert code == 200 and got["apiVersion"] == "example.com/v1beta1"
    code, listed = await crd_api.request("GET", "/apis/example.com/v1beta1/namespaces/default/widgets")
    assert listed["apiVersion"] == "example.com/v1beta1"
    assert listed["items"][0]["apiVersion"] == "example.com/v1beta1"
    beta = widget("mv2")
    beta["apiVersion"] = "example.com/v1beta1"
    code, created = await crd_api.request("POST", "/apis/example.com/v1beta1/namespaces/default/widgets", beta)
    assert code == 201 and created["apiVersion"] == "example.com/v1beta1"
    code, got = await crd_api.request("GET", f"{WIDGETS}/mv2")
    assert got["apiVersion"] == "example.com/v1"


def test_storage_key_layout() -> None:
    from apiserver.apiextensions.served import served_resources

    # Custom resources live under /registry/<group>/<plural>/[<namespace>/]<name>, as in Kubernetes.
    crd = widget_crd()
    crd["metadata"]["uid"] = "u"
    info = served_resources(crd)[0]
    assert info.storage_key("default", "w") == "/registry/example.com/widgets/default/w"
    assert info.storage_prefix() == "/registry/example.com/widgets/"


async def test_selectors_limit_and_continue(crd_api: Api) -> None:
    for i in range(5):
        obj = widget(f"p{i}")
        obj["metadata"]["labels"] = {"parity": "even" if i % 2 == 0 else "odd"}
        code, _ = await crd_api.request("POST", WIDGETS, obj)
        assert code == 201
    code, listed = await crd_api.request("GET", f"{WIDGETS}?labelSelector=parity%3Deven")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["p0", "p2", "p4"]
    code, listed = await crd_api.request("GET", f"{WIDGETS}?fieldSelector=metadata.name%3Dp3")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["p3"]
    code, listed = await crd_api.request("GET", "/apis/example.com/v1/widgets?fieldSelector=metadata.namespace%3D"
                                                "default&limit=2")
    assert len(listed["items"]) == 2 and listed["metadata"]["continue"]
    token = listed["metadata"]["continue"]
    code, rest = await crd_api.request("GET", f"/apis/example.com/v1/widgets?limit=10&continue={token}")
    assert [i["metadata"]["name"] for i in rest["items"]] == ["p2", "p3", "p4"]


async def test_table_uses_printer_columns(crd_api: Api) -> None:
    obj = widget("t1", size=7)
    code, _ = await crd_api.request("POST", WIDGETS, obj)
    await crd_api.request("PATCH", f"{WIDGETS}/t1/status",
                          {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                          content_type="application/merge-patch+json")
    code, table = await crd_api.request("GET", WIDGETS, headers={"Accept": TABLE})
    assert code == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Ready", "Age"]
    assert table["columnDefinitions"][3]["type"] == "date"
    assert table["rows"][0]["cells"][:3] == ["t1", 7, "True"]


async def test_watch_sees_custom_objects(crd_api: Api) -> None:
    resp = await crd_api.response("GET", f"{WIDGETS}?watch=true&timeoutSeconds=30")
    assert resp.status == 200
    await crd_api.request("POST", WIDGETS, widget("watched"))
    line = await asyncio.wait_for(resp.content.readline(), 20)
    event = orjson.loads(line)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "watched"
    resp.close()


async def test_deleting_the_crd_removes_objects_and_routes(crd_api: Api) -> None:
    code, _ = await crd_api.request("POST", WIDGETS, widget("doomed"))
    assert code == 201
    code, body = await crd_api.request("DELETE", f"{CRDS}/widgets.example.com")
    assert code == 200, body

    async def gone() -> bool:
        code, _ = await crd_api.request("GET", f"{CRDS}/widgets.example.com")
        return code == 404
    await wait_for(gone)
    code, body = await crd_api.request("GET", "/apis/example.com/v1")
    assert code == 404
    code, body = await crd_api.request("GET", f"{WIDGETS}/doomed")
    assert code == 404
    # Created again, the CRD starts empty: the old objects went with it.
    code, body = await crd_api.request("POST", CRDS, widget_crd())
    assert code == 201, body
    await established(crd_api, "widgets.example.com")
    code, listed = await crd_api.request("GET", WIDGETS)
    assert listed["items"] == []


async def test_cluster_scoped_crd(api: Api) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "dials.example.com"
    crd["spec"]["scope"] = "Cluster"
    crd["spec"]["names"] = {"plural": "dials", "kind": "Dial"}
    crd["spec"]["versions"] = [copy.deepcopy(crd["spec"]["versions"][0])]
    code, body = await api.request("POST", CRDS, crd)
    assert code == 201, body
    await established(api, "dials.example.com")
    code, created = await api.request("POST", "/apis/example.com/v1/dials",
                                      {"apiVersion": "example.com/v1", "kind": "Dial", "metadata": {"name": "d1"},
                                       "spec": {"size": 1}})
    assert code == 201, created
    assert "namespace" not in created["metadata"]
    code, _ = await api.request("GET", "/apis/example.com/v1/namespaces/default/dials")
    assert code == 404


async def test_restarted_apiserver_serves_crds_from_storage(tmp_path: Path) -> None:
    async with embedded_api(tmp_path, store="sqlite") as api:
        code, body = await api.request("POST", CRDS, widget_crd())
        assert code == 201, body
        await established(api, "widgets.example.com")
        code, _ = await api.request("POST", WIDGETS, widget("kept"))
        assert code == 201
    async with embedded_api(tmp_path, store="sqlite") as api:
        code, got = await api.request("GET", f"{WIDGETS}/kept")
        assert code == 200 and got["spec"]["size"] == 3
        code, listing = await api.request("GET", "/apis/example.com/v1")
        assert code == 200 and any(r["name"] == "widgets" for r in listing["resources"])
