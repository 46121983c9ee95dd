"""The resource-quota controller against the embedded apiserver: status.hard follows spec.hard,
status.used counts what exists, and deletes and terminal pods give usage back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from controllers.resourcequota import ResourceQuotaController, desired_status
from controllers.settings import ControllerManagerSettings
from machinery.client import ApiClient, InformerFactory
from machinery.quantity import Quantity
from machinery.resources import CONFIGMAPS, PODS, RESOURCEQUOTAS
from tests.controllers.helpers import eventually, running_controller

NS = "default"


def test_desired_status_fills_zero_and_keeps_only_hard_names() -> None:
    quota = {"spec": {"hard": {"pods": "2", "requests.memory": "1024Mi"}}}
    status = desired_status(quota, {"pods": Quantity.from_value(1), "configmaps": Quantity.from_value(3)})
    assert status == {"hard": {"pods": "2", "requests.memory": "1Gi"}, "used": {"pods": "1", "requests.memory": "0"}}


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> Any:
        return ResourceQuotaController(client, factory, ControllerManagerSettings(resync_seconds=0))

    async with running_controller(tmp_path, make, workers=2, name="resourcequota") as client:
        yield client


def _pod(name: str, memory: str = "100Mi") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{"name": "app", "image": "busybox",
                                     "resources": {"requests": {"memory": memory}, "limits": {"memory": memory}}}]}}


async def _status(client: ApiClient, name: str = "q") -> dict[str, Any]:
    return dict((await client.get(RESOURCEQUOTAS, name, namespace=NS)).get("status") or {})


async def test_status_counts_existing_objects_and_follows_spec(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        await client.create(PODS, _pod("before"))
        await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "c", "namespace": NS}})
        await client.create(RESOURCEQUOTAS, {"apiVersion": "v1", "kind": "ResourceQuota",
                                             "metadata": {"name": "q", "namespace": NS},
                                             "spec": {"hard": {"pods": "5", "requests.memory": "1Gi"}}})

        async def counted() -> bool:
            return await _status(client) == {"hard": {"pods": "5", "requests.memory": "1Gi"},
                                             "used": {"pods": "1", "requests.memory": "100Mi"}}
        await eventually(counted, what="initial usage")

        quota = await client.get(RESOURCEQUOTAS, "q", namespace=NS)
        quota["spec"]["hard"]["configmaps"] = "10"
        await client.update(RESOURCEQUOTAS, quota)

        async def follows() -> bool:
            status = await _status(client)
            stored = len((await client.list(CONFIGMAPS, namespace=NS))["items"])
            return status.get("hard", {}).get("configmaps") == "10" and \
                status["used"].get("configmaps") == str(stored)
        await eventually(follows, what="hard from spec, configmaps counted")


async def test_deleted_and_finished_pods_give_usage_back(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        await client.create(RESOURCEQUOTAS, {"apiVersion": "v1", "kind": "ResourceQuota",
                                             "metadata": {"name": "q", "namespace": NS},
                                             "spec": {"hard": {"pods": "2"}}})
        await eventually(lambda: _used(client, "0"), what="empty quota")
        await client.create(PODS, _pod("a"))
        await client.create(PODS, _pod("b"))
        await eventually(lambda: _used(client, "2"), what="two pods")
        await client.delete(PODS, "a", namespace=NS, grace_period_seconds=0)
        await eventually(lambda: _used(client, "1"), what="a deleted")
        await client.patch(PODS, "b", {"status": {"phase": "Succeeded"}}, namespace=NS, subresource="status")
        await eventually(lambda: _used(client, "0"), what="b finished")
        await client.create(PODS, _pod("c"))
        await client.create(PODS, _pod("d"))
        await eventually(lambda: _used(client, "2"), what="room again")


async def _used(client: ApiClient, pods: str) -> bool:
    return (await _status(client)).get("used", {}).get("pods") == pods
