"""StatefulSet controller against the embedded apiserver: ordered creation and scale-down, Parallel,
stable identity and claims, rolling update with partition, OnDelete, revisions, expectations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers.controllerrevision import REVISION_LABEL
from controllers.settings import ControllerManagerSettings
from controllers.statefulset import StatefulSetController
from machinery.client import ApiClient, InformerFactory
from machinery.meta import object_key
from machinery.resources import CONTROLLERREVISIONS, PODS, STATEFULSETS, lookup
from tests.controllers.helpers import cluster, eventually, mark_ready, pods, running_controller

Obj = dict[str, Any]


def _sts(name: str = "web", replicas: int = 3, **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "serviceName": "nginx", "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}, **spec}}


@contextlib.asynccontextmanager
async def _running(tmp_path: Path) -> AsyncIterator[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> StatefulSetController:
        return StatefulSetController(client, factory, ControllerManagerSettings())
    async with running_controller(tmp_path, make, name="statefulset") as client:
        yield client


class DeletionOrder:
    """Records the names of pods as DELETED events arrive."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.deleted: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DeletionOrder:
        rv = (await self.client.list(PODS, namespace="default"))["metadata"]["resourceVersion"]

        async def run() -> None:
            async for event in self.client.watch(PODS, namespace="default", resource_version=rv):
                if event.type == "DELETED":
                    self.deleted.append(event.object["metadata"]["name"])
        self._task = asyncio.create_task(run(), name="deletion-order")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class Kubelet:
    """Plays the nodes, recording the order in which pods appear and go."""

    def __init__(self, client: ApiClient, selector: str) -> None:
        self.client, self.selector = client, selector
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.live: set[str] = set()

    async def step(self, *, ready: bool = True) -> set[str]:
        items = await pods(self.client, self.selector, active=False)
        names = set()
        for pod in items:
            name = pod["metadata"]["name"]
            names.add(name)
            if name not in self.live:
                self.created.append(name)
            if pod["metadata"].get("deletionTimestamp"):
                continue
            if ready and (pod.get("status") or {}).get("phase") != "Running":
                await mark_ready(self.client, pod)
        for gone in self.live - names:
            self.deleted.append(gone)
        self.live = names
        return {n for n in names}


async def test_ordered_ready_creates_in_order_with_stable_identity(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(STATEFULSETS, _sts(replicas=3))
        kubelet = Kubelet(client, "app=web")

        async def three_ready() -> bool:
            await kubelet.step()
            st = (await client.get(STATEFULSETS, "web", namespace="default")).get("status") or {}
            return st.get("readyReplicas") == 3
        await eventually(three_ready, timeout=30, what="3 ready pods")
        assert kubelet.created == ["web-0", "web-1", "web-2"]
        pod = await client.get(PODS, "web-1", namespace="default")
        assert pod["spec"]["hostname"] == "web-1" and pod["spec"]["subdomain"] == "nginx"
        labels = pod["metadata"]["labels"]
        assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
        assert labels["apps.kubernetes.io/pod-index"] == "1"
        st = (await client.get(STATEFULSETS, "web", namespace="default"))["status"]
        assert labels[REVISION_LABEL] == st["updateRevision"] == st["currentRevision"]
        assert (st["replicas"], st["currentReplicas"], st["updatedReplicas"], st["availableReplicas"]) == (3, 3, 3, 3)
        revisions = (await client.list(CONTROLLERREVISIONS, namespace="default"))["items"]
        assert [r["metadata"]["name"] for r in revisions] == [st["updateRevision"]]
        assert revisions[0]["revision"] == 1

        # Scale down: highest ordinal first, one at a time (the watch sees the deletions in order).
        async with DeletionOrder(client) as order:
            await client.patch(STATEFULSETS, "web", {"spec": {"replicas": 1}}, namespace="default")

            async def one_left() -> bool:
                return await kubelet.step() == {"web-0"} and len(order.deleted) == 2
            await eventually(one_left, timeout=30, what="scaled down to web-0")
        assert order.deleted == ["web-2", "web-1"]


async def test_ordered_ready_waits_for_each_pod(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(STATEFULSETS, _sts(replicas=3))

        async def first() -> bool:
            return len(await pods(client, "app=web")) == 1
        await eventually(first, what="web-0")
        kubelet = Kubelet(client, "app=web")
        await kubelet.step(ready=False)
        # web-0 is not Ready: web-1 must not appear; then it becomes Ready and web-1 follows.
        assert {p["metadata"]["name"] for p in await pods(client, "app=web")} == {"web-0"}
        await mark_ready(client, await client.get(PODS, "web-0", namespace="default"))

        async def second() -> bool:
            return {p["metadata"]["name"] for p in await pods(client, "app=web")} == {"web-0", "web-1"}
        await eventually(second, what="web-1 after web-0 is Ready")


async def test_parallel_creates_all_at_once(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(STATEFULSETS, _sts(replicas=4, podManagementPolicy="Parallel"))

        async def four() -> bool:
            return len(await pods(client, "app=web")) == 4
        await eventually(four, what="4 pods without any being Ready")


@pytest.mark.parametrize(("partition", "updated"), [
    pytest.param(0, {"web-0", "web-1", "web-2"}, id="all"),
    pytest.param(2, {"web-2"}, id="partition-2"),
])
async def test_rolling_update_from_the_highest_ordinal_down_to_the_partition(
        tmp_path: Path, partition: int, updated: set[str]) -> None:
    async with _running(tmp_path) as client:
        await client.create(STATEFULSETS, _sts(replicas=3, updateStrategy={
            "type": "RollingUpdate", "rollingUpdate": {"partition": partition}}))
        kubelet = Kubelet(client, "app=web")

        async def ready3() -> bool:
            await kubelet.step()
            st = (await client.get(STATEFULSETS, "web", namespace="default")).get("status") or {}
            return st.get("readyReplicas") == 3
        await eventually(ready3, timeout=30, what="3 ready")
        old = (await client.get(STATEFULSETS, "web", namespace="default"))["status"]["updateRevision"]
        await client.patch(STATEFULSETS, "web", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "nginx:2"}]}}}}, namespace="default", patch_type="strategic")
        order = await DeletionOrder(client).__aenter__()

        async def rolled() -> bool:
            await kubelet.step()
            st = (await client.get(STATEFULSETS, "web", namespace="default")).get("status") or {}
            live = {p["metadata"]["name"]: p for p in await pods(client, "app=web")}
            new = {n for n, p in live.items() if p["metadata"]["labels"][REVISION_LABEL] == st.get("updateRevision")}
            return st.get("updateRevision") != old and new == updated and st.get("readyReplicas") == 3 \
                and len(live) == 3
        await eventually(rolled, timeout=60, what="rolled to the partition")
        await order.__aexit__()
        assert order.deleted == sorted(updated, reverse=True)
        st = (await client.get(STATEFULSETS, "web", namespace="default"))["status"]
        assert st["updatedReplicas"] == len(updated)
        assert (st["currentRevision"] == st["updateRevision"]) is (partition == 0)
        image = (await client.get(PODS, "web-0", namespace="default"))["spec"]["containers"][0]["image"]
        assert image == ("nginx:2" if partition == 0 else "nginx:1")


async def test_on_delete_replaces_only_deleted_pods(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(STATEFULSETS, _sts(replicas=2, updateStrategy={"type": "OnDelete"}))
        kubelet = Kubelet(client, "app=web")

        async def ready2() -> bool:
            await kubelet.step()
            st = (await client.get(STATEFULSETS, "web", namespace="default")).get("status") or {}
            return st.get("readyReplicas") == 2
        await eventually(ready2, timeout=30, what="2 ready")
        await client.patch(STATEFULSETS, "web", {"spec": {"template": {"metadata": {"labels": {"app": "web",
                                                                                              "v": "2"}}}}},
                           namespace="default")

        async def new_revision() -> bool:
            st = (await client.get(STATEFULSETS, "web", namespace="default")).get("status") or {}
            return st.get("updateRevision") != st.get("currentRevision")
        await eventually(new_revision, what="a new update revision")
        assert all("v" not in p["metadata"]["labels"] for p in await pods(client, "app=web"))
        await client.delete(PODS, "web-1", namespace="default")

        async def replaced() -> bool:
            await kubelet.step()
            try:
                pod = await client.get(PODS, "web-1", namespace="default")
            except Exception:
                return False
            return bool(pod["metadata"]["labels"].get("v") == "2")
        await eventually(replaced, timeout=30, what="web-1 recreated at the new revision")
        assert "v" not in (await client.get(PODS, "web-0", namespace="default"))["metadata"]["labels"]


async def test_claims_from_templates_named_per_ordinal(tmp_path: Path) -> None:
    pvcs = lookup("", "v1", "persistentvolumeclaims")
    if pvcs is None:
        pytest.skip("persistentvolumeclaims are not served by this build")
    async with _running(tmp_path) as client:
        claim = {"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                       "resources": {"requests": {"storage": "1Gi"}}}}
        await client.create(STATEFULSETS, _sts(replicas=2, podManagementPolicy="Parallel",
                                               volumeClaimTemplates=[claim]))

        async def claimed() -> bool:
            names = {c["metadata"]["name"] for c in (await client.list(pvcs, namespace="default"))["items"]}
            return names == {"www-web-0", "www-web-1"}
        await eventually(claimed, what="claims www-web-0/1")
        pod = await client.get(PODS, "web-1", namespace="default")
        assert {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}} in pod["spec"]["volumes"]


async def test_statefulset_sync_before_the_cache_catches_up_creates_nothing(tmp_path: Path) -> None:
    """Without expectations, a sync on a stale pod cache would create web-0 again."""
    async with cluster(tmp_path) as client:
        ctl = StatefulSetController(client, InformerFactory(client), ControllerManagerSettings())
        sts = await client.create(STATEFULSETS, _sts(replicas=2, podManagementPolicy="Parallel"),
                                  namespace="default")
        key = object_key(sts)

        async def sync() -> None:
            ctl.sts_informer.store.upsert(await client.get(STATEFULSETS, "web", namespace="default"))
            for rev in (await client.list(CONTROLLERREVISIONS, namespace="default"))["items"]:
                ctl.history.informer.store.upsert(rev)
            await ctl.sync(key)
        await sync()
        created = await pods(client, "app=web")
        assert {p["metadata"]["name"] for p in created} == {"web-0", "web-1"}
        creates: list[str] = []
        real_create = client.create

        async def counting_create(resource: Any, obj: Obj, **kw: Any) -> Obj:
            creates.append(obj["metadata"].get("name", ""))
            return await real_create(resource, obj, **kw)
        ctl.client.create = counting_create  # type: ignore[method-assign]
        await sync()  # the pod cache is still empty: an unguarded sync would create web-0/web-1 again
        assert creates == [], "created again from a stale cache"
        assert ctl.expectations.pending(key) == (1, 0)
        for pod in created:
            ctl.pod_informer.store.upsert(pod)
            ctl._pod_added(pod)
        assert ctl.expectations.satisfied(key)


@pytest.mark.parametrize(("policy", "owner_kinds"), [
    pytest.param({"whenDeleted": "Retain", "whenScaled": "Retain"}, {"www-web-0": [], "www-web-1": []},
                 id="retain"),
    pytest.param({"whenDeleted": "Delete", "whenScaled": "Retain"},
                 {"www-web-0": ["StatefulSet"], "www-web-1": ["StatefulSet"]}, id="when-deleted"),
    pytest.param({"whenDeleted": "Retain", "whenScaled": "Delete"}, {"www-web-0": [], "www-web-1": ["Pod"]},
                 id="when-scaled"),
])
async def test_claim_retention_policy_sets_the_claims_owners(tmp_path: Path, policy: Obj,
                                                             owner_kinds: dict[str, list[str]]) -> None:
    """Delete policies hand the claims to the garbage collector through owner references: the set's
    (whenDeleted) or, on scale-down, the condemned pod's (whenScaled)."""
    pvcs = lookup("", "v1", "persistentvolumeclaims")
    assert pvcs is not None
    async with _running(tmp_path) as client:
        claim = {"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                       "resources": {"requests": {"storage": "1Gi"}}}}
        await client.create(STATEFULSETS, _sts(replicas=2, podManagementPolicy="Parallel",
                                               volumeClaimTemplates=[claim],
                                               persistentVolumeClaimRetentionPolicy=policy))
        kubelet = Kubelet(client, "app=web")

        async def two_ready() -> bool:
            await kubelet.step()
            st = (await client.get(STATEFULSETS, "web", namespace="default")).get("status") or {}
            return st.get("readyReplicas") == 2
        await eventually(two_ready, timeout=30, what="2 ready")
        await client.patch(STATEFULSETS, "web", {"spec": {"replicas": 1}}, namespace="default")

        async def owners() -> bool:
            await kubelet.step()
            items = (await client.list(pvcs, namespace="default"))["items"]
            got = {c["metadata"]["name"]: sorted(r["kind"] for r in c["metadata"].get("ownerReferences") or [])
                   for c in items}
            return got == owner_kinds and len(await pods(client, "app=web")) == 1
        await eventually(owners, timeout=30, what=f"claim owners {owner_kinds}")
