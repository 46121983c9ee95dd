"""The quota and limit-range lab (``examples/tutorials/quota-limits``) driven by the real kubectl as its
README says, on an in-process apiserver and controller-manager (ReplicaSet, Deployment, resource
quota). No node runs the pods: limits and quotas look only at what the API holds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.testing import kubectl
from machinery.client import ApiClient
from tests.apiserver.conftest import embedded_api
from tests.controllers.helpers import eventually, manager

pytestmark = [pytest.mark.kubectl]
LAB = Path(__file__).resolve().parents[2] / "examples" / "tutorials" / "quota-limits"


class Lab:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    async def kubectl(self, *args: str, check: bool = True) -> Any:
        return await asyncio.to_thread(kubectl, *args, kubeconfig=self.kubeconfig, check=check)

    async def apply(self, manifest: str, ns: str, *, check: bool = True) -> Any:
        return await self.kubectl("apply", "-f", str(LAB / manifest), f"--namespace={ns}", check=check)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with embedded_api(tmp_path) as api:
        client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        try:
            async with manager(client, controllers=("replicaset", "deployment", "resourcequota")):
                yield Lab(api.settings.kubeconfig_path)
        finally:
            await client.close()


async def test_default_memory(lab: Lab) -> None:
    ns = "default-mem-example"
    await lab.kubectl("create", "namespace", ns)
    await lab.apply("memory-defaults.yaml", ns)
    await lab.apply("memory-defaults-pod.yaml", ns)
    pod = json.loads((await lab.kubectl("get", "pod", "default-mem-demo", "--output=json", f"--namespace={ns}")).stdout)
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"memory": "512Mi"},
                                                         "requests": {"memory": "256Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: memory request for container default-mem-demo-ctr; memory limit for container "
        "default-mem-demo-ctr")
    described = (await lab.kubectl("describe", "limitrange", "mem-limit-range", f"--namespace={ns}")).stdout
    assert "Default Request" in described and "256Mi" in described and "512Mi" in described


async def test_min_max_memory(lab: Lab) -> None:
    ns = "constraints-mem-example"
    await lab.kubectl("create", "namespace", ns)
    await lab.apply("memory-constraints.yaml", ns)
    stored = json.loads((await lab.kubectl("get", "limitrange", "mem-min-max-demo-lr", f"--namespace={ns}",
                                           "--output=json")).stdout)
    item = stored["spec"]["limits"][0]
    assert item["default"] == {"memory": "1Gi"} and item["defaultRequest"] == {"memory": "1Gi"}
    refused = await lab.apply("memory-constraints-pod-2.yaml", ns, check=False)
    assert refused.returncode != 0
    assert 'Error from server (Forbidden): error when creating' in refused.stderr
    assert 'pods "constraints-mem-demo-2" is forbidden: maximum memory usage per Container is 1Gi, but limit is ' \
           "1536Mi" in refused.stderr


async def test_memory_and_cpu_quota(lab: Lab) -> None:
    ns = "quota-mem-cpu-example"
    await lab.kubectl("create", "namespace", ns)
    await lab.apply("quota-mem-cpu.yaml", ns)
    await lab.apply("quota-mem-cpu-pod.yaml", ns)

    async def used() -> bool:
        quota = json.loads((await lab.kubectl("get", "resourcequota", "mem-cpu-demo", f"--namespace={ns}",
                                              "--output=json")).stdout)
        return (quota.get("status") or {}).get("used") == {"limits.cpu": "800m", "limits.memory": "800Mi",
                                                            "requests.cpu": "400m", "requests.memory": "600Mi"}
    await eventually(used, timeout=30, what="status.used of mem-cpu-demo")
    refused = await lab.apply("quota-mem-cpu-pod-2.yaml", ns, check=False)
    assert ('pods "quota-mem-cpu-demo-2" is forbidden: exceeded quota: mem-cpu-demo, requested: '
            "requests.memory=700Mi, used: requests.memory=600Mi, limited: requests.memory=1Gi") in refused.stderr
    bare = await lab.kubectl("run", "nginx", "--image=kubelab/nginx:1.22", f"--namespace={ns}", check=False)
    assert "failed quota: mem-cpu-demo: must specify limits.cpu for: nginx" in bare.stderr


async def test_pod_quota(lab: Lab) -> None:
    ns = "quota-pod-example"
    await lab.kubectl("create", "namespace", ns)
    await lab.apply("quota-pod.yaml", ns)
    await lab.apply("quota-pod-deployment.yaml", ns)

    async def capped() -> bool:
        rs = json.loads((await lab.kubectl("get", "rs", f"--namespace={ns}", "--output=json")).stdout)["items"]
        conditions = [c for r in rs for c in (r.get("status") or {}).get("conditions") or []]
        return any(c["type"] == "ReplicaFailure" and "exceeded quota: pod-demo, requested: pods=1, used: pods=2, "
                   "limited: pods=2" in c["message"] for c in conditions)
    await eventually(capped, timeout=30, what="the ReplicaSet's ReplicaFailure condition")
    pods = (await lab.kubectl("get", "pods", f"--namespace={ns}", "--output=name")).stdout.split()
    assert len(pods) == 2
    table = (await lab.kubectl("get", "quota", f"--namespace={ns}")).stdout.splitlines()
    assert "pods: 2/2" in table[1]
