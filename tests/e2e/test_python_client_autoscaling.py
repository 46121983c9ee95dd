"""The official ``kubernetes`` Python client on autoscaling and metrics: AutoscalingV2Api and
AutoscalingV1Api for HorizontalPodAutoscalers, CustomObjectsApi for metrics.k8s.io.

Every answer must deserialize into the client's strict models. An in-process apiserver scrapes
hollow nodes; the synchronous client runs in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.hollow_metrics import HollowMetrics, hollow_metrics
from tests.e2e.pyclient import NS, client, new_client_from_config
from tests.kubelet.conftest import eventually
from tests.netaudit import NetAudit, netaudit

__all__ = ["netaudit"]

pytestmark = pytest.mark.usefixtures("netaudit")


@pytest.fixture
async def cluster(tmp_path: Path, netaudit: NetAudit) -> AsyncIterator[HollowMetrics]:
    async with hollow_metrics(tmp_path) as found:
        yield found


async def call(cluster: HollowMetrics, fn: Callable[[Any], Any]) -> Any:
    def run() -> Any:
        api = new_client_from_config(config_file=str(cluster.api.settings.kubeconfig_path))
        try:
            return fn(api)
        finally:
            api.close()

    return await asyncio.to_thread(run)


def v2_hpa() -> Any:
    return client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment",
                                                                  name="web"),
            min_replicas=1, max_replicas=5,
            metrics=[client.V2MetricSpec(type="Resource", resource=client.V2ResourceMetricSource(
                name="memory", target=client.V2MetricTarget(type="AverageValue", average_value="64Mi")))],
            behavior=client.V2HorizontalPodAutoscalerBehavior(scale_down=client.V2HPAScalingRules(
                stabilization_window_seconds=30))))


async def test_autoscaling_v2_and_v1(cluster: HollowMetrics) -> None:
    created = await call(cluster, lambda api: client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(
        NS, v2_hpa()))
    assert created.spec.metrics[0].resource.target.average_value == "64Mi"
    assert created.spec.behavior.scale_down.policies[0].type == "Percent"
    assert created.spec.behavior.scale_up.select_policy == "Max"
    assert created.status.desired_replicas == 0
    listed = await call(cluster, lambda api: client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(NS))
    assert [h.metadata.name for h in listed.items] == ["web"]
    v1 = await call(cluster, lambda api: client.AutoscalingV1Api(api).read_namespaced_horizontal_pod_autoscaler(
        "web", NS))
    assert v1.spec.target_cpu_utilization_percentage is None
    assert "autoscaling.alpha.kubernetes.io/metrics" in v1.metadata.annotations
    patched = await call(cluster, lambda api: client.AutoscalingV1Api(api).patch_namespaced_horizontal_pod_autoscaler(
        "web", NS, {"spec": {"maxReplicas": 7}}))
    assert patched.spec.max_replicas == 7
    again = await call(cluster, lambda api: client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(
        "web", NS))
    assert again.spec.max_replicas == 7
    assert again.spec.metrics[0].resource.name == "memory"
    status = await call(cluster, lambda api: client.AutoscalingV2Api(
        api).read_namespaced_horizontal_pod_autoscaler_status("web", NS))
    assert status.status.desired_replicas == 0
    await call(cluster, lambda api: client.AutoscalingV1Api(api).delete_namespaced_horizontal_pod_autoscaler("web", NS))


async def test_metrics_through_custom_objects(cluster: HollowMetrics) -> None:
    await cluster.run_pod("busy", cpu="300m", labels={"app": "web"})

    async def pods() -> Any:
        found = await call(cluster, lambda api: client.CustomObjectsApi(api).list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", NS, "pods", label_selector="app=web"))
        return found if found["items"] else None

    found = await eventually(pods, timeout=30)
    assert found["items"][0]["containers"][0]["usage"]["cpu"] == "300000000n"
    nodes = await call(cluster, lambda api: client.CustomObjectsApi(api).list_cluster_custom_object(
        "metrics.k8s.io", "v1beta1", "nodes"))
    assert {n["metadata"]["name"] for n in nodes["items"]} == {"hollow-node-1", "hollow-node-2"}
    one = await call(cluster, lambda api: client.CustomObjectsApi(api).get_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", NS, "pods", "busy"))
    assert one["kind"] == "PodMetrics"
