"""metrics.k8s.io/v1beta1 served from the hollow kubelets' simulated statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelet.stats import SimulatedStats
from machinery.resources import PODS
from tests.apiserver.hollow_metrics import HollowMetrics, hollow_metrics
from tests.kubelet.conftest import eventually
from tests.netaudit import NetAudit, netaudit

__all__ = ["netaudit"]

pytestmark = pytest.mark.usefixtures("netaudit")
BASE = "/apis/metrics.k8s.io/v1beta1"


@pytest.fixture
async def cluster(tmp_path: Path, netaudit: NetAudit) -> AsyncIterator[HollowMetrics]:
    async with hollow_metrics(tmp_path) as found:
        yield found


async def _get(cluster: HollowMetrics, path: str) -> tuple[int, Any]:
    return await cluster.api.request("GET", BASE + path)


async def test_discovery_lists_the_group(cluster: HollowMetrics) -> None:
    _code, groups = await cluster.api.request("GET", "/apis")
    group = next(g for g in groups["groups"] if g["name"] == "metrics.k8s.io")
    assert group["preferredVersion"]["version"] == "v1beta1"
    _code, resources = await cluster.api.request("GET", BASE)
    assert {(r["name"], r["kind"], tuple(r["verbs"])) for r in resources["resources"]} == {
        ("nodes", "NodeMetrics", ("get", "list")), ("pods", "PodMetrics", ("get", "list"))}


async def test_pod_metrics_follow_the_annotation(cluster: HollowMetrics) -> None:
    await cluster.run_pod("busy", cpu="250m", labels={"app": "web", "tier": "a"})
    await cluster.run_pod("idle", node="hollow-node-2", labels={"app": "web", "tier": "b"})

    async def both() -> Any:
        code, listed = await _get(cluster, "/namespaces/default/pods")
        return listed if code == 200 and len(listed["items"]) == 2 else None

    listed = await eventually(both, timeout=30)
    assert listed["kind"] == "PodMetricsList"
    busy = next(i for i in listed["items"] if i["metadata"]["name"] == "busy")
    assert busy["containers"] == [{"name": "app", "usage": {"cpu": "250000000n", "memory": "20480Ki"}}]
    assert busy["window"] == "0.3s" and busy["timestamp"].endswith("Z")
    assert busy["metadata"]["labels"] == {"app": "web", "tier": "a"}
    idle = next(i for i in listed["items"] if i["metadata"]["name"] == "idle")
    idle_cpu = int(idle["containers"][0]["usage"]["cpu"].rstrip("n"))
    assert 1_000_000 <= idle_cpu <= 5_000_000  # a plausible few milli-cores, stable per pod
    code, selected = await cluster.api.request("GET", BASE + "/namespaces/default/pods?labelSelector=tier%3Db")
    assert [i["metadata"]["name"] for i in selected["items"]] == ["idle"]
    code, one = await _get(cluster, "/namespaces/default/pods/busy")
    assert code == 200 and one["kind"] == "PodMetrics"
    code, everywhere = await _get(cluster, "/pods")
    assert {i["metadata"]["name"] for i in everywhere["items"]} == {"busy", "idle"}

    # A changed load shows at the next scrape.
    await cluster.client.patch(PODS, "busy", {"metadata": {"annotations": {"kubelab.dev/fake-cpu": "1"}}},
                               namespace="default")

    async def loaded() -> bool:
        code, obj = await _get(cluster, "/namespaces/default/pods/busy")
        return code == 200 and obj["containers"][0]["usage"]["cpu"] == "1000000000n"

    await eventually(loaded, timeout=30)


async def test_node_metrics_sum_their_pods(cluster: HollowMetrics) -> None:
    await cluster.run_pod("busy", cpu="500m")

    async def node() -> Any:
        code, obj = await _get(cluster, "/nodes/hollow-node-1")
        if code != 200:
            return None
        cpu = int(obj["usage"]["cpu"].rstrip("n"))
        return obj if cpu >= SimulatedStats.NODE_BASE_NANO_CORES + 500_000_000 else None

    obj = await eventually(node, timeout=30)
    assert obj["kind"] == "NodeMetrics" and obj["usage"]["memory"].endswith("Ki")
    _code, listed = await _get(cluster, "/nodes")
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == ["hollow-node-1", "hollow-node-2"]


async def test_missing_objects_and_other_verbs(cluster: HollowMetrics) -> None:
    code, status = await _get(cluster, "/namespaces/default/pods/nope")
    assert code == 404 and status["reason"] == "NotFound"
    assert status["message"] == 'pods.metrics.k8s.io "nope" not found'
    code, status = await cluster.api.request("DELETE", BASE + "/nodes/hollow-node-1")
    assert code == 405
