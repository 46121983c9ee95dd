"""DaemonSet controller against the embedded apiserver: one pod per eligible node (selector, taints
and the default daemon tolerations), nodes added and removed, rolling update, expectations, the
backoff between replacements of a failed daemon pod."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers import daemonset_util as du
from controllers.daemonset import DaemonSetController
from controllers.daemonset_backoff import FailedPodsBackoff
from controllers.settings import ControllerManagerSettings
from machinery.client import ApiClient, InformerFactory
from machinery.meta import object_key
from machinery.resources import DAEMONSETS, EVENTS, NODES, PODS
from tests.controllers.helpers import cluster, eventually, pods, ready_all, running_controller

Obj = dict[str, Any]


def _node(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None) -> Obj:
    spec: Obj = {"taints": taints} if taints else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def _ds(name: str = "agent", **spec: Any) -> Obj:
    pod_spec = {"containers": [{"name": "c", "image": "busybox"}], **spec.pop("pod", {})}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}, **spec}}


@contextlib.asynccontextmanager
async def _running(tmp_path: Path) -> AsyncIterator[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> DaemonSetController:
        return DaemonSetController(client, factory, ControllerManagerSettings())
    async with running_controller(tmp_path, make, name="daemonset") as client:
        yield client


async def _placement(client: ApiClient) -> dict[str, int]:
    out: dict[str, int] = {}
    for pod in await pods(client, "app=agent"):
        node = du.node_of(pod)
        out[node] = out.get(node, 0) + 1
    return out


NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
UNSCHEDULABLE = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
DEDICATED = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}


async def test_one_pod_per_eligible_node_and_new_nodes_get_theirs(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        for node in (_node("n1", {"disk": "ssd"}), _node("n2", {"disk": "ssd"}, [NOT_READY, UNSCHEDULABLE]),
                     _node("n3", {"disk": "hdd"}), _node("n4", {"disk": "ssd"}, [DEDICATED])):
            await client.create(NODES, node)
        await client.create(DAEMONSETS, _ds(pod={"nodeSelector": {"disk": "ssd"}}))

        async def placed(expected: dict[str, int]) -> bool:
            return await _placement(client) == expected
        await eventually(lambda: placed({"n1": 1, "n2": 1}), what="pods on n1 and n2 only")
        pod = next(p for p in await pods(client, "app=agent") if du.node_of(p) == "n1")
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms == {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
        keys = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
        assert keys == {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                        ("node.kubernetes.io/unschedulable", "NoSchedule")}
        await client.create(NODES, _node("n5", {"disk": "ssd"}))
        await eventually(lambda: placed({"n1": 1, "n2": 1, "n5": 1}), what="the new node's pod")
        await client.patch(NODES, "n1", {"metadata": {"labels": {"disk": "hdd"}}})
        await eventually(lambda: placed({"n2": 1, "n5": 1}), what="the pod leaves a node that no longer matches")
        await ready_all(client, "app=agent")

        async def status_ok() -> bool:
            st = (await client.get(DAEMONSETS, "agent", namespace="default")).get("status") or {}
            return (st.get("desiredNumberScheduled"), st.get("currentNumberScheduled"), st.get("numberReady"),
                    st.get("updatedNumberScheduled"), st.get("numberAvailable"),
                    st.get("numberMisscheduled", 0)) == (2, 2, 2, 2, 2, 0)
        await eventually(status_ok, what="status")


@pytest.mark.parametrize("rolling", [
    pytest.param({"maxUnavailable": 1}, id="max-unavailable"),
    pytest.param({"maxUnavailable": 0, "maxSurge": 1}, id="max-surge"),
])
async def test_rolling_update_replaces_every_pod(tmp_path: Path, rolling: Obj) -> None:
    async with _running(tmp_path) as client:
        for name in ("n1", "n2", "n3"):
            await client.create(NODES, _node(name))
        await client.create(DAEMONSETS, _ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": rolling}))

        async def ready3() -> bool:
            await ready_all(client, "app=agent")
            st = (await client.get(DAEMONSETS, "agent", namespace="default")).get("status") or {}
            return st.get("numberAvailable") == 3
        await eventually(ready3, what="3 available")
        old = {p["metadata"]["name"] for p in await pods(client, "app=agent")}
        await client.patch(DAEMONSETS, "agent", {"spec": {"template": {"metadata": {"labels": {"app": "agent",
                                                                                               "v": "2"}}}}},
                           namespace="default")
        least_available = 3

        async def rolled() -> bool:
            nonlocal least_available
            items = await pods(client, "app=agent")
            ready = sum(1 for p in items if (p.get("status") or {}).get("phase") == "Running")
            least_available = min(least_available, ready)
            await ready_all(client, "app=agent")
            st = (await client.get(DAEMONSETS, "agent", namespace="default")).get("status") or {}
            names = {p["metadata"]["name"] for p in await pods(client, "app=agent")}
            return st.get("updatedNumberScheduled") == 3 and st.get("numberAvailable") == 3 and not names & old \
                and len(names) == 3
        await eventually(rolled, timeout=30, what="every pod replaced")
        if rolling.get("maxSurge"):
            assert least_available == 3, "a surge update never leaves a node without its pod"


async def test_daemonset_sync_before_the_cache_catches_up_creates_nothing(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        ctl = DaemonSetController(client, InformerFactory(client), ControllerManagerSettings())
        ctl.node_informer.store.upsert(await client.create(NODES, _node("n1")))
        ds = await client.create(DAEMONSETS, _ds(), namespace="default")
        ctl.ds_informer.store.upsert(ds)
        await ctl.sync(object_key(ds))
        ctl.ds_informer.store.upsert(await client.get(DAEMONSETS, "agent", namespace="default"))
        await ctl.sync(object_key(ds))
        assert len(await pods(client, "app=agent")) == 1, "a second pod for the node from a stale cache"


async def test_failed_daemon_pods_are_replaced_with_backoff(tmp_path: Path) -> None:
    """A kubelet that fails every daemon pod at once: each replacement waits 1 s, then 2 s, ..."""
    now = [0.0]
    async with cluster(tmp_path) as client:
        ctl = DaemonSetController(client, InformerFactory(client), ControllerManagerSettings(),
                                  failed_pods_backoff=FailedPodsBackoff(clock=lambda: now[0]))
        ctl.node_informer.store.upsert(await client.create(NODES, _node("n1")))
        ds = await client.create(DAEMONSETS, _ds(), namespace="default")
        key = object_key(ds)

        async def sync() -> list[Obj]:
            """Bring the caches up to date (as the informers would), sync, answer the live pods."""
            ctl.ds_informer.store.upsert(await client.get(DAEMONSETS, "agent", namespace="default"))
            current = {object_key(p): p for p in await pods(client, "app=agent", active=False)}
            for pod_key in list(ctl.pod_informer.store.keys()):
                if pod_key not in current:
                    ctl._pod_deleted(ctl.pod_informer.store.delete(pod_key) or {})
            for pod in current.values():
                old = ctl.pod_informer.store.upsert(pod)
                ctl._pod_added(pod) if old is None else ctl._pod_updated(old, pod)
            await ctl.sync(key)
            return await pods(client, "app=agent", active=False)

        async def fail(pod: Obj) -> None:
            await client.patch(PODS, pod["metadata"]["name"], {"status": {"phase": "Failed"}}, namespace="default",
                               subresource="status")

        created = await sync()
        assert len(created) == 1
        uids = [created[0]["metadata"]["uid"]]
        for wait in (0.0, 1.0, 2.0, 4.0):
            await fail((await pods(client, "app=agent"))[0])
            if wait:
                now[0] += wait / 2
                assert [p["metadata"]["uid"] for p in await sync()] == uids[-1:], "deleted inside the backoff"
                now[0] += wait / 2
            assert await sync() == [], "the failed pod is deleted once out of backoff"
            replacement = await sync()
            assert len(replacement) == 1 and replacement[0]["metadata"]["uid"] not in uids
            uids.append(replacement[0]["metadata"]["uid"])
        events = (await client.list(EVENTS, namespace="default"))["items"]
        reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == "agent"]
        assert reasons.count("FailedDaemonPod") == 4


def test_failed_pods_backoff_doubles_to_fifteen_minutes_and_expires() -> None:
    now = [0.0]
    backoff = FailedPodsBackoff(clock=lambda: now[0])
    assert backoff.remaining("k") == 0.0
    assert [backoff.next("k") for _ in range(12)][:3] == [1.0, 2.0, 4.0]
    assert backoff.next("k") == 900.0, "capped at 15 min"
    now[0] += 600
    assert backoff.remaining("k") == 300.0
    now[0] += 2 * 900
    assert backoff.remaining("k") == 0.0 and backoff.next("k") == 1.0, "idle for twice the cap: starts again"
    backoff.next("other/1/n1")
    now[0] += 2 * 900 + 1
    backoff.next("uid/1/n2")
    backoff.gc()
    assert len(backoff) == 1
    backoff.forget("uid")
    assert len(backoff) == 0
