"""The HPA controller against an in-process apiserver and hollow nodes whose CPU a pod annotation sets.

A Deployment's pods report ``kubelab.dev/fake-cpu``; the HPA scales the Deployment up while they
run hot, then down (after a short, HPA-set stabilization window) once they are annotated cool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from machinery import errors
from machinery.resources import (
    CUSTOMRESOURCEDEFINITIONS,
    DEPLOYMENTS,
    EVENTS,
    HORIZONTALPODAUTOSCALERS,
    PODS,
    REPLICASETS,
)
from tests.apiserver.hollow_metrics import HollowMetrics, hollow_metrics
from tests.controllers.helpers import manager
from tests.kubelet.conftest import eventually
from tests.netaudit import NetAudit, netaudit

__all__ = ["netaudit"]

pytestmark = pytest.mark.usefixtures("netaudit")
HPA_CONTROLLERS = ("replicaset", "deployment", "horizontalpodautoscaling")


@pytest.fixture
async def cluster(tmp_path: Path, netaudit: NetAudit) -> AsyncIterator[HollowMetrics]:
    async with hollow_metrics(tmp_path) as found, manager(found.client, controllers=HPA_CONTROLLERS,
                                                          horizontal_pod_autoscaler_sync_period=0.5):
        yield found


def deployment(cpu: str, replicas: int = 1) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"kubelab.dev/fake-cpu": cpu}},
                "spec": {"nodeName": "hollow-node-1", "containers": [{
                    "name": "app", "image": "kubelab/nginx:1.22", "resources": {"requests": {"cpu": "100m"}}}]}}}}


def hpa(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}], **spec}}


async def replicas_become(cluster: HollowMetrics, wanted: int, timeout: float = 60) -> None:
    async def check() -> bool:
        obj = await cluster.client.get(DEPLOYMENTS, "web", namespace="default")
        return bool(obj["spec"]["replicas"] == wanted)

    await eventually(check, timeout=timeout)


async def events(cluster: HollowMetrics, reason: str) -> list[str]:
    listed = await cluster.client.list(EVENTS, namespace="default")
    return [e["message"] for e in listed["items"] if e["reason"] == reason]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"].get("conditions", []) if c["type"] == type_)


async def test_scales_up_under_load_and_down_after_the_window(cluster: HollowMetrics) -> None:
    await cluster.client.create(DEPLOYMENTS, deployment("90m"))
    await cluster.client.create(HORIZONTALPODAUTOSCALERS, hpa(behavior={"scaleDown": {
        "stabilizationWindowSeconds": 1}}))
    await replicas_become(cluster, 4)
    rescales = await events(cluster, "SuccessfulRescale")
    assert "New size: 2; reason: cpu resource utilization (percentage of request) above target" in rescales

    async def status_seen() -> dict[str, Any] | None:
        obj = await cluster.client.get(HORIZONTALPODAUTOSCALERS, "web", namespace="default")
        current = obj["status"].get("currentMetrics") or []
        return obj if current and current[0]["resource"]["current"].get("averageUtilization") == 90 else None

    obj = await eventually(status_seen, timeout=60)
    assert condition(obj, "ScalingActive")["reason"] == "ValidMetricFound"
    assert condition(obj, "AbleToScale")["status"] == "True"
    assert obj["status"]["lastScaleTime"].endswith("Z")

    # Stop the load: every pod reports 10 % of its request.
    pods = await cluster.client.list(PODS, namespace="default", label_selector="app=web")
    for pod in pods["items"]:
        await cluster.client.patch(PODS, pod["metadata"]["name"], {"metadata": {"annotations": {
            "kubelab.dev/fake-cpu": "10m"}}}, namespace="default")
    await replicas_become(cluster, 1)
    assert "New size: 1; reason: All metrics below target" in await events(cluster, "SuccessfulRescale")


async def test_default_window_holds_a_scale_down(cluster: HollowMetrics) -> None:
    await cluster.client.create(DEPLOYMENTS, deployment("10m", replicas=3))
    await cluster.client.create(HORIZONTALPODAUTOSCALERS, hpa())

    async def stabilized() -> dict[str, Any] | None:
        obj = await cluster.client.get(HORIZONTALPODAUTOSCALERS, "web", namespace="default")
        conds = {c["type"]: c for c in obj["status"].get("conditions", [])}
        able = conds.get("AbleToScale", {})
        return obj if able.get("reason") == "ScaleDownStabilized" else None

    obj = await eventually(stabilized, timeout=60)
    assert obj["status"]["desiredReplicas"] == 3
    assert (await cluster.client.get(DEPLOYMENTS, "web", namespace="default"))["spec"]["replicas"] == 3


async def test_missing_metrics_and_missing_target_are_reported(cluster: HollowMetrics) -> None:
    await cluster.client.create(HORIZONTALPODAUTOSCALERS, hpa())

    async def no_target() -> dict[str, Any] | None:
        obj = await cluster.client.get(HORIZONTALPODAUTOSCALERS, "web", namespace="default")
        conds = {c["type"]: c for c in obj["status"].get("conditions", [])}
        return obj if conds.get("AbleToScale", {}).get("reason") == "FailedGetScale" else None

    obj = await eventually(no_target, timeout=60)
    assert condition(obj, "AbleToScale")["status"] == "False"
    assert await events(cluster, "FailedGetScale")
    # A target whose pods request no CPU cannot be scaled on utilization.
    body = deployment("50m")
    del body["spec"]["template"]["spec"]["containers"][0]["resources"]
    await cluster.client.create(DEPLOYMENTS, body)

    async def inactive() -> dict[str, Any] | None:
        obj = await cluster.client.get(HORIZONTALPODAUTOSCALERS, "web", namespace="default")
        conds = {c["type"]: c for c in obj["status"].get("conditions", [])}
        active = conds.get("ScalingActive", {})
        return obj if "missing request" in active.get("message", "") else None

    obj = await eventually(inactive, timeout=60)
    assert condition(obj, "ScalingActive")["reason"] == "FailedGetResourceMetric"
    assert condition(obj, "ScalingActive")["message"] == (
        "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu "
        "in container app of Pod " + condition(obj, "ScalingActive")["message"].rsplit(" ", 1)[-1])
    assert any(m.startswith("failed to get cpu utilization") for m in await events(cluster, "FailedGetResourceMetric"))


async def test_container_resource_metric_on_a_replicaset(cluster: HollowMetrics) -> None:
    rs = deployment("160m", replicas=1)
    rs["kind"], rs["metadata"]["name"] = "ReplicaSet", "web-rs"
    del rs["spec"]["template"]["metadata"]["annotations"]
    rs["spec"]["template"]["metadata"]["annotations"] = {"kubelab.dev/fake-cpu": "160m"}
    await cluster.client.create(REPLICASETS, rs)
    body = hpa(metrics=[{"type": "ContainerResource", "containerResource": {
        "name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    body["spec"]["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-rs"}
    await cluster.client.create(HORIZONTALPODAUTOSCALERS, body)

    async def scaled() -> bool:
        obj = await cluster.client.get(REPLICASETS, "web-rs", namespace="default")
        return bool(obj["spec"]["replicas"] >= 2)

    await eventually(scaled, timeout=60)
    assert any("cpu container resource utilization (percentage of request) above target" in m
               for m in await events(cluster, "SuccessfulRescale"))


async def test_a_custom_resource_with_a_scale_subresource(cluster: HollowMetrics) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "webapps.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "webapps", "singular": "webapp", "kind": "WebApp"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"status": {}, "scale": {
                                      "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                                      "labelSelectorPath": ".status.selector"}},
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    await cluster.client.create(CUSTOMRESOURCEDEFINITIONS, crd)
    path = "/apis/example.com/v1/namespaces/default/webapps"

    async def served() -> bool:
        try:
            await cluster.client.request("GET", path)
        except errors.NotFoundError:
            return False
        return True

    await eventually(served, timeout=30)
    app = await cluster.client.request("POST", path, body={
        "apiVersion": "example.com/v1", "kind": "WebApp", "metadata": {"name": "shop"}, "spec": {"replicas": 1}})
    app["status"] = {"replicas": 1, "selector": "app=shop"}
    await cluster.client.request("PUT", f"{path}/shop/status", body=app)
    await cluster.run_pod("shop-1", cpu="300m", labels={"app": "shop"})
    body = hpa()
    body["spec"]["scaleTargetRef"] = {"apiVersion": "example.com/v1", "kind": "WebApp", "name": "shop"}
    await cluster.client.create(HORIZONTALPODAUTOSCALERS, body)

    async def scaled() -> bool:
        obj = await cluster.client.request("GET", f"{path}/shop")
        return bool(obj["spec"]["replicas"] == 4)

    await eventually(scaled, timeout=60)
