"""ResourceQuota admission through the embedded apiserver (no controller runs here): counts and
compute resources charged at create, upstream's refusals, scopes, terminal pods, concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.apiserver.conftest import Api

NS = "/api/v1/namespaces/default"


def pod(name: str, resources: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "busybox"}
    if resources is not None:
        container["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container], **spec}}


def quota(hard: dict[str, str], name: str = "q", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
            "spec": {"hard": hard, **spec}}


async def used(api: Api, name: str = "q") -> dict[str, str]:
    status, body = await api.request("GET", f"{NS}/resourcequotas/{name}")
    assert status == 200, body
    return dict(body["status"]["used"])


async def test_pod_count_refuses_the_third_pod(api: Api) -> None:
    assert (await api.request("POST", f"{NS}/resourcequotas", quota({"pods": "2"})))[0] == 201
    for name in ("a", "b"):
        status, body = await api.request("POST", f"{NS}/pods", pod(name))
        assert status == 201, body
    status, body = await api.request("POST", f"{NS}/pods", pod("c"))
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == ('pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, '
                               "limited: pods=2")
    assert await used(api) == {"pods": "2"}


async def test_compute_quota_requires_requests_and_limits(api: Api) -> None:
    await api.request("POST", f"{NS}/resourcequotas", quota(
        {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "limits.memory": "2Gi"}))
    status, body = await api.request("POST", f"{NS}/pods", pod("bare"))
    assert status == 403
    assert body["message"] == ('pods "bare" is forbidden: failed quota: q: must specify limits.cpu for: app; '
                               "limits.memory for: app; requests.cpu for: app; requests.memory for: app")
    ok = {"requests": {"cpu": "400m", "memory": "600Mi"}, "limits": {"cpu": "800m", "memory": "800Mi"}}
    status, body = await api.request("POST", f"{NS}/pods", pod("first", ok))
    assert status == 201, body
    assert await used(api) == {"limits.cpu": "800m", "limits.memory": "800Mi", "requests.cpu": "400m",
                               "requests.memory": "600Mi"}
    status, body = await api.request("POST", f"{NS}/pods", pod("second", ok))
    assert status == 403
    assert body["message"] == ('pods "second" is forbidden: exceeded quota: q, requested: requests.memory=600Mi, '
                               "used: requests.memory=600Mi, limited: requests.memory=1Gi")


async def test_object_counts_and_node_ports(api: Api) -> None:
    await api.request("POST", f"{NS}/resourcequotas", quota(
        {"configmaps": "1", "count/secrets": "1", "services.nodeports": "1"}))
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}}
    assert (await api.request("POST", f"{NS}/configmaps", cm))[0] == 201
    status, body = await api.request("POST", f"{NS}/configmaps", {**cm, "metadata": {"name": "two"}})
    assert status == 403
    assert "exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1" in body["message"]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}}
    assert (await api.request("POST", f"{NS}/secrets", secret))[0] == 201
    status, body = await api.request("POST", f"{NS}/secrets", {**secret, "metadata": {"name": "s2"}})
    assert status == 403 and "count/secrets=1" in body["message"]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
           "spec": {"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}}
    status, body = await api.request("POST", f"{NS}/services", svc)
    assert status == 403
    assert "requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1" in \
        body["message"]


async def test_terminating_scope_counts_only_matching_pods(api: Api) -> None:
    await api.request("POST", f"{NS}/resourcequotas", quota({"pods": "1"}, scopes=["Terminating"]))
    assert (await api.request("POST", f"{NS}/pods", pod("long-lived")))[0] == 201
    assert (await api.request("POST", f"{NS}/pods", pod("another")))[0] == 201
    assert (await api.request("POST", f"{NS}/pods", pod("job-1", activeDeadlineSeconds=60)))[0] == 201
    status, body = await api.request("POST", f"{NS}/pods", pod("job-2", activeDeadlineSeconds=60))
    assert status == 403, body


async def test_dry_run_checks_without_charging(api: Api) -> None:
    await api.request("POST", f"{NS}/resourcequotas", quota({"pods": "1"}))
    status, _ = await api.request("POST", f"{NS}/pods?dryRun=All", pod("dry"))
    assert status == 201
    assert (await api.request("POST", f"{NS}/pods", pod("real")))[0] == 201
    assert await used(api) == {"pods": "1"}
    status, _ = await api.request("POST", f"{NS}/pods?dryRun=All", pod("dry"))
    assert status == 403


async def test_existing_objects_count_before_the_controller_runs(api: Api) -> None:
    for name in ("old-1", "old-2"):
        assert (await api.request("POST", f"{NS}/pods", pod(name)))[0] == 201
    await api.request("POST", f"{NS}/resourcequotas", quota({"pods": "2"}))
    status, body = await api.request("POST", f"{NS}/pods", pod("new"))
    assert status == 403
    assert "used: pods=2" in body["message"]


async def test_concurrent_creates_never_overshoot(api: Api) -> None:
    await api.request("POST", f"{NS}/resourcequotas", quota({"pods": "3"}))
    results = await asyncio.gather(*(api.request("POST", f"{NS}/pods", pod(f"p{i}")) for i in range(10)))
    assert sorted(status for status, _ in results) == [201] * 3 + [403] * 7
    assert await used(api) == {"pods": "3"}


async def test_status_only_through_the_subresource(api: Api) -> None:
    body = quota({"pods": "2"})
    body["status"] = {"hard": {"pods": "100"}, "used": {"pods": "0"}}
    status, created = await api.request("POST", f"{NS}/resourcequotas", body)
    assert status == 201
    assert "status" not in created or not created["status"]


@pytest.mark.parametrize(("hard", "field", "detail"), [
    pytest.param({"pods": "-1"}, "spec.hard[pods]", "must be greater than or equal to 0", id="negative"),
    pytest.param({"pods": "1500m"}, "spec.hard[pods]", "must be an integer", id="fraction"),
    pytest.param({"gpus": "1"}, "spec.hard[gpus]", "must be a standard resource for quota", id="unknown"),
])
async def test_invalid_quotas(api: Api, hard: dict[str, str], field: str, detail: str) -> None:
    status, body = await api.request("POST", f"{NS}/resourcequotas", quota(hard))
    assert status == 422, body
    causes = {c["field"]: c["message"] for c in body["details"]["causes"]}
    assert field in causes and detail in causes[field], causes


async def test_conflicting_scopes(api: Api) -> None:
    status, body = await api.request("POST", f"{NS}/resourcequotas",
                                     quota({"pods": "1"}, scopes=["Terminating", "NotTerminating"]))
    assert status == 422
    assert any("conflicting scopes" in c["message"] for c in body["details"]["causes"])
