"""Namespace controller against the embedded apiserver: a deleted namespace is emptied, then goes."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from controllers.namespace import NAMESPACED, NamespaceController
from controllers.settings import ControllerManagerSettings
from machinery.client import InformerFactory
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import CONFIGMAPS, NAMESPACES, PODS, SERVICES
from tests.controllers.helpers import eventually, running_controller

NS = "doomed"


def running(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> Any:
        return NamespaceController(client, factory, ControllerManagerSettings(), recheck_delay=0.1)

    return running_controller(tmp_path, make, workers=2, name="namespace")



@pytest.mark.parametrize("plural", [
    pytest.param(p, id=p) for p in ("pods", "services", "endpoints", "configmaps", "secrets", "serviceaccounts",
                                    "events", "deployments", "replicasets", "leases")
])
def test_every_served_namespaced_resource_is_emptied(plural: str) -> None:
    assert plural in {r.plural for r in NAMESPACED}


async def _namespace_gone(client: ApiClient) -> bool:
    try:
        await client.get(NAMESPACES, NS)
    except NotFoundError:
        return True
    return False


async def test_deleted_namespace_is_emptied_and_removed(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "cfg", "namespace": NS}})
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                       "metadata": {"name": "svc", "namespace": NS},
                                       "spec": {"ports": [{"port": 80}]}})
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        await client.delete(NAMESPACES, NS)
        await eventually(lambda: _namespace_gone(client))
        for resource in (CONFIGMAPS, SERVICES, PODS):
            assert (await client.list(resource, namespace=NS))["items"] == []


async def test_namespace_waits_for_terminating_pods(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS},
                                   "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]}})
        await client.delete(NAMESPACES, NS)

        async def pod_terminating() -> bool:
            pod = await client.get(PODS, "p", namespace=NS)
            return bool(pod["metadata"].get("deletionTimestamp"))
        await eventually(pod_terminating)
        await asyncio.sleep(0.3)  # a window for a wrong early namespace removal to show
        assert not await _namespace_gone(client)
        await client.delete(PODS, "p", namespace=NS, grace_period_seconds=0)  # the kubelet's confirmation
        await eventually(lambda: _namespace_gone(client))
