"""Controller-manager: leader election (only the leader acts), failover, settings selection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controllers.manager import CONTROLLERS, ControllerManager
from controllers.settings import ControllerManagerSettings
from machinery.resources import LEASES, REPLICASETS
from tests.controllers.helpers import cluster, eventually, pods, settings, template


def _rs(name: str, replicas: int) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template({"app": name})}}


@pytest.mark.parametrize(("selection", "name", "enabled"), [
    pytest.param(("*",), "replicaset", True, id="star"),
    pytest.param(("*", "-podgc"), "podgc", False, id="star-minus"),
    pytest.param(("deployment",), "replicaset", False, id="explicit"),
])
def test_controller_selection(selection: tuple[str, ...], name: str, enabled: bool) -> None:
    assert ControllerManagerSettings(controllers=selection).enabled(name) is enabled


def test_registry_has_every_controller() -> None:
    assert set(CONTROLLERS) == {"replicaset", "deployment", "garbagecollector", "endpoints", "endpointslice",
                                "nodelifecycle",
                                "namespace", "serviceaccount", "root-ca-cert-publisher", "podgc",
                                "clusterrole-aggregation", "job", "ttl-after-finished",
                                "persistentvolume-binder", "local-path-provisioner", "storage-protection",
                                "replicationcontroller", "cronjob", "statefulset",
                                "daemonset", "horizontalpodautoscaling", "resourcequota"}


async def test_only_the_leader_acts_and_failover(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        one = ControllerManager(client, settings(leader_elect=True, identity="one"))
        two = ControllerManager(client, settings(leader_elect=True, identity="two"))
        t1 = asyncio.create_task(one.run(), name="cm-one")
        await eventually(lambda: _true(one.leading.is_set()), what="first leader")
        t2 = asyncio.create_task(two.run(), name="cm-two")
        try:
            await client.create(REPLICASETS, _rs("web", 3))

            async def three() -> bool:
                return len(await pods(client, "app=web")) == 3
            await eventually(three)
            await asyncio.sleep(0.5)  # a window for a second leader or extra pods to show
            assert one.leading.is_set() and not two.leading.is_set()
            assert len(await pods(client, "app=web", active=False)) == 3
            lease = await client.get(LEASES, "kube-controller-manager", namespace="kube-system")
            assert lease["spec"]["holderIdentity"] == "one"
            # The leader stops (releasing its lease): the other takes over and acts.
            t1.cancel()
            await asyncio.gather(t1, return_exceptions=True)
            await eventually(lambda: _true(two.leading.is_set()), timeout=20, what="failover")
            await client.patch(REPLICASETS, "web", {"spec": {"replicas": 5}}, namespace="default")

            async def five() -> bool:
                return len(await pods(client, "app=web")) == 5
            await eventually(five, what="new leader acts")
        finally:
            for t in (t1, t2):
                t.cancel()
            await asyncio.gather(t1, t2, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value
