"""The scheduler against a real (embedded) apiserver: binding, failure reporting, late nodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from machinery.client import ApiClient
from machinery.resources import EVENTS, NODES, PODS
from scheduler.scheduler import Scheduler
from tests.apiserver.conftest import embedded_api
from tests.scheduler.helpers import node, pod


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with embedded_api(tmp_path) as api, ApiClient.from_kubeconfig(api.settings.kubeconfig_path) as c:
        yield c


@contextlib.asynccontextmanager
async def running(client: ApiClient) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(client)
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(scheduler.ready.wait(), 10)
    try:
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def node_of(client: ApiClient, name: str) -> str:
    obj = await client.get(PODS, name, namespace="default")
    return str(obj["spec"].get("nodeName") or "")


async def test_pods_bind_to_fitting_nodes(client: ApiClient) -> None:
    await client.create(NODES, node("small", cpu="1"))
    await client.create(NODES, node("big", cpu="8"))
    async with running(client):
        await client.create(PODS, pod("web", cpu="2"))
        assert await eventually(lambda: node_of(client, "web")) == "big"
        events = await eventually(lambda: _events(client, "web", "Scheduled"))
        assert events[0]["message"].startswith("Successfully assigned default/web to big (score ")
        assert events[0]["source"]["component"] == "default-scheduler"


async def _events(client: ApiClient, pod_name: str, reason: str) -> list[dict[str, Any]]:
    items = (await client.list(EVENTS, namespace="default"))["items"]
    return [e for e in items if e["involvedObject"]["name"] == pod_name and e["reason"] == reason]


async def test_unschedulable_pod_reports_then_fits_a_new_node(client: ApiClient) -> None:
    taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    await client.create(NODES, node("cp", cpu="8", taints=[taint]))
    await client.create(NODES, node("n1", cpu="1"))
    await client.create(NODES, node("n2", cpu="1"))
    async with running(client):
        await client.create(PODS, pod("hungry", cpu="2"))
        expected = ("0/3 nodes are available: 1 node(s) had untolerated taint "
                    "{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are "
                    "available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for "
                    "incoming pod.")
        events = await eventually(lambda: _events(client, "hungry", "FailedScheduling"))
        assert events[0]["type"] == "Warning"
        assert events[0]["message"] == expected

        async def condition() -> dict[str, Any] | None:
            obj = await client.get(PODS, "hungry", namespace="default")
            return next((c for c in obj.get("status", {}).get("conditions") or []
                         if c["type"] == "PodScheduled"), None)

        cond = await eventually(condition)
        assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", expected)
        assert await node_of(client, "hungry") == ""
        await client.create(NODES, node("n3", cpu="4"))
        assert await eventually(lambda: node_of(client, "hungry"), timeout=15) == "n3"


@pytest.mark.parametrize(("pod_spec", "expected"), [
    pytest.param({"nodeSelector": {"disk": "ssd"}}, "ssd", id="node-selector"),
    pytest.param({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                  "nodeSelector": {"kind": "gpu"}}, "gpu", id="toleration"),
])
async def test_placement_rules(client: ApiClient, pod_spec: dict[str, Any], expected: str) -> None:
    await client.create(NODES, node("plain"))
    await client.create(NODES, node("ssd", labels={"disk": "ssd"}))
    await client.create(NODES, node("gpu", labels={"kind": "gpu"},
                                    taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]))
    async with running(client):
        await client.create(PODS, pod("p", **pod_spec))
        assert await eventually(lambda: node_of(client, "p")) == expected


async def test_required_anti_affinity_spreads_pods(client: ApiClient) -> None:
    for name in ("a", "b", "c"):
        await client.create(NODES, node(name))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    async with running(client):
        for i in range(4):
            await client.create(PODS, pod(f"db-{i}", labels={"app": "db"}, affinity=anti))

        async def placed() -> list[str]:
            return [await node_of(client, f"db-{i}") for i in range(4)]

        await eventually(lambda: _all_but_one(placed))
        nodes = [n for n in await placed() if n]
        assert sorted(nodes) == ["a", "b", "c"]
        events = await eventually(lambda: _events(client, "db-3", "FailedScheduling"))
        assert "3 node(s) didn't match pod anti-affinity rules" in events[0]["message"]


async def _all_but_one(placed: Callable[[], Awaitable[list[str]]]) -> bool:
    return sum(1 for n in await placed() if n) == 3
