"""Deployment controller against the embedded apiserver: rollout bounds, rollback, pause, restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controllers import deployment_util as du
from machinery.client import ApiClient
from machinery.resources import DEPLOYMENTS, REPLICASETS
from tests.controllers.helpers import PodHistory, cluster, eventually, fake_nodes, manager, pods, template

Obj = dict[str, Any]


def _deploy(name: str, replicas: int, **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default", "annotations": {du.CHANGE_CAUSE: "first"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template({"app": name}), **spec}}


async def _rss(client: ApiClient, name: str) -> list[Obj]:
    items: list[Obj] = (await client.list(REPLICASETS, namespace="default", label_selector=f"app={name}"))["items"]
    return items


async def rolled_out(client: ApiClient, name: str) -> bool:
    """kubectl rollout status's success test."""
    d = await client.get(DEPLOYMENTS, name, namespace="default")
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    if d["metadata"]["generation"] > int(st.get("observedGeneration") or 0):
        return False
    return (int(st.get("updatedReplicas") or 0) >= want and int(st.get("replicas") or 0) <= int(
        st.get("updatedReplicas") or 0) and int(st.get("availableReplicas") or 0) >= int(st.get("updatedReplicas")
                                                                                         or 0))


async def observed(client: ApiClient, name: str) -> bool:
    """The controller has synced the Deployment's latest spec (``observedGeneration``)."""
    d = await client.get(DEPLOYMENTS, name, namespace="default")
    return int((d.get("status") or {}).get("observedGeneration") or 0) >= int(d["metadata"]["generation"])


async def _set_image(client: ApiClient, name: str, image: str) -> None:
    await client.patch(DEPLOYMENTS, name, {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": image}]}}}}, namespace="default", patch_type="strategic")


@pytest.mark.parametrize(("surge", "unavailable", "replicas"), [
    pytest.param("25%", "25%", 8, id="defaults"),
    pytest.param(1, 0, 4, id="surge-only"),
    pytest.param(0, 2, 4, id="unavailable-only"),
])
async def test_rolling_update_respects_bounds(tmp_path: Path, surge: int | str, unavailable: int | str,
                                              replicas: int) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    max_surge, max_unavail = du.resolve_fenceposts(surge, unavailable, replicas)
    async with cluster(tmp_path) as client, manager(client), fake_nodes(client, "app=web"):
        await client.create(DEPLOYMENTS, _deploy("web", replicas, strategy=strategy))
        await eventually(lambda: rolled_out(client, "web"), what="first rollout")
        first = await _rss(client, "web")
        assert len(first) == 1
        rs = first[0]
        assert rs["metadata"]["name"] == f"web-{rs['metadata']['labels'][du.HASH_LABEL]}"
        assert rs["metadata"]["annotations"][du.REVISION] == "1"
        assert rs["metadata"]["annotations"][du.CHANGE_CAUSE] == "first"
        async with PodHistory(client, "app=web") as history:
            await _set_image(client, "web", "nginx:2")
            await eventually(lambda: rolled_out(client, "web"), what="second rollout")
        assert history.samples
        assert max(a for a, _ in history.samples) <= replicas + max_surge
        assert min(r for _, r in history.samples) >= replicas - max_unavail
        rss = {r["metadata"]["annotations"][du.REVISION]: r for r in await _rss(client, "web")}
        assert sorted(rss) == ["1", "2"]
        assert rss["1"]["spec"]["replicas"] == 0 and rss["2"]["spec"]["replicas"] == replicas
        d = await client.get(DEPLOYMENTS, "web", namespace="default")
        assert d["metadata"]["annotations"][du.REVISION] == "2"
        conds = {c["type"]: c for c in d["status"]["conditions"]}
        assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
        assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
        assert conds["Progressing"]["message"] == f'ReplicaSet "{rss["2"]["metadata"]["name"]}" has successfully ' \
            "progressed."
        assert len(await pods(client, "app=web")) == replicas


async def test_rollback_by_template_reuses_old_rs(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client), fake_nodes(client, "app=web"):
        await client.create(DEPLOYMENTS, _deploy("web", 2))
        await eventually(lambda: rolled_out(client, "web"))
        await _set_image(client, "web", "nginx:2")
        await eventually(lambda: rolled_out(client, "web"))
        old = next(r for r in await _rss(client, "web") if r["metadata"]["annotations"][du.REVISION] == "1")
        # What `kubectl rollout undo` sends: the RS template minus the hash, as a JSON patch.
        tmpl = old["spec"]["template"]
        tmpl["metadata"]["labels"].pop(du.HASH_LABEL)
        tmpl["metadata"]["creationTimestamp"] = None
        tmpl["spec"]["containers"][0]["resources"] = {}
        await client.patch(DEPLOYMENTS, "web", [{"op": "replace", "path": "/spec/template", "value": tmpl}],
                           namespace="default", patch_type="json")
        await eventually(lambda: rolled_out(client, "web"))
        rss = await _rss(client, "web")
        assert len(rss) == 2
        reused = next(r for r in rss if r["metadata"]["uid"] == old["metadata"]["uid"])
        assert reused["metadata"]["annotations"][du.REVISION] == "3"
        assert reused["metadata"]["annotations"][du.REVISION_HISTORY] == "1"
        assert reused["spec"]["replicas"] == 2
        d = await client.get(DEPLOYMENTS, "web", namespace="default")
        assert d["metadata"]["annotations"][du.REVISION] == "3"


async def test_pause_stops_progress_and_resume_finishes(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client), fake_nodes(client, "app=web"):
        await client.create(DEPLOYMENTS, _deploy("web", 3))
        await eventually(lambda: rolled_out(client, "web"))
        await client.patch(DEPLOYMENTS, "web", {"spec": {"paused": True}}, namespace="default")

        async def paused_cond() -> bool:
            d = await client.get(DEPLOYMENTS, "web", namespace="default")
            return any(c["reason"] == "DeploymentPaused" for c in d["status"].get("conditions", []))
        await eventually(paused_cond, what="DeploymentPaused")
        await _set_image(client, "web", "nginx:2")
        await eventually(lambda: observed(client, "web"), what="the paused template change observed")
        assert len(await _rss(client, "web")) == 1
        # Scaling still works while paused.
        await client.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 4}}, namespace="default")

        async def four() -> bool:
            return len(await pods(client, "app=web")) == 4
        await eventually(four, what="scaled while paused")
        assert len(await _rss(client, "web")) == 1
        await client.patch(DEPLOYMENTS, "web", {"spec": {"paused": None}}, namespace="default")
        await eventually(lambda: rolled_out(client, "web"), what="resumed rollout")
        rss = await _rss(client, "web")
        assert len(rss) == 2
        assert len(await pods(client, "app=web")) == 4


async def test_recreate(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client), fake_nodes(client, "app=web"):
        await client.create(DEPLOYMENTS, _deploy("web", 3, strategy={"type": "Recreate"}))
        await eventually(lambda: rolled_out(client, "web"))
        async with PodHistory(client, "app=web") as history:
            await _set_image(client, "web", "nginx:2")
            await eventually(lambda: rolled_out(client, "web"))
        assert max(a for a, _ in history.samples) <= 3
        assert (0, 0) in history.samples


async def test_killed_manager_mid_rollout_finishes_exactly(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, fake_nodes(client, "app=web"):
        async with manager(client):
            await client.create(DEPLOYMENTS, _deploy("web", 6))
            await eventually(lambda: rolled_out(client, "web"))
            await _set_image(client, "web", "nginx:2")

            async def started() -> bool:
                return len(await _rss(client, "web")) == 2
            await eventually(started, what="new RS")
        async with manager(client):
            await eventually(lambda: rolled_out(client, "web"), what="rollout after restart")
            new_hash = next(r for r in await _rss(client, "web") if r["spec"]["replicas"] == 6)["metadata"][
                "labels"][du.HASH_LABEL]

            async def old_pods_gone() -> bool:
                every = await pods(client, "app=web", active=False)
                return all(p["metadata"]["labels"][du.HASH_LABEL] == new_hash for p in every)
            await eventually(old_pods_gone, what="the old ReplicaSet's pods deleted")
        items = await pods(client, "app=web", active=False)
        assert len(items) == 6
        assert {p["metadata"]["labels"][du.HASH_LABEL] for p in items} == {new_hash}
        assert all(p["metadata"].get("ownerReferences") for p in items)


async def test_progress_deadline_exceeded(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client):
        await client.create(DEPLOYMENTS, _deploy("web", 2, progressDeadlineSeconds=1))

        async def timed_out() -> bool:
            d = await client.get(DEPLOYMENTS, "web", namespace="default")
            cond = du.get_condition(d.get("status") or {}, "Progressing")
            return cond is not None and cond["reason"] == "ProgressDeadlineExceeded" and cond["status"] == "False"
        await eventually(timed_out, timeout=20, what="ProgressDeadlineExceeded")
        d = await client.get(DEPLOYMENTS, "web", namespace="default")
        cond = du.get_condition(d["status"], "Progressing")
        assert cond is not None and cond["message"].endswith("has timed out progressing.")
        avail = du.get_condition(d["status"], "Available")
        assert avail is not None and avail["reason"] == "MinimumReplicasUnavailable"


async def test_revision_history_limit_cleans_old_rss(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client), fake_nodes(client, "app=web"):
        await client.create(DEPLOYMENTS, _deploy("web", 1, revisionHistoryLimit=1))
        await eventually(lambda: rolled_out(client, "web"))
        for image in ("nginx:2", "nginx:3"):
            await _set_image(client, "web", image)
            await eventually(lambda: rolled_out(client, "web"))

        async def two_left() -> bool:
            return len(await _rss(client, "web")) == 2
        await eventually(two_left, what="history cleanup")
        revs = sorted(r["metadata"]["annotations"][du.REVISION] for r in await _rss(client, "web"))
        assert revs == ["2", "3"]
