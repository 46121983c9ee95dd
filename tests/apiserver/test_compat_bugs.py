"""Small compatibility details that real clients trip over, each checked against the embedded apiserver.

Every expectation is kube-apiserver's own behaviour:

* its router ignores a trailing slash (the Python client asks for ``/version/``, kr8s for ``/api/``);
* ``limit`` <= 0 is no limit (ListOptions validation has no rule for it);
* the field selector parser skips empty terms; the label selector parser refuses them;
* ``[]byte`` fields decode like Go's ``encoding/json``, whose base64 decoder skips ``\\r``/``\\n``;
* on create, a resourceVersion that is not a non-zero uint64 is ignored (the storage's versioner);
* on update, ``""`` and ``"0"`` mean unconditional (``AllowUnconditionalUpdate``);
* an immediate delete answers a Success ``Status``, except for the resources whose registry
  returns the deleted object (pods, services, namespaces, service accounts); a pending deletion
  answers the object;
* a ``Status`` has kube-apiserver's key order and ends with a newline;
* a path outside every served API (an unknown group) is the plain-text ``404 page not found``,
  a miss under a served API a ``NotFound`` Status.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.apiserver.conftest import Api

CM = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
PODS = "/api/v1/namespaces/default/pods"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"

STATUS_KEYS = ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]


async def raw(api: Api, method: str, path: str, body: Any = None, *,
              content_type: str = "application/json") -> tuple[int, str, bytes]:
    """(HTTP status, Content-Type, body bytes) of one request."""
    data = orjson.dumps(body) if body is not None else None
    headers = {"Content-Type": content_type} if data is not None else {}
    async with await api.response(method, path, data=data, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def make_configmaps(api: Api, *names: str) -> None:
    for name in names:
        status, body = await api.request("POST", CM, {"metadata": {"name": name}, "data": {"k": name}})
        assert status == 201, body


def names(listing: dict[str, Any]) -> list[str]:
    return sorted(item["metadata"]["name"] for item in listing["items"])


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


# ---- trailing slashes ------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/version", "/api", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1", "/apis/coordination.k8s.io/v1",
    "/api/v1/namespaces", f"{CM}/probe",
])
async def test_a_trailing_slash_answers_as_without_it(api: Api, path: str) -> None:
    await make_configmaps(api, "probe")
    status, plain = await api.request("GET", path)
    assert status == 200, plain
    status, slashed = await api.request("GET", path + "/")
    assert status == 200, slashed
    if "items" in plain:
        assert slashed["kind"] == plain["kind"] and names(slashed) == names(plain)
    else:
        assert slashed == plain


async def test_aggregated_discovery_with_a_trailing_slash(api: Api) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    for path in ("/api/", "/apis/"):
        async with await api.response("GET", path, headers={"Accept": accept}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == accept
            assert (await resp.json(content_type=None))["kind"] == "APIGroupDiscoveryList"


# ---- limit -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("limit", "expected"), [
    pytest.param("-5", 3, id="negative"),
    pytest.param("-1", 3, id="minus-one"),
    pytest.param("0", 3, id="zero"),
    pytest.param("2", 2, id="positive-pages"),
])
async def test_limit_of_zero_or_less_is_no_limit(api: Api, limit: str, expected: int) -> None:
    await make_configmaps(api, "a", "b", "c")
    for source in ("", "&resourceVersion=0"):  # the store, the watch cache
        status, body = await api.request("GET", f"{CM}?limit={limit}{source}")
        assert status == 200, body
        if expected == 3:
            assert names(body) == ["a", "b", "c"] and not body["metadata"].get("continue")
    status, body = await api.request("GET", f"{CM}?limit={limit}")
    assert len(body["items"]) == expected and bool(body["metadata"].get("continue")) == (expected < 3)


# ---- selectors -------------------------------------------------------------------------------
@pytest.mark.parametrize(("selector", "expected"), [
    pytest.param("metadata.name=a,", ["a"], id="trailing-comma"),
    pytest.param(",metadata.name=a", ["a"], id="leading-comma"),
    pytest.param("metadata.name!=a,,metadata.name!=b", ["c"], id="double-comma"),
    pytest.param(",", ["a", "b", "c"], id="only-a-comma"),
])
async def test_field_selector_skips_empty_terms(api: Api, selector: str, expected: list[str]) -> None:
    await make_configmaps(api, "a", "b", "c")
    status, body = await api.request("GET", f"{CM}?fieldSelector={selector}")
    assert status == 200, body
    assert names(body) == expected


@pytest.mark.parametrize(("selector", "message"), [
    pytest.param("app=x,", "found '', expected: identifier after ','", id="trailing-comma"),
    pytest.param(",app=x", "found ',', expected: !, identifier, or 'end of string'", id="leading-comma"),
    pytest.param("app=x,,tier=y", "found ',', expected: identifier after ','", id="double-comma"),
])
async def test_label_selector_refuses_empty_terms(api: Api, selector: str, message: str) -> None:
    status, body = await api.request("GET", f"{CM}?labelSelector={selector}")
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == message


# ---- base64 ----------------------------------------------------------------------------------
SECRET_VALUE = bytes(range(256)) * 2
WRAPPED = base64.encodebytes(SECRET_VALUE).decode()  # 76-character lines, as base64(1) writes them


@pytest.mark.parametrize(("sent", "stored"), [
    pytest.param("aGVs\nbG8=", "aGVsbG8=", id="newline-inside"),
    pytest.param("aGVsbG8=\r\n", "aGVsbG8=", id="crlf-at-end"),
    pytest.param(WRAPPED, base64.b64encode(SECRET_VALUE).decode(), id="wrapped-lines"),
    pytest.param("", "", id="empty"),
])
async def test_base64_data_with_line_breaks_is_accepted(api: Api, sent: str, stored: str) -> None:
    assert "\n" in WRAPPED.rstrip("\n")
    status, body = await api.request("POST", SECRETS, {"metadata": {"name": "s"}, "data": {"k": sent}})
    assert status == 201, body
    assert body["data"]["k"] == stored
    status, body = await api.request("GET", f"{SECRETS}/s")
    assert status == 200 and body["data"]["k"] == stored
    status, body = await api.request("POST", CM, {"metadata": {"name": "bin"}, "binaryData": {"k": sent}})
    assert status == 201 and body["binaryData"]["k"] == stored


@pytest.mark.parametrize("sent", ["aGVs bG8=", "aGVsbG8", "aGVs\tbG8="])
async def test_base64_other_damage_is_still_refused(api: Api, sent: str) -> None:
    status, body = await api.request("POST", SECRETS, {"metadata": {"name": "s"}, "data": {"k": sent}})
    assert status == 400 and "illegal base64 data" in body["message"], body
    assert (await api.request("GET", f"{SECRETS}/s"))[0] == 404


# ---- resourceVersion on create and update ----------------------------------------------------
@pytest.mark.parametrize("rv", ["abc", "0", "00", "-1", "1.5", "99999999999999999999999"])
async def test_create_ignores_a_resource_version_that_is_not_a_number(api: Api, rv: str) -> None:
    status, body = await api.request("POST", CM, {"metadata": {"name": "x", "resourceVersion": rv}})
    assert status == 201, body
    assert body["metadata"]["resourceVersion"].isdigit() and body["metadata"]["resourceVersion"] != rv
    status, got = await api.request("GET", f"{CM}/x")
    assert status == 200 and got["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]


async def test_create_refuses_a_numeric_resource_version(api: Api) -> None:
    status, body = await api.request("POST", CM, {"metadata": {"name": "x", "resourceVersion": "5"}})
    assert status == 400 and "resourceVersion should not be set" in body["message"]


@pytest.mark.parametrize("rv", [None, "", "0", "00"])
async def test_put_without_a_resource_version_is_unconditional(api: Api, rv: str | None) -> None:
    await make_configmaps(api, "u")
    status, first = await api.request("PUT", f"{CM}/u", {"metadata": {"name": "u"}, "data": {"k": "1"}})
    assert status == 200, first
    meta: dict[str, Any] = {"name": "u"}
    if rv is not None:
        meta["resourceVersion"] = rv
    status, second = await api.request("PUT", f"{CM}/u", {"metadata": meta, "data": {"k": "2"}})
    assert status == 200, second
    assert second["data"] == {"k": "2"}
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_put_with_a_stale_resource_version_conflicts(api: Api) -> None:
    await make_configmaps(api, "u")
    status, live = await api.request("GET", f"{CM}/u")
    stale = live["metadata"]["resourceVersion"]
    await api.request("PUT", f"{CM}/u", {"metadata": {"name": "u"}, "data": {"k": "1"}})
    status, body = await api.request("PUT", f"{CM}/u", {"metadata": {"name": "u", "resourceVersion": stale},
                                                         "data": {"k": "2"}})
    assert status == 409 and body["reason"] == "Conflict"


async def test_merge_patch_with_resource_version_zero_is_unconditional(api: Api) -> None:
    await make_configmaps(api, "p")
    status, body = await api.request("PATCH", f"{CM}/p", {"metadata": {"resourceVersion": "0"}, "data": {"k": "z"}},
                                     content_type="application/merge-patch+json")
    assert status == 200 and body["data"] == {"k": "z"}, body


# ---- delete answers --------------------------------------------------------------------------
async def test_immediate_delete_answers_a_success_status(api: Api) -> None:
    await make_configmaps(api, "gone")
    uid = (await api.request("GET", f"{CM}/gone"))[1]["metadata"]["uid"]
    status, content_type, body = await raw(api, "DELETE", f"{CM}/gone")
    assert status == 200 and content_type.startswith("application/json")
    assert body.endswith(b"}\n")
    assert orjson.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": {"name": "gone", "kind": "configmaps", "uid": uid}}
    assert list(orjson.loads(body)) == ["kind", "apiVersion", "metadata", "status", "details"]
    assert (await api.request("GET", f"{CM}/gone"))[0] == 404


async def test_immediate_delete_in_a_group_names_the_group(api: Api) -> None:
    status, created = await api.request("POST", DEPLOY, deployment("web"))
    assert status == 201, created
    status, body = await api.request("DELETE", f"{DEPLOY}/web")
    assert status == 200
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments",
                               "uid": created["metadata"]["uid"]}
    assert list(body["details"]) == ["name", "group", "kind", "uid"]


async def test_dry_run_immediate_delete_answers_a_status_and_keeps_the_object(api: Api) -> None:
    await make_configmaps(api, "kept")
    status, body = await api.request("DELETE", f"{CM}/kept?dryRun=All")
    assert status == 200 and body["kind"] == "Status" and body["status"] == "Success"
    assert (await api.request("GET", f"{CM}/kept"))[0] == 200


@pytest.mark.parametrize(("path", "body", "kind"), [
    pytest.param(PODS, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                 "Pod", id="pod"),
    pytest.param("/api/v1/namespaces/default/services",
                 {"metadata": {"name": "p"}, "spec": {"ports": [{"port": 80}]}}, "Service", id="service"),
    pytest.param("/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "p"}}, "ServiceAccount",
                 id="serviceaccount"),
])
async def test_resources_that_return_the_deleted_object(api: Api, path: str, body: dict[str, Any],
                                                        kind: str) -> None:
    status, created = await api.request("POST", path, body)
    assert status == 201, created
    status, answer = await api.request("DELETE", f"{path}/p")
    assert status == 200 and answer["kind"] == kind and answer["metadata"]["uid"] == created["metadata"]["uid"]
    assert (await api.request("GET", f"{path}/p"))[0] == 404


async def test_pending_deletion_answers_the_object(api: Api) -> None:
    status, _ = await api.request("POST", CM, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    assert status == 201
    status, body = await api.request("DELETE", f"{CM}/held")
    assert status == 200 and body["kind"] == "ConfigMap" and body["metadata"]["deletionTimestamp"]
    status, ns = await api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "lab"}})
    assert status == 201, ns
    status, body = await api.request("DELETE", "/api/v1/namespaces/lab")
    assert status == 200 and body["kind"] == "Namespace" and body["status"]["phase"] == "Terminating"


# ---- Status encoding -------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body"), [
    pytest.param("GET", f"{CM}/absent", None, id="not-found"),
    pytest.param("POST", CM, {"metadata": {"name": "Bad_Name"}}, id="invalid-with-causes"),
    pytest.param("GET", "/api/v1/foos", None, id="route-miss"),
])
async def test_status_keys_are_in_kube_apiserver_order_with_a_newline(api: Api, method: str, path: str,
                                                                     body: Any) -> None:
    status, content_type, data = await raw(api, method, path, body)
    assert status >= 400 and content_type.startswith("application/json")
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    keys = list(orjson.loads(data))
    assert keys == [k for k in STATUS_KEYS if k in keys]
    assert keys[:6] == STATUS_KEYS[:6] and keys[-1] == "code"


# ---- unknown groups and paths ----------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/apis/nonexistent.example.com/v1"),
    ("GET", "/apis/nonexistent.example.com/v1/"),
    ("GET", "/apis/nonexistent.example.com"),
    ("GET", "/apis/nonexistent.example.com/v1/things"),
    ("GET", "/apis/nonexistent.example.com/v1/namespaces/default/things/x"),
    ("POST", "/apis/nonexistent.example.com/v1/namespaces/default/things"),
    ("GET", "/nonexistent"),
])
async def test_a_path_outside_every_api_is_the_plain_404_page(api: Api, method: str, path: str) -> None:
    status, content_type, body = await raw(api, method, path, {} if method == "POST" else None)
    assert status == 404
    assert content_type == "text/plain; charset=utf-8"
    assert body == b"404 page not found\n"


@pytest.mark.parametrize("path", ["/apis/apps/v2", "/apis/apps/v2/deployments", "/api/v2/pods", "/api/v1/foos",
                                  "/apis/apps/v1/foos"])
async def test_a_miss_under_a_served_api_is_a_not_found_status(api: Api, path: str) -> None:
    status, content_type, body = await raw(api, "GET", path)
    assert status == 404 and content_type.startswith("application/json")
    assert orjson.loads(body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound",
        "details": {"causes": [{"reason": "UnexpectedServerResponse", "message": "404: Page Not Found"}]},
        "code": 404,
    }
