"""ReplicaSet controller against the embedded apiserver: create, replace, scale down by preference."""

from __future__ import annotations

from pathlib import Path

from machinery.resources import PODS, REPLICASETS
from tests.controllers.helpers import cluster, eventually, manager, mark_ready, pods, template


def _rs(name: str, replicas: int) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template({"app": name})}}


async def test_creates_exactly_n_and_replaces_deleted(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client):
        rs = await client.create(REPLICASETS, _rs("web", 3))

        async def three() -> bool:
            return len(await pods(client, "app=web")) == 3
        await eventually(three, what="3 pods")
        items = await pods(client, "app=web")
        for pod in items:
            assert pod["metadata"]["name"].startswith("web-") and len(pod["metadata"]["name"]) == len("web-") + 5
            ref = pod["metadata"]["ownerReferences"][0]
            assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                           "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        await client.delete(PODS, items[0]["metadata"]["name"], namespace="default")

        async def replaced() -> bool:
            names = {p["metadata"]["name"] for p in await pods(client, "app=web")}
            return len(names) == 3 and items[0]["metadata"]["name"] not in names
        await eventually(replaced, what="replacement")
        for pod in await pods(client, "app=web"):
            await mark_ready(client, pod)

        async def status_ok() -> bool:
            st = (await client.get(REPLICASETS, "web", namespace="default")).get("status") or {}
            return (st.get("replicas"), st.get("readyReplicas"), st.get("availableReplicas"),
                    st.get("fullyLabeledReplicas"), st.get("observedGeneration")) == (3, 3, 3, 3, 1)
        await eventually(status_ok, what="status")
        # No extra pods were ever created beyond the replacement.
        assert len(await pods(client, "app=web", active=False)) == 3


async def test_scale_down_deletes_not_ready_first_and_adopts_orphans(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        # An orphan matching the selector is adopted rather than a new pod created.
        orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "web"}},
                  "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
        await client.create(PODS, orphan, namespace="default")
        async with manager(client):
            await client.create(REPLICASETS, _rs("web", 4))

            async def four() -> bool:
                return len(await pods(client, "app=web")) == 4
            await eventually(four, what="4 pods")
            items = await pods(client, "app=web")
            assert any(p["metadata"]["name"] == "orphan" and p["metadata"].get("ownerReferences") for p in items)
            ready = [p for p in items if p["metadata"]["name"] != "orphan"][:2]
            for pod in ready:
                await mark_ready(client, pod)
            await client.patch(REPLICASETS, "web", {"spec": {"replicas": 2}}, namespace="default")

            async def two() -> bool:
                return len(await pods(client, "app=web")) == 2
            await eventually(two, what="scale down to 2")
            left = {p["metadata"]["name"] for p in await pods(client, "app=web")}
            assert left == {p["metadata"]["name"] for p in ready}
