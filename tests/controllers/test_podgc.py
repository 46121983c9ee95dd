"""Pod GC: which pods are collected (pure) and orphaned pods removed against the embedded apiserver."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from controllers.podgc import PodGCController, out_of_service, terminated_excess
from controllers.settings import ControllerManagerSettings
from machinery.client import InformerFactory
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import NODES, PODS
from tests.controllers.helpers import eventually, running_controller

NS = "default"


def _pod(name: str, phase: str, created: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "creationTimestamp": created}, "status": {"phase": phase}}


@pytest.mark.parametrize("threshold, expected", [
    pytest.param(1, ["old", "mid"], id="oldest-first"),
    pytest.param(3, [], id="under-threshold"),
    pytest.param(0, [], id="disabled"),
])
def test_terminated_excess(threshold: int, expected: list[str]) -> None:
    pods = [_pod("new", "Succeeded", "2024-01-03T00:00:00Z"), _pod("old", "Failed", "2024-01-01T00:00:00Z"),
            _pod("mid", "Succeeded", "2024-01-02T00:00:00Z"), _pod("running", "Running", "2023-01-01T00:00:00Z")]
    assert [p["metadata"]["name"] for p in terminated_excess(pods, threshold)] == expected


@pytest.mark.parametrize("node, expected", [
    pytest.param({"spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}]},
                  "status": {"conditions": [{"type": "Ready", "status": "False"}]}}, True, id="tainted-not-ready"),
    pytest.param({"spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}]},
                  "status": {"conditions": [{"type": "Ready", "status": "True"}]}}, False, id="tainted-ready"),
    pytest.param({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, False, id="not-tainted"),
])
def test_out_of_service(node: dict[str, Any], expected: bool) -> None:
    assert out_of_service(node) is expected


def running(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> Any:
        return PodGCController(client, factory, ControllerManagerSettings(), period=0.1, quarantine=0.3)

    return running_controller(tmp_path, make, workers=1, name="podgc")



async def _bound_pod(client: ApiClient, name: str, node: str) -> None:
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                               "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})


async def _gone(client: ApiClient, name: str) -> bool:
    try:
        await client.get(PODS, name, namespace=NS)
    except NotFoundError:
        return True
    return False


async def test_pods_of_a_deleted_node_are_removed(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}})
        await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"}})
        await _bound_pod(client, "on-a", "node-a")
        await _bound_pod(client, "on-b", "node-b")
        await client.delete(PODS, "on-a", namespace=NS)  # terminating: stuck without a kubelet
        await client.delete(NODES, "node-a")
        await eventually(lambda: _gone(client, "on-a"))
        await asyncio.sleep(0.5)  # a window for a wrong removal of the pod on the live node to show
        assert not await _gone(client, "on-b")


async def test_pod_bound_to_a_node_that_never_existed_is_removed_after_quarantine(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        await _bound_pod(client, "lost", "no-such-node")
        await asyncio.sleep(0.15)  # inside the quarantine: the pod must still be there
        assert not await _gone(client, "lost")
        await eventually(lambda: _gone(client, "lost"))


async def test_force_deleted_pods_are_failed_first(tmp_path: Path) -> None:
    """A pod held by a finalizer shows the terminal phase podgc gave it (a Job replacing only failed
    pods waits for it); an orphan also gets the DisruptionTarget condition."""
    async with running(tmp_path) as client:
        held = {"finalizers": ["example.com/hold"]}
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unscheduled",
                                                                                    "namespace": NS, **held},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "namespace": NS,
                                                                                    **held},
                                   "spec": {"nodeName": "no-such-node", "containers": [{"name": "c",
                                                                                         "image": "busybox"}]}})
        await client.delete(PODS, "unscheduled", namespace=NS)

        async def failed(name: str) -> bool:
            return ((await client.get(PODS, name, namespace=NS)).get("status") or {}).get("phase") == "Failed"
        await eventually(lambda: failed("unscheduled"), what="the unscheduled terminating pod failed")
        await eventually(lambda: failed("orphan"), what="the orphan failed")
        conditions = (await client.get(PODS, "orphan", namespace=NS))["status"].get("conditions") or []
        assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [
            ("DisruptionTarget", "True", "DeletionByPodGC")]
        for name in ("unscheduled", "orphan"):
            await client.patch(PODS, name, {"metadata": {"finalizers": None}}, namespace=NS)
