"""Admission webhooks end to end: an embedded apiserver calls a webhook served by this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.conftest import Api
from tests.apiserver.webhooks.hookserver import HookServer, answer, hang

MUTATING = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
VALIDATING = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"

Obj = dict[str, Any]


@pytest.fixture
async def hooks(tmp_path: Path) -> AsyncIterator[HookServer]:
    async with HookServer(tmp_path / "hook-pki").running() as server:
        yield server


def webhook(name: str, client: Obj, *, resources: tuple[str, ...] = ("configmaps",),
            operations: tuple[str, ...] = ("CREATE", "UPDATE"), **extra: Any) -> Obj:
    hook: Obj = {"name": name, "clientConfig": client, "sideEffects": "None", "admissionReviewVersions": ["v1"],
                 "rules": [{"operations": list(operations), "apiGroups": ["", "apps"], "apiVersions": ["v1"],
                            "resources": list(resources)}]}
    hook.update(extra)
    return hook


def url_client(hooks: HookServer, path: str) -> Obj:
    return {"url": hooks.url(path), "caBundle": hooks.ca_bundle}


async def configure(api: Api, collection: str, name: str, *webhooks: Obj) -> None:
    status, body = await api.request("POST", collection, {"metadata": {"name": name}, "webhooks": list(webhooks)})
    assert status == 201, body


async def wait_configured(api: Api, probe_name: str, check: Any) -> tuple[int, Any, Any]:
    """Configurations reach the watch cache asynchronously: create probe objects until ``check`` holds."""
    for attempt in range(100):
        status, body = await api.request("POST", CONFIGMAPS, {"metadata": {"name": f"{probe_name}-{attempt}"}})
        if check(status, body):
            return status, body, attempt
        await asyncio.sleep(0.05)
    raise AssertionError(f"webhook never took effect: last answer {status} {body}")


async def test_mutating_webhook_patch_is_applied_and_review_has_kubernetes_fields(api: Api, hooks: HookServer
                                                                                    ) -> None:
    async def add_label(review: Obj) -> Obj:
        return answer(review, patch=[{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}],
                      warnings=["labelled by the test webhook"])

    hooks.behaviours["/mutate"] = add_label
    await configure(api, MUTATING, "labeller", webhook("label.kubelab.test", url_client(hooks, "/mutate")))
    status, body, _ = await wait_configured(api, "cm", lambda s, b: (b.get("metadata", {}).get("labels") or {}))
    assert status == 201
    assert body["metadata"]["labels"] == {"mutated": "yes"}
    request = hooks.reviews["/mutate"][-1]["request"]
    assert request["operation"] == "CREATE"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert request["requestResource"] == request["resource"]
    assert request["namespace"] == "default" and request["name"] == body["metadata"]["name"]
    assert request["userInfo"]["username"] == "kubernetes-admin"
    assert "system:masters" in request["userInfo"]["groups"]
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert request["dryRun"] is False and request["oldObject"] is None
    assert request["uid"]
    # The stored object carries the patch, and the warning reached the client as a header.
    _, stored = await api.request("GET", f"{CONFIGMAPS}/{body['metadata']['name']}")
    assert stored["metadata"]["labels"] == {"mutated": "yes"}
    resp = await api.response("POST", CONFIGMAPS, json={"metadata": {"name": "warned"}})
    assert resp.headers.getall("Warning") == ['299 - "labelled by the test webhook"']


async def test_validating_webhook_denial_is_a_status_with_its_code_and_reason(api: Api, hooks: HookServer) -> None:
    async def deny(review: Obj) -> Obj:
        if review["request"]["name"].startswith("bad"):
            return answer(review, allowed=False, status={"code": 403, "reason": "Forbidden",
                                                         "message": "names starting with bad are refused"})
        return answer(review)

    hooks.behaviours["/validate"] = deny
    await configure(api, VALIDATING, "namer", webhook("names.kubelab.test", url_client(hooks, "/validate")))
    status, body, _ = await wait_configured(api, "bad", lambda s, b: s != 201)
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == ('admission webhook "names.kubelab.test" denied the request: names starting with '
                               "bad are refused")
    status, _ = await api.request("POST", CONFIGMAPS, {"metadata": {"name": "good"}})
    assert status == 201
    # Updates are validated with the old object; deletes are not in the rule.
    status, body = await api.request("PUT", f"{CONFIGMAPS}/good", {"metadata": {"name": "good"}, "data": {"a": "b"}})
    assert status == 200, body
    update = hooks.reviews["/validate"][-1]["request"]
    assert update["operation"] == "UPDATE" and update["oldObject"]["metadata"]["name"] == "good"
    assert update["options"]["kind"] == "UpdateOptions"


async def test_denial_without_code_is_400(api: Api, hooks: HookServer) -> None:
    async def deny(review: Obj) -> Obj:
        return answer(review, allowed=False)

    hooks.behaviours["/deny"] = deny
    await configure(api, VALIDATING, "denier", webhook("deny.kubelab.test", url_client(hooks, "/deny")))
    status, body, _ = await wait_configured(api, "x", lambda s, b: s != 201)
    assert status == 400
    assert body["message"] == 'admission webhook "deny.kubelab.test" denied the request without explanation'


@pytest.mark.parametrize(("behaviour", "wording"), [
    pytest.param("hang", "context deadline exceeded", id="timeout"),
    pytest.param("garbage", "failed to call webhook", id="garbage"),
    pytest.param("bad-patch", "received undecodable patch in webhook response", id="undecodable-patch"),
    pytest.param("wrong-uid", "received invalid webhook response: expected response.uid=", id="wrong-uid"),
])
@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_failing_webhook_follows_failure_policy(api: Api, hooks: HookServer, behaviour: str, wording: str,
                                                      policy: str) -> None:
    async def misbehave(review: Obj) -> Any:
        if behaviour == "hang":
            return await hang(hooks)
        if behaviour == "garbage":
            return b"<html>not a review"
        if behaviour == "wrong-uid":
            return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": "nope", "allowed": True}}
        return answer(review, raw_patch="!!not base64!!")

    hooks.behaviours["/broken"] = misbehave
    await configure(api, MUTATING, "broken", webhook("broken.kubelab.test", url_client(hooks, "/broken"),
                                                     failurePolicy=policy, timeoutSeconds=1))
    status, body, _ = await wait_configured(api, "p", lambda s, b: bool(hooks.reviews.get("/broken")))
    if policy == "Fail":
        assert status == 500
        assert body["reason"] == "InternalError"
        assert body["message"].startswith('Internal error occurred: failed calling webhook "broken.kubelab.test": ')
        assert wording in body["message"]
    else:
        assert status == 201, body


async def test_hanging_webhook_does_not_block_other_requests(api: Api, hooks: HookServer) -> None:
    async def maybe_hang(review: Obj) -> Any:
        return await hang(hooks) if review["request"]["name"] == "slow" else answer(review)

    hooks.behaviours["/slow"] = maybe_hang
    await configure(api, VALIDATING, "slow", webhook("slow.kubelab.test", url_client(hooks, "/slow"),
                                                     timeoutSeconds=30))
    await wait_configured(api, "warm", lambda s, b: bool(hooks.reviews.get("/slow")))
    slow = asyncio.create_task(api.request("POST", CONFIGMAPS, {"metadata": {"name": "slow"}}))
    while not any(r["request"]["name"] == "slow" for r in hooks.reviews["/slow"]):
        await asyncio.sleep(0.02)
    status, _ = await api.request("POST", CONFIGMAPS, {"metadata": {"name": "fast"}})
    assert status == 201
    assert not slow.done()
    hooks.release.set()  # the webhook answers "{}": not a review
    status, body = await slow
    assert status == 500 and "received invalid webhook response" in body["message"]


async def test_host_name_url_is_refused_by_the_network_guard(api: Api, hooks: HookServer) -> None:
    client = {"url": "https://hooks.kubelab.test/validate", "caBundle": hooks.ca_bundle}
    await configure(api, VALIDATING, "remote", webhook("remote.kubelab.test", client))
    status, body, _ = await wait_configured(api, "r", lambda s, b: s != 201)
    assert status == 500
    assert 'failed calling webhook "remote.kubelab.test"' in body["message"]
    assert "does not look up host names" in body["message"]


async def test_service_reference_dials_a_ready_endpoint(api: Api, hooks: HookServer) -> None:
    async def add_label(review: Obj) -> Obj:
        return answer(review, patch=[{"op": "add", "path": "/metadata/labels", "value": {"via": "service"}}])

    hooks.behaviours["/svc"] = add_label
    # A Service without a selector and hand-made Endpoints pointing at this process (loopback).
    status, body = await api.request("POST", "/api/v1/namespaces/default/services", {
        "metadata": {"name": "hooks"}, "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 9443}]}})
    assert status == 201, body
    status, body = await api.request("POST", "/api/v1/namespaces/default/endpoints", {
        "metadata": {"name": "hooks"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": hooks.port}]}]})
    assert status == 201, body
    client = {"service": {"namespace": "default", "name": "hooks", "path": "/svc"}, "caBundle": hooks.ca_bundle}
    await configure(api, MUTATING, "svc", webhook("svc.kubelab.test", client))
    status, body, _ = await wait_configured(api, "s", lambda s, b: (b.get("metadata", {}).get("labels") or {}))
    assert body["metadata"]["labels"] == {"via": "service"}


async def test_selectors_and_dry_run(api: Api, hooks: HookServer) -> None:
    hooks.behaviours["/sel"] = lambda review: _allow(review)
    status, _ = await api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "watched",
                                                                            "labels": {"hooks": "on"}}})
    assert status == 201
    await configure(api, VALIDATING, "sel", webhook(
        "sel.kubelab.test", url_client(hooks, "/sel"), namespaceSelector={"matchLabels": {"hooks": "on"}},
        objectSelector={"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}))
    watched = "/api/v1/namespaces/watched/configmaps"
    for attempt in range(100):
        await api.request("POST", watched, {"metadata": {"name": f"probe-{attempt}"}})
        if hooks.reviews.get("/sel"):
            break
        await asyncio.sleep(0.05)
    seen = len(hooks.reviews["/sel"])
    await api.request("POST", CONFIGMAPS, {"metadata": {"name": "other-namespace"}})
    await api.request("POST", watched, {"metadata": {"name": "skipped", "labels": {"skip": "1"}}})
    assert len(hooks.reviews["/sel"]) == seen
    status, _ = await api.request("POST", watched + "?dryRun=All", {"metadata": {"name": "dry"}})
    assert status == 201
    request = hooks.reviews["/sel"][-1]["request"]
    assert request["dryRun"] is True and request["options"]["dryRun"] == ["All"]


async def _allow(review: Obj) -> Obj:
    return answer(review)


async def test_subresource_rules_and_delete(api: Api, hooks: HookServer) -> None:
    hooks.behaviours["/status"] = _allow
    hooks.behaviours["/delete"] = _allow
    await configure(api, VALIDATING, "sub",
                    webhook("status.kubelab.test", url_client(hooks, "/status"), resources=("pods/status",),
                            operations=("UPDATE",)),
                    webhook("delete.kubelab.test", url_client(hooks, "/delete"), resources=("*",),
                            operations=("DELETE",)))
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    status, body = await api.request("POST", "/api/v1/namespaces/default/pods", pod)
    assert status == 201, body
    for _ in range(100):
        status, body = await api.request("PUT", "/api/v1/namespaces/default/pods/p/status",
                                         dict(body, status={"phase": "Running"}))
        if hooks.reviews.get("/status"):
            break
        await asyncio.sleep(0.05)
    request = hooks.reviews["/status"][-1]["request"]
    assert request["subResource"] == "status" and request["kind"]["kind"] == "Pod"
    await api.request("POST", CONFIGMAPS, {"metadata": {"name": "doomed"}})
    status, _ = await api.request("DELETE", f"{CONFIGMAPS}/doomed")
    assert status == 200
    request = hooks.reviews["/delete"][-1]["request"]
    assert request["operation"] == "DELETE" and request["object"] is None
    assert request["oldObject"]["metadata"]["name"] == "doomed"
    assert request["options"]["kind"] == "DeleteOptions"


async def test_reinvocation_if_needed(api: Api, hooks: HookServer) -> None:
    async def first(review: Obj) -> Obj:
        return answer(review)

    async def second(review: Obj) -> Obj:
        labels = review["request"]["object"]["metadata"].get("labels") or {}
        if "second" in labels:
            return answer(review)
        return answer(review, patch=[{"op": "add", "path": "/metadata/labels", "value": {"second": "1"}}])

    hooks.behaviours["/first"] = first
    hooks.behaviours["/second"] = second
    await configure(api, MUTATING, "a-first", webhook("first.kubelab.test", url_client(hooks, "/first"),
                                                      reinvocationPolicy="IfNeeded"))
    await configure(api, MUTATING, "b-second", webhook("second.kubelab.test", url_client(hooks, "/second")))
    _, body, _ = await wait_configured(api, "re", lambda s, b: (b.get("metadata", {}).get("labels") or {}))
    name = body["metadata"]["name"]
    first_calls = [r for r in hooks.reviews["/first"] if r["request"]["name"] == name]
    assert len(first_calls) == 2
    assert first_calls[1]["request"]["object"]["metadata"]["labels"] == {"second": "1"}


async def test_generate_name_is_resolved_after_mutating_and_before_validating_webhooks(api: Api, hooks: HookServer
                                                                                      ) -> None:
    hooks.behaviours["/mutate"] = _allow
    hooks.behaviours["/validate"] = _allow
    await configure(api, MUTATING, "gen-m", webhook("gen-m.kubelab.test", url_client(hooks, "/mutate")))
    await configure(api, VALIDATING, "gen-v", webhook("gen-v.kubelab.test", url_client(hooks, "/validate")))
    await wait_configured(api, "warm", lambda s, b: bool(hooks.reviews.get("/mutate")) and bool(
        hooks.reviews.get("/validate")))
    status, body = await api.request("POST", CONFIGMAPS, {"metadata": {"generateName": "gen-"}})
    assert status == 201, body
    name = body["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5
    mutating = hooks.reviews["/mutate"][-1]["request"]
    assert mutating["name"] == ""
    assert "name" not in mutating["object"]["metadata"]
    assert mutating["object"]["metadata"]["generateName"] == "gen-"
    validating = hooks.reviews["/validate"][-1]["request"]
    assert validating["name"] == name and validating["object"]["metadata"]["name"] == name


async def test_a_name_set_by_a_mutating_webhook_wins_over_generate_name(api: Api, hooks: HookServer) -> None:
    async def name_it(review: Obj) -> Obj:
        if review["request"]["object"]["metadata"].get("name"):
            return answer(review)
        return answer(review, patch=[{"op": "add", "path": "/metadata/name", "value": "chosen-by-hook"}])

    hooks.behaviours["/name"] = name_it
    await configure(api, MUTATING, "namer", webhook("namer.kubelab.test", url_client(hooks, "/name")))
    for _ in range(100):
        status, body = await api.request("POST", CONFIGMAPS, {"metadata": {"generateName": "gen-"}})
        assert status == 201, body
        if hooks.reviews.get("/name"):
            break
        await asyncio.sleep(0.05)
    assert body["metadata"]["name"] == "chosen-by-hook"
    status, stored = await api.request("GET", f"{CONFIGMAPS}/chosen-by-hook")
    assert status == 200 and stored["metadata"]["generateName"] == "gen-"
