"""Kubernetes API semantics of the embedded apiserver: metadata, concurrency, subresources,
namespaces, deletion, lists and watches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from tests.apiserver.conftest import Api

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"


def deployment(name: str = "web", replicas: int = 2, image: str = "nginx:1.22") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}},
    }


def pod(name: str, labels: dict[str, str] | None = None, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox:1.35"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


async def test_create_sets_server_metadata_and_infers_kind(api: Api) -> None:
    status, obj = await api.request("POST", CM, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert status == 201
    assert obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
    meta = obj["metadata"]
    assert meta["namespace"] == "default" and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    status, again = await api.request("GET", f"{CM}/a")
    assert status == 200 and again == obj


async def test_create_twice_is_already_exists(api: Api) -> None:
    await api.request("POST", CM, {"metadata": {"name": "a"}})
    status, err = await api.request("POST", CM, {"metadata": {"name": "a"}})
    assert status == 409 and err["reason"] == "AlreadyExists"
    assert err["message"] == 'configmaps "a" already exists'


async def test_generate_name(api: Api) -> None:
    status, obj = await api.request("POST", CM, {"metadata": {"generateName": "gen-"}})
    assert status == 201 and obj["metadata"]["name"].startswith("gen-") and len(obj["metadata"]["name"]) == 9


async def test_generated_names_fit_a_label_and_name_the_namespace_label(api: Api) -> None:
    status, obj = await api.request("POST", "/api/v1/namespaces", {"metadata": {"generateName": "n" * 70}})
    assert status == 201, obj
    name = obj["metadata"]["name"]
    assert len(name) == 63 and name.startswith("n" * 58)
    assert obj["metadata"]["labels"]["kubernetes.io/metadata.name"] == name


async def test_an_invalid_generated_object_is_named_by_its_generated_name(api: Api) -> None:
    status, err = await api.request("POST", CM, {"metadata": {"generateName": "bad-", "labels": {"-x": "y"}}})
    assert status == 422
    name = err["details"]["name"]
    assert name.startswith("bad-") and len(name) == 9
    assert err["message"].startswith(f'ConfigMap "{name}" is invalid')


async def test_update_with_stale_resource_version_conflicts(api: Api) -> None:
    _, obj = await api.request("POST", CM, {"metadata": {"name": "a"}, "data": {"k": "1"}})
    stale = dict(obj, data={"k": "2"})
    status, first = await api.request("PUT", f"{CM}/a", stale)
    assert status == 200 and first["data"] == {"k": "2"}
    assert int(first["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    status, err = await api.request("PUT", f"{CM}/a", dict(obj, data={"k": "3"}))
    assert status == 409 and err["reason"] == "Conflict"
    assert "the object has been modified" in err["message"]


async def test_generation_moves_with_spec_only(api: Api) -> None:
    _, d = await api.request("POST", DEPLOY, deployment())
    assert d["metadata"]["generation"] == 1
    _, d = await api.request("PATCH", f"{DEPLOY}/web", {"metadata": {"labels": {"x": "y"}}},
                             content_type="application/merge-patch+json")
    assert d["metadata"]["generation"] == 1
    _, d = await api.request("PATCH", f"{DEPLOY}/web", {"spec": {"replicas": 5}},
                             content_type="application/strategic-merge-patch+json")
    assert d["metadata"]["generation"] == 2 and d["spec"]["replicas"] == 5


async def test_status_only_through_status_subresource(api: Api) -> None:
    _, d = await api.request("POST", DEPLOY, deployment())
    d["status"] = {"replicas": 7}
    _, updated = await api.request("PUT", f"{DEPLOY}/web", d)
    assert updated.get("status", {}).get("replicas") is None
    status, updated = await api.request("PUT", f"{DEPLOY}/web/status", dict(updated, status={"replicas": 7},
                                                                             spec={"replicas": 99}))
    assert status == 200 and updated["status"]["replicas"] == 7 and updated["spec"]["replicas"] == 2


async def test_defaults_applied(api: Api) -> None:
    _, d = await api.request("POST", DEPLOY, deployment())
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    assert d["spec"]["revisionHistoryLimit"] == 10
    assert d["spec"]["template"]["spec"]["restartPolicy"] == "Always"


async def test_scale_subresource(api: Api) -> None:
    await api.request("POST", DEPLOY, deployment(replicas=2))
    status, scale = await api.request("GET", f"{DEPLOY}/web/scale")
    assert status == 200 and scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=web"
    status, scale = await api.request("PATCH", f"{DEPLOY}/web/scale", {"spec": {"replicas": 4}},
                                      content_type="application/merge-patch+json")
    assert status == 200 and scale["spec"]["replicas"] == 4
    scale["spec"]["replicas"] = 3
    status, scale = await api.request("PUT", f"{DEPLOY}/web/scale", scale, content_type="")
    assert status == 200 and scale["spec"]["replicas"] == 3
    _, d = await api.request("GET", f"{DEPLOY}/web")
    assert d["spec"]["replicas"] == 3


async def test_binding_sets_node_once(api: Api) -> None:
    await api.request("POST", PODS, pod("p"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "node-1"}}
    status, _ = await api.request("POST", f"{PODS}/p/binding", binding)
    assert status == 201
    _, p = await api.request("GET", f"{PODS}/p")
    assert p["spec"]["nodeName"] == "node-1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])
    status, err = await api.request("POST", f"{PODS}/p/binding", binding)
    assert status == 409 and 'already assigned to node "node-1"' in err["message"]


async def test_pod_on_node_terminates_gracefully_then_eviction_of_unbound_pod(api: Api) -> None:
    await api.request("POST", PODS, pod("bound", node="node-1"))
    status, p = await api.request("DELETE", f"{PODS}/bound")
    assert status == 200 and p["metadata"]["deletionTimestamp"] and p["metadata"]["deletionGracePeriodSeconds"] == 30
    status, _ = await api.request("DELETE", f"{PODS}/bound", {"gracePeriodSeconds": 0})
    assert status == 200
    assert (await api.request("GET", f"{PODS}/bound"))[0] == 404
    await api.request("POST", PODS, pod("free"))
    status, result = await api.request("POST", f"{PODS}/free/eviction",
                                       {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "free"}})
    assert status == 201 and result["status"] == "Success"
    assert (await api.request("GET", f"{PODS}/free"))[0] == 404


async def test_finalizers_hold_deletion_until_removed(api: Api) -> None:
    await api.request("POST", CM, {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    status, obj = await api.request("DELETE", f"{CM}/f")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    status, obj = await api.request("GET", f"{CM}/f")
    assert status == 200
    status, _ = await api.request("PATCH", f"{CM}/f", {"metadata": {"finalizers": None}},
                                  content_type="application/merge-patch+json")
    assert status == 200
    assert (await api.request("GET", f"{CM}/f"))[0] == 404


async def test_namespace_lifecycle(api: Api) -> None:
    status, ns = await api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "lab"}})
    assert status == 201 and ns["status"]["phase"] == "Active" and ns["spec"]["finalizers"] == ["kubernetes"]
    status, err = await api.request("POST", "/api/v1/namespaces/nosuch/configmaps", {"metadata": {"name": "x"}})
    assert status == 404 and err["message"] == 'namespaces "nosuch" not found'
    status, ns = await api.request("DELETE", "/api/v1/namespaces/lab")
    assert status == 200 and ns["status"]["phase"] == "Terminating"
    status, err = await api.request("POST", "/api/v1/namespaces/lab/configmaps", {"metadata": {"name": "x"}})
    assert status == 403 and "being terminated" in err["message"]
    status, _ = await api.request("PUT", "/api/v1/namespaces/lab/finalize",
                                  {"metadata": {"name": "lab"}, "spec": {"finalizers": []}})
    assert status == 200
    assert (await api.request("GET", "/api/v1/namespaces/lab"))[0] == 404


async def test_system_namespaces_exist(api: Api) -> None:
    _, lst = await api.request("GET", "/api/v1/namespaces")
    names = {i["metadata"]["name"] for i in lst["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


async def test_dry_run_stores_nothing(api: Api) -> None:
    status, obj = await api.request("POST", CM + "?dryRun=All", {"metadata": {"name": "dry"}})
    assert status == 201 and obj["metadata"]["name"] == "dry"
    assert (await api.request("GET", f"{CM}/dry"))[0] == 404


@pytest.mark.parametrize(("selector", "expected"), [
    pytest.param("app=web", {"a", "b"}, id="equals"),
    pytest.param("app=web,tier notin (db)", {"a"}, id="notin"),
    pytest.param("!tier", {"c"}, id="not-exists"),
    pytest.param("tier in (db,cache)", {"b"}, id="in"),
])
async def test_list_label_selectors(api: Api, selector: str, expected: set[str]) -> None:
    await api.request("POST", PODS, pod("a", {"app": "web", "tier": "front"}))
    await api.request("POST", PODS, pod("b", {"app": "web", "tier": "db"}))
    await api.request("POST", PODS, pod("c", {"app": "other"}))
    _, lst = await api.request("GET", f"{PODS}?labelSelector={selector}")
    assert {i["metadata"]["name"] for i in lst["items"]} == expected


async def test_field_selectors_and_unsupported_field(api: Api) -> None:
    await api.request("POST", PODS, pod("on1", node="n1"))
    await api.request("POST", PODS, pod("on2", node="n2"))
    _, lst = await api.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName=n1")
    assert [i["metadata"]["name"] for i in lst["items"]] == ["on1"]
    status, err = await api.request("GET", f"{PODS}?fieldSelector=spec.foo=x")
    assert status == 400 and err["message"] == "field label not supported: spec.foo"


async def test_limit_and_continue_page_through_everything(api: Api) -> None:
    for i in range(7):
        await api.request("POST", CM, {"metadata": {"name": f"cm-{i}"}})
    names: list[str] = []
    path = f"{CM}?limit=3"
    pages = 0
    while True:
        _, lst = await api.request("GET", path)
        pages += 1
        names += [i["metadata"]["name"] for i in lst["items"]]
        token = lst["metadata"].get("continue")
        if not token:
            break
        path = f"{CM}?limit=3&continue={token}"
    assert names == [f"cm-{i}" for i in range(7)] and pages == 3


async def _read_events(api: Api, path: str, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    resp = await api.response("GET", path)
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(events) < count:
                line = await resp.content.readline()
                if not line:
                    break
                events.append(orjson.loads(line))
    finally:
        resp.close()
    return events


@contextlib.asynccontextmanager
async def _watch(api: Api, path: str) -> AsyncIterator[Callable[[], Awaitable[dict[str, Any]]]]:
    """An open watch; yields ``next_event()`` (fails after 5 seconds without an event)."""
    resp = await api.response("GET", path)

    async def next_event() -> dict[str, Any]:
        async with asyncio.timeout(5):
            line = await resp.content.readline()
        assert line, "the watch ended"
        event: dict[str, Any] = orjson.loads(line)
        return event

    try:
        yield next_event
    finally:
        resp.close()


async def test_watch_initial_added_then_live_events(api: Api) -> None:
    await api.request("POST", CM, {"metadata": {"name": "w1"}})
    async with _watch(api, f"{CM}?watch=true") as next_event:
        events = [await next_event()]  # the initial state arrived: the watch is live
        await api.request("POST", CM, {"metadata": {"name": "w2"}})
        await api.request("PATCH", f"{CM}/w2", {"data": {"a": "b"}}, content_type="application/merge-patch+json")
        await api.request("DELETE", f"{CM}/w1")
        events += [await next_event() for _ in range(3)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w1"), ("ADDED", "w2"), ("MODIFIED", "w2"), ("DELETED", "w1")]


async def test_watch_resumes_from_resource_version(api: Api) -> None:
    _, a = await api.request("POST", CM, {"metadata": {"name": "r1"}})
    await api.request("POST", CM, {"metadata": {"name": "r2"}})
    await api.request("DELETE", f"{CM}/r1")
    rv = a["metadata"]["resourceVersion"]
    events = await _read_events(api, f"{CM}?watch=true&resourceVersion={rv}", 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "r2"), ("DELETED", "r1")]


async def test_watch_selector_transitions(api: Api) -> None:
    await api.request("POST", CM, {"metadata": {"name": "s", "labels": {"team": "a"}}})
    await api.request("POST", CM, {"metadata": {"name": "marker", "labels": {"team": "b"}}})
    async with _watch(api, f"{CM}?watch=true&labelSelector=team=b") as next_event:
        first = await next_event()  # the marker's initial ADDED: the watch is live
        await api.request("PATCH", f"{CM}/s", {"metadata": {"labels": {"team": "b"}}},
                          content_type="application/merge-patch+json")
        await api.request("PATCH", f"{CM}/s", {"metadata": {"labels": {"team": "c"}}},
                          content_type="application/merge-patch+json")
        events = [await next_event() for _ in range(2)]
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "marker")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "s"), ("DELETED", "s")]


async def test_watch_from_old_revision_within_window_replays(api: Api) -> None:
    await api.request("POST", CM, {"metadata": {"name": "old"}})
    events = await _read_events(api, f"{CM}?watch=true&resourceVersion=1&timeoutSeconds=2", 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "old")]


async def test_watch_bookmark_and_timeout(api: Api) -> None:
    events = await _read_events(
        api, f"{CM}?watch=true&allowWatchBookmarks=true&sendInitialEvents=true"
             "&resourceVersionMatch=NotOlderThan&timeoutSeconds=1", 10)
    assert events[-1]["type"] == "BOOKMARK"
    assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_table_output(api: Api) -> None:
    await api.request("POST", DEPLOY, deployment())
    status, table = await api.request(
        "GET", DEPLOY, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert status == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert table["rows"][0]["cells"][0] == "web"
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def test_unauthenticated_gets_401_status(api: Api) -> None:
    import aiohttp

    from machinery.kubeconfig import load_kubeconfig

    entry = load_kubeconfig(api.settings.kubeconfig_path)
    ctx = entry.ssl_context()
    anon = entry.__class__(context=entry.context, server=entry.server, ca_pem=entry.ca_pem)
    ctx = anon.ssl_context()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(entry.server + "/api/v1/namespaces") as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
        async with s.get(entry.server + "/version") as resp:
            assert resp.status == 200


async def test_metrics_count_requests(api: Api) -> None:
    await api.request("GET", CM)
    status, text = await api.request("GET", "/metrics")
    assert status == 200
    assert 'apiserver_request_total{code="200",resource="configmaps",subresource="",verb="LIST"}' in text


SVC = "/api/v1/namespaces/default/services"


async def test_service_cluster_ip_and_node_port_allocation(api: Api) -> None:
    base = {"spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}
    _, a = await api.request("POST", SVC, {"metadata": {"name": "a"}, **base})
    _, b = await api.request("POST", SVC, {"metadata": {"name": "b"}, **base})
    ip_a, ip_b = a["spec"]["clusterIP"], b["spec"]["clusterIP"]
    assert ip_a.startswith("10.") and ip_a != ip_b and a["spec"]["clusterIPs"] == [ip_a]
    status, err = await api.request("POST", SVC, {"metadata": {"name": "c"},
                                                   "spec": {"clusterIP": ip_a, "ports": [{"port": 80}]}})
    assert status == 422 and err["details"]["causes"][0]["field"] == "spec.clusterIPs"
    _, headless = await api.request("POST", SVC, {"metadata": {"name": "h"},
                                                   "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})
    assert headless["spec"]["clusterIP"] == "None"
    _, np = await api.request("POST", SVC, {"metadata": {"name": "np"},
                                             "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    assert 30000 <= np["spec"]["ports"][0]["nodePort"] <= 32767
    replaced = {"metadata": {"name": "a", "resourceVersion": a["metadata"]["resourceVersion"]}, **base}
    status, updated = await api.request("PUT", f"{SVC}/a", replaced)
    assert status == 200 and updated["spec"]["clusterIP"] == ip_a
    _, kube = await api.request("GET", f"{SVC}/kubernetes")
    assert kube["spec"]["clusterIP"] == "10.96.0.1"


async def test_secret_string_data_is_merged_into_data(api: Api) -> None:
    _, s = await api.request("POST", "/api/v1/namespaces/default/secrets",
                             {"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}})
    assert s["data"] == {"password": "aHVudGVyMg=="} and "stringData" not in s


async def test_immortal_namespace_cannot_be_deleted(api: Api) -> None:
    status, err = await api.request("DELETE", "/api/v1/namespaces/default")
    assert status == 403 and "may not be deleted" in err["message"]


async def test_watch_older_than_the_cache_ring_is_served_from_the_store(tmp_path: Any) -> None:
    from pathlib import Path

    from tests.apiserver.conftest import embedded_api

    async with embedded_api(Path(tmp_path), store="memory") as small:
        _, first = await small.request("POST", CM, {"metadata": {"name": "h0"}})
        # More writes than the ring keeps (1,000 events by default): the replay comes from the store.
        for i in range(1, 2000):
            await small.request("POST", CM, {"metadata": {"name": f"h{i}"}})
        rv = first["metadata"]["resourceVersion"]
        events = await _read_events(small, f"{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=5", 1999)
        assert [e["object"]["metadata"]["name"] for e in events] == [f"h{i}" for i in range(1, 2000)]
