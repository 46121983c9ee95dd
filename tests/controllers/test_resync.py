"""Controller resync: every key a controller owns is synced again periodically, with no change
in the cluster, so whatever a missed event or a failed write left behind is repaired."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from controllers.settings import ControllerManagerSettings
from machinery.client import ApiClient
from machinery.client.workqueue import RateLimitingQueue
from machinery.resources import DEPLOYMENTS, REPLICASETS
from tests.controllers.helpers import cluster, eventually, manager, template


def test_resync_is_on_by_default() -> None:
    settings = ControllerManagerSettings()
    assert 0 < settings.resync_seconds <= 300
    assert (settings.retry_base_delay, settings.retry_max_delay) == (0.005, 1000.0), "client-go's limiter"


async def test_resync_reenqueues_every_key_periodically(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        for name in ("a", "b"):
            await client.create(REPLICASETS, {
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                         "template": template({"app": name})}})
        await client.create(DEPLOYMENTS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}}, "template": template({"app": "d"})}})
        async with manager(client, resync_seconds=0.2) as mgr:
            await eventually(lambda: _true("deployment" in mgr.running and "replicaset" in mgr.running))
            async def settled() -> bool:
                d = await client.get(DEPLOYMENTS, "d", namespace="default")
                rss = (await client.list(REPLICASETS, namespace="default"))["items"]
                return (len(rss) == 3 and (d.get("status") or {}).get("observedGeneration") == 1
                        and all((rs.get("status") or {}).get("observedGeneration") == 1 for rs in rss))
            await eventually(settled, timeout=30, what="controllers settled")
            before = await versions(client)
            added = {name: count_adds(mgr.running[name].queue) for name in ("replicaset", "deployment")}

            async def resynced() -> bool:
                rs, d = added["replicaset"], added["deployment"]
                return (all(rs[k] >= 3 for k in ("default/a", "default/b"))
                        and d["default/d"] >= 3)
            await eventually(resynced, timeout=30, what="three resyncs of every key")
            assert await versions(client) == before, "a resync that finds nothing to do writes nothing"


async def versions(client: ApiClient) -> dict[str, str]:
    found: dict[str, str] = {}
    for resource in (REPLICASETS, DEPLOYMENTS):
        for o in (await client.list(resource, namespace="default"))["items"]:
            found[f"{resource.plural}/{o['metadata']['name']}"] = o["metadata"]["resourceVersion"]
    return found


def count_adds(queue: RateLimitingQueue) -> Counter[str]:
    """Count the keys handed to ``queue.add`` from now on (the handlers' only way in)."""
    counts: Counter[str] = Counter()
    original = queue.add

    def counting(key: str) -> None:
        counts[key] += 1
        original(key)
    queue.add = counting  # type: ignore[method-assign]
    return counts


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
