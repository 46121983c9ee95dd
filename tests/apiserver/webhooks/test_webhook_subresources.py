"""What webhooks are sent for subresources with a kind of their own, custom resources, and creates.

Kubernetes' behaviour checked here: ``deployments/scale`` and a custom resource's ``scale`` are
sent as ``autoscaling/v1`` Scale (and a mutating webhook's Scale patch reaches the object);
``pods/binding`` and ``pods/eviction`` are CREATE with a Binding and an Eviction; custom objects
pass through mutating webhooks, and what these change is pruned and defaulted; on create,
mutating webhooks see no ``uid`` or ``creationTimestamp`` (filled afterwards, whatever a webhook
set) and validating ones see both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.conftest import Api
from tests.apiserver.test_crd import CRDS, established, widget_crd
from tests.apiserver.webhooks.hookserver import HookServer, answer
from tests.apiserver.webhooks.test_admission_webhooks import (
    CONFIGMAPS,
    MUTATING,
    VALIDATING,
    configure,
    url_client,
)

Obj = dict[str, Any]
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
SCALE_GVK = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
MERGE = "application/merge-patch+json"


@pytest.fixture
async def hooks(tmp_path: Path) -> AsyncIterator[HookServer]:
    async with HookServer(tmp_path / "hook-pki").running() as server:
        yield server


def hook(name: str, hooks: HookServer, path: str, group: str, resources: str, operations: list[str]) -> Obj:
    return {"name": name, "clientConfig": url_client(hooks, path), "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "rules": [{"operations": operations, "apiGroups": [group], "apiVersions": ["v1"],
                       "resources": [resources]}]}


async def configure_and_wait(api: Api, hooks: HookServer, collection: str, name: str, *webhooks: Obj) -> None:
    """Store a configuration with a probe webhook on ConfigMaps; return once the probe is called
    (the configuration then is in the apiserver's cache, all its webhooks with it)."""
    probe = f"/probe-{name}"
    await configure(api, collection, name, *webhooks,
                    hook(f"probe-{name}.kubelab.test", hooks, probe, "", "configmaps", ["CREATE"]))
    for attempt in range(200):
        await api.request("POST", CONFIGMAPS, {"metadata": {"name": f"{name}-probe-{attempt}"}})
        if hooks.reviews.get(probe):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"configuration {name} never took effect")


def requests_at(hooks: HookServer, path: str) -> list[Obj]:
    return [r["request"] for r in hooks.reviews.get(path, [])]


def patch_answer(*operations: Obj) -> Any:
    async def behaviour(review: Obj) -> Obj:
        return answer(review, patch=list(operations))
    return behaviour


# ---- scale ----------------------------------------------------------------------------------

async def test_deployment_scale_is_sent_as_autoscaling_v1_scale(api: Api, hooks: HookServer) -> None:
    deployment = {"metadata": {"name": "web"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    status, body = await api.request("POST", DEPLOYMENTS, deployment)
    assert status == 201, body
    # The mutating webhook caps a Scale at 4 replicas; the validating one records what it sees.
    hooks.behaviours["/cap"] = patch_answer({"op": "replace", "path": "/spec/replicas", "value": 4})
    await configure_and_wait(api, hooks, MUTATING, "cap",
                             hook("cap.kubelab.test", hooks, "/cap", "apps", "deployments/scale", ["UPDATE"]))
    await configure_and_wait(api, hooks, VALIDATING, "see",
                             hook("see.kubelab.test", hooks, "/see", "apps", "deployments/scale", ["UPDATE"]))
    status, scale = await api.request("PATCH", f"{DEPLOYMENTS}/web/scale", {"spec": {"replicas": 7}},
                                      content_type=MERGE)
    assert status == 200, scale
    assert scale["spec"]["replicas"] == 4
    _, stored = await api.request("GET", f"{DEPLOYMENTS}/web")
    assert stored["spec"]["replicas"] == 4
    for path, replicas in (("/cap", 7), ("/see", 4)):
        request = requests_at(hooks, path)[-1]
        assert request["kind"] == SCALE_GVK and request["requestKind"] == SCALE_GVK
        assert request["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
        assert request["requestResource"] == request["resource"]
        assert request["subResource"] == "scale" and request["operation"] == "UPDATE"
        assert request["object"]["kind"] == "Scale" and request["object"]["apiVersion"] == "autoscaling/v1"
        assert request["object"]["spec"] == {"replicas": replicas}
        assert request["oldObject"]["kind"] == "Scale" and request["oldObject"]["spec"] == {"replicas": 1}
        assert request["name"] == "web" and request["namespace"] == "default"
    # Updates of the Deployment itself are not scale requests.
    status, _ = await api.request("PATCH", f"{DEPLOYMENTS}/web", {"metadata": {"labels": {"a": "b"}}},
                                  content_type=MERGE)
    assert status == 200
    assert all(r["subResource"] == "scale" for r in requests_at(hooks, "/see"))


async def test_custom_resource_scale_is_sent_as_scale(api: Api, hooks: HookServer) -> None:
    status, body = await api.request("POST", CRDS, widget_crd())
    assert status == 201, body
    await established(api, "widgets.example.com")
    status, body = await api.request("POST", WIDGETS, {"apiVersion": "example.com/v1", "kind": "Widget",
                                                       "metadata": {"name": "w"}, "spec": {"size": 1, "replicas": 1}})
    assert status == 201, body
    hooks.behaviours["/wcap"] = patch_answer({"op": "replace", "path": "/spec/replicas", "value": 2})
    await configure_and_wait(api, hooks, MUTATING, "wcap",
                             hook("wcap.kubelab.test", hooks, "/wcap", "example.com", "widgets/scale", ["UPDATE"]))
    status, scale = await api.request("PATCH", f"{WIDGETS}/w/scale", {"spec": {"replicas": 9}}, content_type=MERGE)
    assert status == 200, scale
    assert scale["spec"]["replicas"] == 2
    request = requests_at(hooks, "/wcap")[-1]
    assert request["kind"] == SCALE_GVK and request["requestKind"] == SCALE_GVK
    assert request["resource"] == {"group": "example.com", "version": "v1", "resource": "widgets"}
    assert request["object"]["spec"] == {"replicas": 9} and request["oldObject"]["spec"] == {"replicas": 1}


# ---- binding and eviction -------------------------------------------------------------------

async def _pod(api: Api, name: str) -> None:
    status, body = await api.request("POST", PODS, {"metadata": {"name": name}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}]}})
    assert status == 201, body


async def test_pod_binding_is_a_create_of_a_binding(api: Api, hooks: HookServer) -> None:
    hooks.behaviours["/rebind"] = patch_answer({"op": "replace", "path": "/target/name", "value": "node-b"})

    async def deny_node_c(review: Obj) -> Obj:
        if review["request"]["object"]["target"]["name"] == "node-c":
            return answer(review, allowed=False, status={"message": "node-c is closed"})
        return answer(review)

    hooks.behaviours["/bindcheck"] = deny_node_c
    await configure_and_wait(api, hooks, MUTATING, "rebind",
                             hook("rebind.kubelab.test", hooks, "/rebind", "", "pods/binding", ["CREATE"]))
    await configure_and_wait(api, hooks, VALIDATING, "bindcheck",
                             hook("bindcheck.kubelab.test", hooks, "/bindcheck", "", "pods/binding", ["CREATE"]))
    await _pod(api, "p1")
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"},
               "target": {"kind": "Node", "name": "node-a"}}
    status, body = await api.request("POST", f"{PODS}/p1/binding", binding)
    assert status == 201, body
    _, pod = await api.request("GET", f"{PODS}/p1")
    assert pod["spec"]["nodeName"] == "node-b"  # the mutating webhook's choice
    request = requests_at(hooks, "/rebind")[-1]
    assert request["operation"] == "CREATE" and request["subResource"] == "binding"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Binding"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["name"] == "p1" and request["namespace"] == "default" and request["oldObject"] is None
    assert request["object"]["target"] == {"kind": "Node", "name": "node-a"}
    assert requests_at(hooks, "/bindcheck")[-1]["object"]["target"]["name"] == "node-b"
    # A denial leaves the pod unbound.
    hooks.behaviours["/rebind"] = patch_answer({"op": "replace", "path": "/target/name", "value": "node-c"})
    await _pod(api, "p2")
    status, body = await api.request("POST", f"{PODS}/p2/binding", dict(binding, metadata={"name": "p2"}))
    assert status == 400
    assert body["message"] == 'admission webhook "bindcheck.kubelab.test" denied the request: node-c is closed'
    _, pod = await api.request("GET", f"{PODS}/p2")
    assert not pod["spec"].get("nodeName")


async def test_pod_eviction_is_a_create_of_an_eviction(api: Api, hooks: HookServer) -> None:
    async def protect(review: Obj) -> Obj:
        if review["request"]["name"] == "precious":
            return answer(review, allowed=False, status={"code": 429, "reason": "TooManyRequests",
                                                         "message": "this pod stays"})
        return answer(review)

    hooks.behaviours["/evict"] = protect
    await configure_and_wait(api, hooks, VALIDATING, "evict",
                             hook("evict.kubelab.test", hooks, "/evict", "", "pods/eviction", ["CREATE"]))
    await _pod(api, "precious")
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "precious"}}
    status, body = await api.request("POST", f"{PODS}/precious/eviction", eviction)
    assert status == 429
    assert body["message"] == 'admission webhook "evict.kubelab.test" denied the request: this pod stays'
    status, _ = await api.request("GET", f"{PODS}/precious")
    assert status == 200
    request = requests_at(hooks, "/evict")[-1]
    assert request["operation"] == "CREATE" and request["subResource"] == "eviction"
    assert request["kind"] == {"group": "policy", "version": "v1", "kind": "Eviction"}
    assert request["requestKind"] == request["kind"]
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["object"]["metadata"] == {"name": "precious", "namespace": "default"}
    await _pod(api, "spare")
    status, body = await api.request("POST", f"{PODS}/spare/eviction", dict(eviction, metadata={"name": "spare"}))
    assert status == 201, body
    assert requests_at(hooks, "/evict")[-1]["name"] == "spare"


# ---- custom resources and create ------------------------------------------------------------

async def test_custom_objects_pass_mutating_webhooks(api: Api, hooks: HookServer) -> None:
    status, body = await api.request("POST", CRDS, widget_crd())
    assert status == 201, body
    await established(api, "widgets.example.com")
    # A label, a field the schema does not know (pruned) and a defaulted field removed (defaulted again).
    hooks.behaviours["/wlabel"] = patch_answer({"op": "add", "path": "/metadata/labels", "value": {"seen": "yes"}},
                                               {"op": "add", "path": "/spec/bogus", "value": 1},
                                               {"op": "remove", "path": "/spec/color"})
    await configure_and_wait(api, hooks, MUTATING, "wlabel",
                             hook("wlabel.kubelab.test", hooks, "/wlabel", "example.com", "widgets",
                                  ["CREATE"]))
    status, body = await api.request("POST", WIDGETS, {"apiVersion": "example.com/v1", "kind": "Widget",
                                                       "metadata": {"name": "m"}, "spec": {"size": 2}})
    assert status == 201, body
    _, stored = await api.request("GET", f"{WIDGETS}/m")
    assert stored["metadata"]["labels"] == {"seen": "yes"}
    assert stored["spec"] == {"size": 2, "color": "red"}
    status, body = await api.request("POST", WIDGETS, {"apiVersion": "example.com/v1", "kind": "Widget",
                                                       "metadata": {"name": "n"}, "spec": {"size": 3}})
    assert status == 201 and body["spec"] == {"size": 3, "color": "red"}
    request = next(r for r in requests_at(hooks, "/wlabel") if r["name"] == "m")
    assert request["kind"] == {"group": "example.com", "version": "v1", "kind": "Widget"}
    assert request["object"]["spec"] == {"size": 2, "color": "red"}  # defaulted before the webhooks


async def test_create_fills_uid_and_timestamp_after_mutating_webhooks(api: Api, hooks: HookServer) -> None:
    hooks.behaviours["/m"] = patch_answer({"op": "add", "path": "/metadata/uid", "value": "chosen-by-webhook"})
    await configure_and_wait(api, hooks, MUTATING, "m", hook("m.kubelab.test", hooks, "/m", "", "configmaps",
                                                               ["CREATE"]))
    await configure_and_wait(api, hooks, VALIDATING, "v", hook("v.kubelab.test", hooks, "/v", "", "configmaps",
                                                                 ["CREATE"]))
    status, body = await api.request("POST", CONFIGMAPS, {"metadata": {"name": "fresh", "uid": "from-client"}})
    assert status == 201, body
    assert body["metadata"]["uid"] not in ("chosen-by-webhook", "from-client")
    mutating = next(r for r in requests_at(hooks, "/m") if r["name"] == "fresh")
    assert "uid" not in mutating["object"]["metadata"]
    assert "creationTimestamp" not in mutating["object"]["metadata"]
    validating = next(r for r in requests_at(hooks, "/v") if r["name"] == "fresh")
    assert validating["object"]["metadata"]["uid"] == body["metadata"]["uid"]
    assert validating["object"]["metadata"]["creationTimestamp"] == body["metadata"]["creationTimestamp"]
