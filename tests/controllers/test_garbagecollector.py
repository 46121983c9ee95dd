"""Garbage collector: the ownership graph (pure) and Background / Orphan / Foreground deletion
against the embedded apiserver."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from controllers.garbagecollector import GarbageCollectorController
from controllers.gc_graph import OwnerGraph, deletion_policy, without_owner
from controllers.settings import ControllerManagerSettings
from machinery.client import InformerFactory
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import CONFIGMAPS, PODS, REPLICASETS, ResourceInfo
from tests.controllers.helpers import eventually, running_controller

NS = "default"


# ---- pure graph ---------------------------------------------------------------------------
def _obj(uid: str, *owners: str, block: bool = False, deleting: bool = False,
         finalizers: tuple[str, ...] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"n-{uid}", "namespace": NS, "uid": uid,
                            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"n-{o}",
                                                 "uid": o, "blockOwnerDeletion": block} for o in owners]}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return {"metadata": meta}


def test_graph_tracks_dependents_and_reparenting() -> None:
    graph = OwnerGraph()
    graph.observe(CONFIGMAPS, _obj("owner"))
    graph.observe(CONFIGMAPS, _obj("a", "owner", block=True))
    graph.observe(CONFIGMAPS, _obj("b", "owner"))
    assert [d.uid for d in graph.dependents("owner")] == ["a", "b"]
    assert [d.uid for d in graph.blocking_dependents("owner")] == ["a"]
    graph.observe(CONFIGMAPS, _obj("a", "other"))
    assert [d.uid for d in graph.dependents("owner")] == ["b"]
    node_a = graph.node("a")
    assert node_a is not None and graph.unobserved_owners(node_a)[0]["uid"] == "other"
    graph.forget(_obj("b"))
    assert graph.dependents("owner") == []


@pytest.mark.parametrize("obj, waiting, orphaning", [
    pytest.param(_obj("x"), False, False, id="live"),
    pytest.param(_obj("x", deleting=True, finalizers=("foregroundDeletion",)), True, False, id="foreground"),
    pytest.param(_obj("x", deleting=True, finalizers=("orphan",)), False, True, id="orphan"),
    pytest.param(_obj("x", finalizers=("orphan",)), False, False, id="finalizer-not-deleting"),
])
def test_node_deletion_modes(obj: dict[str, Any], waiting: bool, orphaning: bool) -> None:
    node = OwnerGraph().observe(CONFIGMAPS, obj)
    assert node is not None
    assert (node.deleting_dependents, node.orphaning) == (waiting, orphaning)


@pytest.mark.parametrize("finalizers, policy", [
    pytest.param((), "Background", id="none"),
    pytest.param(("orphan",), "Orphan", id="orphan"),
    pytest.param(("foregroundDeletion",), "Foreground", id="foreground"),
])
def test_deletion_policy(finalizers: tuple[str, ...], policy: str) -> None:
    assert deletion_policy(finalizers) == policy


def test_without_owner() -> None:
    refs = [{"uid": "a"}, {"uid": "b"}]
    assert without_owner(refs, {"a"}) == [{"uid": "b"}]


# ---- against the apiserver ----------------------------------------------------------------
def running(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> Any:
        return GarbageCollectorController(client, factory, ControllerManagerSettings())

    return running_controller(tmp_path, make, workers=4, name="gc")



async def gone(client: ApiClient, resource: ResourceInfo, name: str) -> bool:
    try:
        await client.get(resource, name, namespace=NS)
    except NotFoundError:
        return True
    return False


def _ref(owner: dict[str, Any], *, block: bool = True, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": block}


async def _replicaset(client: ApiClient, name: str = "web") -> dict[str, Any]:
    labels = {"app": name}
    return await client.create(REPLICASETS, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})


async def _pod(client: ApiClient, name: str, refs: list[dict[str, Any]], node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                      "metadata": {"name": name, "namespace": NS, "ownerReferences": refs},
                                      "spec": spec})


async def _configmap(client: ApiClient, name: str, refs: list[dict[str, Any]]) -> dict[str, Any]:
    return await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": name, "namespace": NS, "ownerReferences": refs}})


async def test_background_deletion_removes_dependents(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        rs = await _replicaset(client)
        await _pod(client, "web-1", [_ref(rs)])
        await _configmap(client, "web-cm", [_ref(rs, block=False)])
        await client.delete(REPLICASETS, "web", namespace=NS, propagation_policy="Background")
        await eventually(lambda: gone(client, PODS, "web-1"))
        await eventually(lambda: gone(client, CONFIGMAPS, "web-cm"))


async def test_dependent_created_for_missing_owner_is_collected(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        ghost = {"metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000001"}}
        await _configmap(client, "stray", [_ref(ghost)])
        await eventually(lambda: gone(client, CONFIGMAPS, "stray"))


async def test_dependent_with_a_live_owner_only_loses_the_dead_reference(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        keep = await _replicaset(client, "keep")
        drop = await _replicaset(client, "drop")
        await _configmap(client, "shared", [_ref(keep, block=False), _ref(drop, block=False, controller=False)])
        await client.delete(REPLICASETS, "drop", namespace=NS)

        async def released() -> bool:
            refs = (await client.get(CONFIGMAPS, "shared", namespace=NS))["metadata"].get("ownerReferences")
            return [r["name"] for r in refs or []] == ["keep"]
        await eventually(released)


async def test_orphan_deletion_keeps_dependents_without_owner_references(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        rs = await _replicaset(client)
        await _pod(client, "web-1", [_ref(rs)])
        await client.delete(REPLICASETS, "web", namespace=NS, propagation_policy="Orphan")
        await eventually(lambda: gone(client, REPLICASETS, "web"))
        pod = await client.get(PODS, "web-1", namespace=NS)
        assert not pod["metadata"].get("ownerReferences")
        assert not pod["metadata"].get("deletionTimestamp")


async def test_foreground_deletion_keeps_owner_until_dependents_are_gone(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        rs = await _replicaset(client)
        # Bound to a node nobody runs: its deletion stays graceful until confirmed below.
        await _pod(client, "web-1", [_ref(rs)], node="node-a")
        await client.delete(REPLICASETS, "web", namespace=NS, propagation_policy="Foreground")

        async def pod_terminating() -> bool:
            return bool((await client.get(PODS, "web-1", namespace=NS))["metadata"].get("deletionTimestamp"))
        await eventually(pod_terminating)
        await asyncio.sleep(0.3)  # a window for a wrong early removal of the finalizer to show
        owner = await client.get(REPLICASETS, "web", namespace=NS)
        assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]
        await client.delete(PODS, "web-1", namespace=NS, grace_period_seconds=0)  # the kubelet's confirmation
        await eventually(lambda: gone(client, REPLICASETS, "web"))
