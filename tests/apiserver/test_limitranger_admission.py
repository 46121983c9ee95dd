"""LimitRanger admission through the embedded apiserver: defaults on new pods, min/max/ratio
refusals worded as Kubernetes words them (403), LimitRange validation (422 naming the field)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.apiserver.conftest import Api

NS = "/api/v1/namespaces/default"


def pod(name: str, resources: dict[str, Any] | None = None, *, init: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "busybox"}
    if resources is not None:
        container["resources"] = resources
    spec: dict[str, Any] = {"containers": [container]}
    if init:
        spec["initContainers"] = [{"name": "setup", "image": "busybox"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def limit_range(*items: dict[str, Any], name: str = "limits") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name}, "spec": {"limits": list(items)}}


async def test_defaults_fill_missing_requests_and_limits(api: Api) -> None:
    status, body = await api.request("POST", f"{NS}/limitranges", limit_range(
        {"type": "Container", "default": {"memory": "512Mi", "cpu": "1"},
         "defaultRequest": {"memory": "256Mi", "cpu": "500m"}}))
    assert status == 201, body
    status, created = await api.request("POST", f"{NS}/pods", pod("defaulted", init=True))
    assert status == 201, created
    for container in created["spec"]["containers"] + created["spec"]["initContainers"]:
        assert container["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"},
                                          "requests": {"cpu": "500m", "memory": "256Mi"}}
    note = created["metadata"]["annotations"]["kubernetes.io/limit-ranger"]
    assert note == ("LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for "
                    "container app; cpu, memory request for init container setup; cpu, memory limit for init "
                    "container setup")
    assert created["status"]["qosClass"] == "Burstable"


async def test_own_values_win_over_defaults(api: Api) -> None:
    await api.request("POST", f"{NS}/limitranges", limit_range(
        {"type": "Container", "default": {"memory": "512Mi"}, "defaultRequest": {"memory": "256Mi"}}))
    status, created = await api.request("POST", f"{NS}/pods", pod("own", {"limits": {"memory": "1Gi"},
                                                                          "requests": {"memory": "1Gi"}}))
    assert status == 201, created
    assert created["spec"]["containers"][0]["resources"] == {"limits": {"memory": "1Gi"},
                                                               "requests": {"memory": "1Gi"}}


async def test_max_defaults_the_limit_in_the_stored_limit_range(api: Api) -> None:
    status, body = await api.request("POST", f"{NS}/limitranges", limit_range(
        {"type": "Container", "max": {"memory": "1Gi"}, "min": {"memory": "500Mi"}}))
    assert status == 201, body
    item = body["spec"]["limits"][0]
    assert item["default"] == {"memory": "1Gi"} and item["defaultRequest"] == {"memory": "1Gi"}


@pytest.mark.parametrize(("resources", "message"), [
    pytest.param({"limits": {"memory": "2Gi"}, "requests": {"memory": "600Mi"}},
                 'pods "p" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi', id="max"),
    pytest.param({"limits": {"memory": "800Mi"}, "requests": {"memory": "100Mi"}},
                 'pods "p" is forbidden: minimum memory usage per Container is 500Mi, but request is 100Mi',
                 id="min"),
])
async def test_min_max_refusals(api: Api, resources: dict[str, Any], message: str) -> None:
    await api.request("POST", f"{NS}/limitranges", limit_range(
        {"type": "Container", "max": {"memory": "1Gi"}, "min": {"memory": "500Mi"}}))
    status, body = await api.request("POST", f"{NS}/pods", pod("p", resources))
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert body["message"] == message


async def test_ratio_and_pod_type(api: Api) -> None:
    await api.request("POST", f"{NS}/limitranges", limit_range(
        {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}},
        {"type": "Pod", "max": {"cpu": "1"}}))
    status, body = await api.request("POST", f"{NS}/pods", pod("r", {"limits": {"cpu": "800m"},
                                                                     "requests": {"cpu": "200m"}}))
    assert status == 403
    assert body["message"] == ('pods "r" is forbidden: cpu max limit to request ratio per Container is 2, '
                               "but provided ratio is 4.000000")
    status, body = await api.request("POST", f"{NS}/pods", pod("big", {"limits": {"cpu": "2"},
                                                                       "requests": {"cpu": "2"}}))
    assert status == 403
    assert body["message"] == 'pods "big" is forbidden: maximum cpu usage per Pod is 1, but limit is 2'


async def test_claim_storage_bounds(api: Api) -> None:
    await api.request("POST", f"{NS}/limitranges", limit_range(
        {"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}, "min": {"storage": "1Gi"}}))
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "big"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}
    status, body = await api.request("POST", f"{NS}/persistentvolumeclaims", claim)
    assert status == 403
    assert body["message"] == ('persistentvolumeclaims "big" is forbidden: maximum storage usage per '
                               "PersistentVolumeClaim is 2Gi, but request is 5Gi")


@pytest.mark.parametrize(("item", "field", "detail"), [
    pytest.param({"type": "Container", "min": {"memory": "2Gi"}, "max": {"memory": "1Gi"}},
                 "spec.limits[0].min[memory]", "min value 2Gi is greater than max value 1Gi", id="min-over-max"),
    pytest.param({"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "2"}},
                 "spec.limits[0].defaultRequest[cpu]", "default request value 2 is greater than default limit value 1",
                 id="request-over-limit"),
    pytest.param({"type": "Pod", "default": {"cpu": "1"}}, "spec.limits[0].default",
                 "may not be specified when `type` is 'Pod'", id="pod-default"),
    pytest.param({"type": "Container", "max": {"gpus": "1"}}, "spec.limits[0].max[gpus]",
                 "must be a standard limit type or fully qualified", id="resource-name"),
    pytest.param({"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}},
                 "spec.limits[0].maxLimitRequestRatio[cpu]", "ratio 500m is less than 1", id="ratio"),
])
async def test_invalid_limit_ranges(api: Api, item: dict[str, Any], field: str, detail: str) -> None:
    status, body = await api.request("POST", f"{NS}/limitranges", limit_range(item))
    assert status == 422, body
    causes = {c["field"]: c["message"] for c in body["details"]["causes"]}
    assert field in causes, causes
    assert detail in causes[field]


async def test_pods_in_other_namespaces_are_untouched(api: Api) -> None:
    await api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": "other"}})
    await api.request("POST", f"{NS}/limitranges", limit_range(
        {"type": "Container", "default": {"memory": "512Mi"}}))
    status, created = await api.request("POST", "/api/v1/namespaces/other/pods", pod("free"))
    assert status == 201
    assert "resources" not in created["spec"]["containers"][0] or not created["spec"]["containers"][0]["resources"]
