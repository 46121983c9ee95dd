"""An in-process apiserver with hollow nodes whose statistics feed metrics.k8s.io quickly.

Shared by the metrics API, HPA controller and kubectl top tests: the apiserver scrapes every
``resolution`` seconds; pods run on the hollow nodes and report the CPU their
``kubelab.dev/fake-cpu`` annotation says.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelet.hollow import KubeletGroup
from kubelet.settings import KubeletSettings
from machinery.client.rest import ApiClient
from machinery.resources import PODS
from tests.apiserver.conftest import Api, embedded_api
from tests.kubelet.conftest import eventually

RESOLUTION = 0.3


@dataclass
class HollowMetrics:
    api: Api
    client: ApiClient
    group: KubeletGroup

    async def run_pod(self, name: str, *, node: str = "hollow-node-1", cpu: str = "", request: str = "100m",
                      labels: dict[str, str] | None = None, namespace: str = "default") -> dict[str, Any]:
        annotations = {"kubelab.dev/fake-cpu": cpu, "kubelab.dev/fake-memory": "20Mi"} if cpu else {}
        await self.client.create(PODS, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name},
                         "annotations": annotations},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "kubelab/nginx:1.22",
                                                       "resources": {"requests": {"cpu": request}}}]}})

        async def running() -> dict[str, Any] | None:
            obj = await self.client.get(PODS, name, namespace=namespace)
            return obj if obj["status"].get("phase") == "Running" else None

        result: dict[str, Any] = await eventually(running, timeout=30)
        return result


@contextlib.asynccontextmanager
async def hollow_metrics(tmp_path: Path, *, nodes: int = 2, **api_settings: Any) -> AsyncIterator[HollowMetrics]:
    async with embedded_api(tmp_path, metrics_resolution=RESOLUTION, **api_settings) as api:
        client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        settings = KubeletSettings(kubeconfig=api.settings.kubeconfig_path, node_name="hollow-node", hollow=True,
                                   count=nodes, pki_dir=api.settings.pki_dir, fake_start_delay=0.05,
                                   lease_renew_interval=1.0, emit_events=False)
        group = KubeletGroup(client, settings)
        try:
            await group.start()
            await group.wait_registered(30)
            yield HollowMetrics(api, client, group)
        finally:
            await group.stop()
            await client.close()
