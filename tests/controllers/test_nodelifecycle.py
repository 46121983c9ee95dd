"""Node lifecycle: taint/toleration rules (pure) and heartbeat loss -> Unknown, taints, eviction,
recovery, against the embedded apiserver with shortened timings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controllers.nodelifecycle import NodeLifecycleController, unknown_conditions
from controllers.settings import ControllerManagerSettings
from controllers.taint_eviction import desired_taints, eviction_delay, tolerates
from machinery.client.informer import InformerFactory
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import LEASES, NODES, PODS
from tests.apiserver.conftest import embedded_api

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"}
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
DEFAULTS = {"node.kubernetes.io/unreachable": 300.0, "node.kubernetes.io/not-ready": 300.0}


def _node(ready: str | None, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": ready}] if ready else []
    return {"metadata": {"name": "n"}, "spec": {"taints": taints or []}, "status": {"conditions": conditions}}


@pytest.mark.parametrize("ready, keys", [
    pytest.param("True", [], id="ready"),
    pytest.param("Unknown", [("node.kubernetes.io/unreachable", "NoSchedule"),
                             ("node.kubernetes.io/unreachable", "NoExecute")], id="unknown"),
    pytest.param("False", [("node.kubernetes.io/not-ready", "NoSchedule"),
                           ("node.kubernetes.io/not-ready", "NoExecute")], id="not-ready"),
    pytest.param(None, [("node.kubernetes.io/unreachable", "NoSchedule"),
                        ("node.kubernetes.io/unreachable", "NoExecute")], id="never-reported"),
])
def test_desired_taints_follow_ready(ready: str | None, keys: list[tuple[str, str]]) -> None:
    node = _node(ready, [dict(NOT_READY), {"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    taints = desired_taints(node, "2024-01-02T00:00:00Z")
    assert taints[0]["key"] == "dedicated"
    assert [(t["key"], t["effect"]) for t in taints[1:]] == keys


def test_desired_taints_keep_time_added() -> None:
    taints = desired_taints(_node("Unknown", [dict(UNREACHABLE)]), "2024-02-02T00:00:00Z")
    assert [t.get("timeAdded") for t in taints if t["effect"] == "NoExecute"] == ["2024-01-01T00:00:00Z"]


@pytest.mark.parametrize("toleration, expected", [
    pytest.param({"operator": "Exists"}, True, id="wildcard"),
    pytest.param({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}, True,
                 id="key-exists"),
    pytest.param({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}, False,
                 id="other-effect"),
    pytest.param({"key": "node.kubernetes.io/not-ready", "operator": "Exists"}, False, id="other-key"),
    pytest.param({"key": "node.kubernetes.io/unreachable", "value": "x"}, False, id="equal-value-differs"),
])
def test_tolerates(toleration: dict[str, Any], expected: bool) -> None:
    assert tolerates(toleration, UNREACHABLE) is expected


@pytest.mark.parametrize("tolerations, taints, expected", [
    pytest.param([], [UNREACHABLE], 300.0, id="default-toleration"),
    pytest.param([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                   "tolerationSeconds": 5}], [UNREACHABLE], 5.0, id="own-seconds"),
    pytest.param([{"operator": "Exists"}], [UNREACHABLE], None, id="tolerates-forever"),
    pytest.param([], [{"key": "gpu", "effect": "NoExecute"}], 0.0, id="untolerated-taint-now"),
    pytest.param([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 9},
                  {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 4}],
                 [UNREACHABLE, NOT_READY], 4.0, id="minimum-of-used"),
    pytest.param([], [{"key": "x", "effect": "NoSchedule"}], None, id="noschedule-ignored"),
])
def test_eviction_delay(tolerations: list[dict[str, Any]], taints: list[dict[str, Any]],
                        expected: float | None) -> None:
    assert eviction_delay({"spec": {"tolerations": tolerations}}, taints, DEFAULTS) == expected


def test_unknown_conditions() -> None:
    node = {"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "h"}]}}
    conditions = unknown_conditions(node, "now")
    assert conditions is not None
    ready = conditions[0]
    assert (ready["status"], ready["reason"], ready["message"], ready["lastHeartbeatTime"]) == (
        "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", "h")
    assert {c["type"] for c in conditions} == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert unknown_conditions({"status": {"conditions": conditions}}, "later") is None


# ---- against the apiserver ----------------------------------------------------------------
NS = "default"


def _micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeKubelet:
    """Just enough of a kubelet: a Node with Ready=True and a renewed Lease."""

    def __init__(self, client: ApiClient, name: str) -> None:
        self.client = client
        self.name = name
        self.task: asyncio.Task[None] | None = None

    async def register(self) -> None:
        await self.client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name}})
        await self.post_ready()
        await self.client.create(LEASES, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": _micro()}})

    async def post_ready(self) -> None:
        node = await self.client.get(NODES, self.name)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        node["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                          "lastHeartbeatTime": now, "lastTransitionTime": now}]}
        await self.client.update(NODES, node, subresource="status")

    async def _renew(self) -> None:
        while True:
            lease = await self.client.get(LEASES, self.name, namespace="kube-node-lease")
            lease["spec"]["renewTime"] = _micro()
            await self.client.update(LEASES, lease)
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self.task = asyncio.create_task(self._renew(), name=f"fake-kubelet-{self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


SETTINGS = ControllerManagerSettings(node_monitor_grace_period=0.6, node_monitor_period=0.1,
                                     default_unreachable_toleration_seconds=2,
                                     default_not_ready_toleration_seconds=2)


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[ApiClient, FakeKubelet]]:
    # The apiserver's DefaultTolerationSeconds admission gives pods the same lab-shortened 2 s.
    async with embedded_api(tmp_path, default_not_ready_toleration_seconds=2,
                            default_unreachable_toleration_seconds=2) as api:
        client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        kubelet = FakeKubelet(client, "node-a")
        await kubelet.register()
        kubelet.start()
        factory = InformerFactory(client)
        controller = NodeLifecycleController(client, factory, SETTINGS)
        await factory.start()
        await factory.wait_synced()
        task = asyncio.create_task(controller.run(1), name="test-nodelifecycle")
        try:
            yield client, kubelet
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await kubelet.stop()
            await factory.stop()
            await client.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _pod(client: ApiClient, name: str, tolerations: list[dict[str, Any]]) -> None:
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                               "spec": {"nodeName": "node-a", "tolerations": tolerations,
                                        "containers": [{"name": "c", "image": "busybox"}]}})
    pod = await client.get(PODS, name, namespace=NS)
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    await client.update(PODS, pod, subresource="status")


async def _evicted(client: ApiClient, name: str) -> bool:
    try:
        pod = await client.get(PODS, name, namespace=NS)
    except NotFoundError:
        return True
    return bool(pod["metadata"].get("deletionTimestamp"))


async def _taint_keys(client: ApiClient) -> list[tuple[str, str]]:
    node = await client.get(NODES, "node-a")
    return sorted((t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or [])


UNREACHABLE_TAINTS = [("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")]


async def test_lost_heartbeat_marks_unknown_taints_and_evicts_after_toleration(tmp_path: Path) -> None:
    async with running(tmp_path) as (client, kubelet):
        forever = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
        await _pod(client, "default-toleration", [])
        await _pod(client, "stays", forever)
        await asyncio.sleep(1.0)
        assert await _taint_keys(client) == []  # heartbeats keep it healthy
        await kubelet.stop()

        async def tainted() -> bool:
            return await _taint_keys(client) == UNREACHABLE_TAINTS
        await eventually(tainted)
        node = await client.get(NODES, "node-a")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
        pod = await client.get(PODS, "stays", namespace=NS)
        assert [c["status"] for c in pod["status"]["conditions"] if c["type"] == "Ready"] == ["False"]
        assert not await _evicted(client, "default-toleration")  # 2 s default toleration still running
        await eventually(lambda: _evicted(client, "default-toleration"))
        await asyncio.sleep(0.3)
        assert not await _evicted(client, "stays")


async def test_resumed_heartbeat_removes_taints(tmp_path: Path) -> None:
    async with running(tmp_path) as (client, kubelet):
        await kubelet.stop()

        async def tainted() -> bool:
            return await _taint_keys(client) == UNREACHABLE_TAINTS
        await eventually(tainted)
        kubelet.start()
        await kubelet.post_ready()

        async def clean() -> bool:
            return await _taint_keys(client) == []
        await eventually(clean)
        await asyncio.sleep(1.0)  # stays healthy while the lease is renewed
        assert await _taint_keys(client) == []
