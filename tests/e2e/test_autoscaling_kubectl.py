"""``kubectl top`` and ``kubectl autoscale`` / ``get hpa`` with every pinned kubectl (1.27-1.33).

An in-process apiserver scrapes hollow nodes whose pods report the CPU their
``kubelab.dev/fake-cpu`` annotation says; kubectl runs as a subprocess (in a worker thread, so the
apiserver in this event loop keeps answering).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.testing import KubectlError, kubectl, kubectl_versions
from machinery.resources import DEPLOYMENTS
from tests.apiserver.hollow_metrics import HollowMetrics, hollow_metrics
from tests.controllers.helpers import manager
from tests.kubelet.conftest import eventually
from tests.netaudit import NetAudit, netaudit

__all__ = ["netaudit"]

pytestmark = [pytest.mark.kubectl, pytest.mark.usefixtures("netaudit")]


@pytest.fixture
async def cluster(tmp_path: Path, netaudit: NetAudit) -> AsyncIterator[HollowMetrics]:
    async with hollow_metrics(tmp_path) as found:
        yield found


async def run(cluster: HollowMetrics, *args: str, version: str | None = None) -> str:
    result = await asyncio.to_thread(kubectl, *args, kubeconfig=cluster.api.settings.kubeconfig_path,
                                     version=version)
    return result.stdout


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


async def test_kubectl_top_nodes_and_pods(cluster: HollowMetrics) -> None:
    await cluster.run_pod("busy", cpu="250m", labels={"app": "web"})
    await cluster.run_pod("quiet", node="hollow-node-2", cpu="20m", labels={"app": "db"})

    async def ready() -> bool:
        # Until the first scrape, kubectl says "metrics not available yet" (exit 1), as with metrics-server.
        try:
            text = await run(cluster, "top", "pods", "-A")
        except KubectlError:
            return False
        return "busy" in text and "quiet" in text

    await eventually(ready, timeout=60)
    for version in kubectl_versions():
        nodes = rows(await run(cluster, "top", "nodes", version=version))
        assert nodes[0][:2] == ["NAME", "CPU(cores)"] and nodes[0][2] in ("CPU%", "CPU(%)"), version
        assert sorted(r[0] for r in nodes[1:]) == ["hollow-node-1", "hollow-node-2"], version
        pods = rows(await run(cluster, "top", "pods", "-l", "app=web", "--containers", version=version))
        assert pods == [["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"], ["busy", "app", "250m", "20Mi"]], version
        everywhere = rows(await run(cluster, "top", "pods", "-A", version=version))
        assert ["default", "quiet", "20m", "20Mi"] in everywhere, version


def web(cpu: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"kubelab.dev/fake-cpu": cpu}},
                "spec": {"nodeName": "hollow-node-1", "containers": [{
                    "name": "app", "image": "kubelab/nginx:1.22", "resources": {"requests": {"cpu": "100m"}}}]}}}}


async def test_kubectl_autoscale_and_get_hpa(cluster: HollowMetrics) -> None:
    await cluster.client.create(DEPLOYMENTS, web("30m"))
    for version in kubectl_versions():
        created = await run(cluster, "autoscale", "deploy", "web", "--cpu-percent=50", "--min=1", "--max=5",
                            version=version)
        assert "horizontalpodautoscaler.autoscaling/web autoscaled" in created, version
        table = rows(await run(cluster, "get", "hpa", version=version))
        assert table[0] == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"], version
        assert table[1][:2] == ["web", "Deployment/web"], version
        assert " ".join(table[1][2:4]) == "cpu: <unknown>/50%", version
        await run(cluster, "delete", "hpa", "web", version=version)
    # With the controller, the targets fill in.
    async with manager(cluster.client, controllers=("replicaset", "deployment", "horizontalpodautoscaling"),
                       horizontal_pod_autoscaler_sync_period=0.5):
        await run(cluster, "autoscale", "deploy", "web", "--cpu-percent=50", "--min=1", "--max=5")

        async def measured() -> bool:
            table = rows(await run(cluster, "get", "hpa", "web"))
            return " ".join(table[1][2:4]) == "cpu: 30%/50%"

        await eventually(measured, timeout=60)
        described = await run(cluster, "describe", "hpa", "web")
        assert "ScalingActive" in described and "ValidMetricFound" in described
