"""The HPA walkthrough's commands (``examples/tutorials/hpa``) on hollow nodes, driven by the real kubectl:
a quick check of the autoscaling path without Docker (``test_hpa_tutorial_docker.py`` runs the
walkthrough on real containers under real load).

The lab's manifest is applied as it is and the HPA made with the tutorial's ``kubectl autoscale``
and the lab's ``kubectl patch``; an in-process apiserver, scheduler and controller-manager (HPA
synced every 0.5 s) run the cluster. Hollow pods run no processes, so the
load generator's effect is simulated the way the metrics pipeline allows: the server's pods are
annotated ``kubelab.dev/fake-cpu`` (hot, then cool). The walkthrough's expectations are checked
with kubectl: ``get hpa`` targets, scale up under load, scale down to
one replica once the load stops (the test shortens the lab's 30 s window with ``kubectl patch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.testing import kubectl
from machinery.resources import PODS
from scheduler.scheduler import Scheduler
from tests.apiserver.hollow_metrics import HollowMetrics, hollow_metrics
from tests.controllers.helpers import manager
from tests.kubelet.conftest import eventually
from tests.netaudit import NetAudit, netaudit

__all__ = ["netaudit"]

pytestmark = [pytest.mark.kubectl, pytest.mark.usefixtures("netaudit")]
LAB = Path(__file__).resolve().parents[2] / "examples" / "tutorials" / "hpa"
WINDOW = '{{"spec":{{"behavior":{{"scaleDown":{{"stabilizationWindowSeconds":{seconds}}}}}}}}}'


@contextlib.asynccontextmanager
async def scheduler(cluster: HollowMetrics) -> AsyncIterator[None]:
    sched = Scheduler(cluster.client)
    task = asyncio.create_task(sched.run(), name="test-scheduler")
    await asyncio.wait_for(sched.ready.wait(), 30)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def cluster(tmp_path: Path, netaudit: NetAudit) -> AsyncIterator[HollowMetrics]:
    async with hollow_metrics(tmp_path) as found, scheduler(found), manager(
            found.client, controllers=("replicaset", "deployment", "horizontalpodautoscaling"),
            horizontal_pod_autoscaler_sync_period=0.5):
        yield found


async def run(cluster: HollowMetrics, *args: str) -> str:
    result = await asyncio.to_thread(kubectl, *args, kubeconfig=cluster.api.settings.kubeconfig_path)
    return result.stdout


async def hpa(cluster: HollowMetrics) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(await run(cluster, "get", "hpa", "php-apache", "-o", "json"))
    return found


async def set_load(cluster: HollowMetrics, cpu: str) -> None:
    pods = await cluster.client.list(PODS, namespace="default", label_selector="run=php-apache")
    for pod in pods["items"]:
        await cluster.client.patch(PODS, pod["metadata"]["name"], {"metadata": {"annotations": {
            "kubelab.dev/fake-cpu": cpu}}}, namespace="default")


async def test_walkthrough(cluster: HollowMetrics) -> None:
    await run(cluster, "apply", "-f", str(LAB / "php-apache.yaml"))
    await run(cluster, "rollout", "status", "deployment/php-apache", "--timeout=60s")
    await run(cluster, "autoscale", "deployment", "php-apache", "--cpu-percent=50", "--min=1", "--max=10")
    await run(cluster, "patch", "hpa", "php-apache", "--type=merge", "-p", WINDOW.format(seconds=30))

    async def measured() -> bool:
        line = (await run(cluster, "get", "hpa", "php-apache", "--no-headers")).split()
        return line[2] == "cpu:" and not line[3].startswith("<unknown>")

    await eventually(measured, timeout=60)
    assert (await hpa(cluster))["status"].get("currentReplicas", 1) == 1

    # Increase the load: the pod burns 250 % of its 200m request.
    await set_load(cluster, "500m")

    async def scaled_up() -> dict[str, Any] | None:
        obj = await hpa(cluster)
        return obj if obj["status"].get("desiredReplicas", 0) > 1 else None

    obj = await eventually(scaled_up, timeout=60)
    described = await run(cluster, "describe", "hpa", "php-apache")
    assert "cpu resource utilization (percentage of request) above target" in described
    await run(cluster, "rollout", "status", "deployment/php-apache", "--timeout=60s")
    assert json.loads(await run(cluster, "get", "deployment", "php-apache", "-o", "json"))["spec"]["replicas"] == \
        obj["status"]["desiredReplicas"]

    # Stop the load (and shorten the lab's window); the HPA holds, then returns to one replica.
    await run(cluster, "patch", "hpa", "php-apache", "--type=merge", "-p", WINDOW.format(seconds=3))
    await set_load(cluster, "2m")

    async def scaled_down() -> bool:
        obj = await hpa(cluster)
        return bool(obj["status"].get("desiredReplicas") == 1)

    await eventually(scaled_down, timeout=90)
    described = await run(cluster, "describe", "hpa", "php-apache")
    assert "All metrics below target" in described
