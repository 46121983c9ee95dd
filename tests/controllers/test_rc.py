"""ReplicationController controller (the ReplicaSet controller with a label-map selector) against
the embedded apiserver: create, replace, scale through the scale subresource, status."""

from __future__ import annotations

from pathlib import Path

from machinery.resources import PODS, REPLICATIONCONTROLLERS
from tests.controllers.helpers import cluster, eventually, manager, pods, ready_all, template


def _rc(name: str, replicas: int) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "template": template({"app": name})}}


async def test_rc_keeps_replicas_and_scales(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client, controllers=("replicationcontroller",)):
        rc = await client.create(REPLICATIONCONTROLLERS, _rc("old", 2))
        assert rc["spec"]["selector"] == {"app": "old"}, "the selector defaults to the template's labels"

        async def count(n: int) -> bool:
            return len(await pods(client, "app=old")) == n
        await eventually(lambda: count(2), what="2 pods")
        items = await pods(client, "app=old")
        ref = items[0]["metadata"]["ownerReferences"][0]
        assert (ref["apiVersion"], ref["kind"], ref["uid"]) == ("v1", "ReplicationController", rc["metadata"]["uid"])
        await client.delete(PODS, items[0]["metadata"]["name"], namespace="default")
        await eventually(lambda: count(2), what="a replacement")
        await client.patch(REPLICATIONCONTROLLERS, "old", {"spec": {"replicas": 3}}, namespace="default",
                           subresource="scale")
        await eventually(lambda: count(3), what="scaled to 3")
        await ready_all(client, "app=old")

        async def status_ok() -> bool:
            st = (await client.get(REPLICATIONCONTROLLERS, "old", namespace="default")).get("status") or {}
            return (st.get("replicas"), st.get("readyReplicas"), st.get("availableReplicas")) == (3, 3, 3)
        await eventually(status_ok, what="status")
        scale = await client.get(REPLICATIONCONTROLLERS, "old", namespace="default", subresource="scale")
        assert scale["spec"]["replicas"] == 3 and scale["status"]["selector"] == "app=old"
