"""A controller-manager against a real apiserver process that is killed (SIGKILL) in the middle of
a scale-up and stays away longer than the old retry budget, then is started again: the
controllers keep retrying (never dropping a key) and the cluster converges. Periodic resync is
off here: the retries alone must do it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from kubelab.testing import start_apiserver
from machinery.client import ApiClient
from machinery.resources import DEPLOYMENTS, PODS, REPLICASETS
from tests.controllers.helpers import eventually, manager, template

REPLICAS = 200
OLD_RETRY_BUDGET = 15
"""Retries after which a key used to be dropped."""


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template({"app": name})}}


async def test_controllers_converge_after_an_outage_longer_than_the_old_retry_budget(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_apiserver, tmp_path / "state", store="sqlite", timeout=60)
    client = ApiClient.from_kubeconfig(server.kubeconfig, timeout=5)
    try:
        async with manager(client, resync_seconds=0, retry_base_delay=0.01, retry_max_delay=0.1) as mgr:
            await eventually(lambda: _ready(mgr.running), what="controllers running")
            rs_controller = mgr.running["replicaset"]
            await client.create(DEPLOYMENTS, deployment("web", REPLICAS))
            # The apiserver dies as soon as the scale-up has started.
            await eventually(lambda: _some_pods(rs_controller), timeout=30, what="first pods")
            os.kill(server.pid, signal.SIGKILL)

            async def past_old_budget() -> bool:
                keys = ["default/web", *(rs["metadata"]["namespace"] + "/" + rs["metadata"]["name"]
                                        for rs in rs_controller.rs_informer.store.list())]
                queues = [mgr.running["deployment"].queue, rs_controller.queue]
                return any(q.num_requeues(k) > OLD_RETRY_BUDGET for q in queues for k in keys)
            await eventually(past_old_budget, timeout=60, what="a key retried more than 15 times")

            await asyncio.to_thread(server.restart)

            async def converged() -> bool:
                pods = (await client.list(PODS, namespace="default", label_selector="app=web"))["items"]
                [rs] = (await client.list(REPLICASETS, namespace="default"))["items"]
                d = await client.get(DEPLOYMENTS, "web", namespace="default")
                return (len(pods) == REPLICAS and (rs.get("status") or {}).get("replicas") == REPLICAS
                        and (d.get("status") or {}).get("replicas") == REPLICAS)
            await eventually(converged, timeout=120, what=f"{REPLICAS} pods after the outage")
    finally:
        await client.close()
        await asyncio.to_thread(server.stop)


async def _ready(running: dict[str, Any]) -> bool:
    await asyncio.sleep(0)
    return "replicaset" in running and "deployment" in running


async def _some_pods(rs_controller: Any) -> bool:
    await asyncio.sleep(0)
    return len(rs_controller.pod_informer.store) > 0
