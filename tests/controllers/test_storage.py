"""Storage against the embedded apiserver: the PV binder, the local-path provisioner, the VolumeBinding
scheduler plugin and in-use protection working together, plus their bad inputs (a claim of a missing
class stays Pending with Kubernetes' event; static volumes bind by size, mode, class and selector;
released volumes follow their reclaim policy)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from machinery import errors
from machinery.client import ApiClient
from machinery.resources import EVENTS, NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS, STORAGECLASSES
from scheduler.scheduler import Scheduler
from tests.controllers.helpers import cluster, eventually, manager
from tests.scheduler.helpers import node

Obj = dict[str, Any]
STORAGE_CONTROLLERS = ("persistentvolume-binder", "local-path-provisioner", "storage-protection")


def claim(name: str, size: str = "1Gi", *, cls: str | None = None, selector: Obj | None = None) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def volume(name: str, size: str, *, cls: str = "manual", labels: dict[str, str] | None = None,
           policy: str = "Retain") -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": f"/tmp/kubelab-test-{name}"}}}


def pod_with(name: str, claim_name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]}}


async def get_claim(client: ApiClient, name: str) -> Obj:
    return await client.get(PERSISTENTVOLUMECLAIMS, name, namespace="default")


async def phase_is(client: ApiClient, name: str, phase: str) -> bool:
    return ((await get_claim(client, name)).get("status") or {}).get("phase") == phase


async def events_of(client: ApiClient, name: str) -> list[Obj]:
    items: list[Obj] = (await client.list(EVENTS, namespace="default",
                                          field_selector=f"involvedObject.name={name}"))["items"]
    return items


@contextlib.asynccontextmanager
async def scheduler(client: ApiClient) -> AsyncIterator[Scheduler]:
    sched = Scheduler(client)
    task = asyncio.create_task(sched.run(), name="test-scheduler")
    await asyncio.wait_for(sched.ready.wait(), 30)
    try:
        yield sched
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_claim_of_missing_class_stays_pending_with_event(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client, controllers=STORAGE_CONTROLLERS):
        await client.create(PERSISTENTVOLUMECLAIMS, claim("lost", cls="nosuch"))

        async def event_seen() -> bool:
            return any(e["reason"] == "ProvisioningFailed"
                       and e["message"] == 'storageclass.storage.k8s.io "nosuch" not found'
                       for e in await events_of(client, "lost"))
        await eventually(event_seen, what="ProvisioningFailed event")
        assert await phase_is(client, "lost", "Pending")


async def test_default_class_is_local_path_and_added_by_admission(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        sc = await client.get(STORAGECLASSES, "local-path")
        assert (sc["provisioner"], sc["volumeBindingMode"], sc["reclaimPolicy"]) == \
            ("rancher.io/local-path", "WaitForFirstConsumer", "Delete")
        made = await client.create(PERSISTENTVOLUMECLAIMS, claim("plain"))
        assert made["spec"]["storageClassName"] == "local-path"
        none = await client.create(PERSISTENTVOLUMECLAIMS, claim("none", cls=""))
        assert none["spec"]["storageClassName"] == "", "an explicit empty class means no class"


async def test_static_volume_binds_smallest_match_with_selector(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client, controllers=STORAGE_CONTROLLERS):
        await client.create(PERSISTENTVOLUMES, volume("big", "10Gi", labels={"tier": "gold"}))
        await client.create(PERSISTENTVOLUMES, volume("small", "2Gi", labels={"tier": "gold"}))
        await client.create(PERSISTENTVOLUMES, volume("tiny", "500Mi", labels={"tier": "gold"}))
        await client.create(PERSISTENTVOLUMES, volume("other", "1Gi", labels={"tier": "bronze"}))
        await client.create(PERSISTENTVOLUMECLAIMS, claim("data", "1Gi", cls="manual",
                                                          selector={"matchLabels": {"tier": "gold"}}))
        await eventually(lambda: phase_is(client, "data", "Bound"), what="claim bound")
        bound = await get_claim(client, "data")
        assert bound["spec"]["volumeName"] == "small"
        assert bound["status"]["capacity"] == {"storage": "2Gi"}
        assert bound["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
        assert "kubernetes.io/pvc-protection" in bound["metadata"]["finalizers"]
        pv = await client.get(PERSISTENTVOLUMES, "small")
        assert pv["status"]["phase"] == "Bound"
        assert pv["spec"]["claimRef"]["uid"] == bound["metadata"]["uid"]

        async def available(name: str) -> bool:
            return ((await client.get(PERSISTENTVOLUMES, name)).get("status") or {}).get("phase") == "Available"
        await eventually(lambda: available("big"), what="free volume Available")

        # Retain: deleting the claim releases the volume and keeps it.
        await client.delete(PERSISTENTVOLUMECLAIMS, "data", namespace="default")

        async def released() -> bool:
            return ((await client.get(PERSISTENTVOLUMES, "small")).get("status") or {}).get("phase") == "Released"
        await eventually(released, what="volume Released")


async def test_wait_for_first_consumer_provisions_on_the_selected_node(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    async with cluster(tmp_path / "api") as client, \
            manager(client, controllers=STORAGE_CONTROLLERS, storage_dir=storage), scheduler(client):
        await client.create(NODES, node("n1", labels={"kubernetes.io/hostname": "n1"}))
        await client.create(PERSISTENTVOLUMECLAIMS, claim("www"))

        async def waiting() -> bool:
            return any(e["reason"] == "WaitForFirstConsumer" for e in await events_of(client, "www"))
        await eventually(waiting, what="WaitForFirstConsumer event")
        assert await phase_is(client, "www", "Pending")

        await client.create(PODS, pod_with("web", "www"))
        await eventually(lambda: phase_is(client, "www", "Bound"), what="provisioned and bound")
        bound = await get_claim(client, "www")
        assert bound["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "n1"
        pv_name = bound["spec"]["volumeName"]
        assert pv_name == f"pvc-{bound['metadata']['uid']}"
        pv = await client.get(PERSISTENTVOLUMES, pv_name)
        path = Path(pv["spec"]["hostPath"]["path"])
        assert path == storage / f"{pv_name}_default_www"
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["n1"]
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert (await client.get(PODS, "web", namespace="default"))["spec"]["nodeName"] == "n1"

        # In use: deleting the claim waits for the pod (pvc-protection).
        path.mkdir(parents=True)
        (path / "index.html").write_text("kept while bound")
        await client.delete(PERSISTENTVOLUMECLAIMS, "www", namespace="default")
        await asyncio.sleep(1.0)  # give the protection controller a chance to (wrongly) let go
        assert (await get_claim(client, "www"))["metadata"].get("deletionTimestamp")
        assert path.exists()

        # The pod goes: the claim goes, the Delete volume and its directory go.
        await client.delete(PODS, "web", namespace="default", grace_period_seconds=0)

        async def volume_gone() -> bool:
            try:
                await client.get(PERSISTENTVOLUMES, pv_name)
            except errors.NotFoundError:
                return True
            return False
        await eventually(volume_gone, timeout=30, what="volume deleted")
        assert not path.exists()
        pvc_gone = True
        try:
            await get_claim(client, "www")
            pvc_gone = False
        except errors.NotFoundError:
            pass
        assert pvc_gone


async def test_bound_volume_pins_pods_to_its_node(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client, controllers=STORAGE_CONTROLLERS), scheduler(client):
        await client.create(NODES, node("a", labels={"kubernetes.io/hostname": "a"}))
        await client.create(NODES, node("b", labels={"kubernetes.io/hostname": "b"}))
        pv = volume("on-b", "1Gi")
        pv["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}
        await client.create(PERSISTENTVOLUMES, pv)
        await client.create(PERSISTENTVOLUMECLAIMS, claim("pinned", cls="manual"))
        await eventually(lambda: phase_is(client, "pinned", "Bound"), what="bound")
        for i in range(3):
            await client.create(PODS, pod_with(f"p{i}", "pinned"))

        async def all_on_b() -> bool:
            nodes = [(await client.get(PODS, f"p{i}", namespace="default"))["spec"].get("nodeName") for i in range(3)]
            return nodes == ["b", "b", "b"]
        await eventually(all_on_b, what="pods on the volume's node")


async def test_pod_with_missing_claim_is_unschedulable(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, scheduler(client):
        await client.create(NODES, node("a"))
        await client.create(PODS, pod_with("orphan", "nothere"))

        async def reported() -> bool:
            return any(e["reason"] == "FailedScheduling" and 'persistentvolumeclaim "nothere" not found' in e["message"]
                       for e in await events_of(client, "orphan"))
        await eventually(reported, what="FailedScheduling")
