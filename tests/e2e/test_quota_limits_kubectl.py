"""The kubernetes.io quota and limit-range tasks through the real kubectl ("Configure Default Memory
Requests and Limits for a Namespace", "Configure Minimum and Maximum Memory Constraints", "Configure
Memory and CPU Quotas for a Namespace", "Configure a Pod Quota for a Namespace"), image names swapped.

One apiserver process per module; the resource-quota controller runs in the test's event loop
against it (no kubelet: the pods stay Pending, which is all quotas and limits look at).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controllers.resourcequota import ResourceQuotaController
from controllers.settings import ControllerManagerSettings
from kubelab.testing import RunningApiServer, kubectl, start_apiserver
from machinery.client import ApiClient, InformerFactory
from tests.controllers.helpers import eventually

pytestmark = [pytest.mark.kubectl]

_names = itertools.count()

DEFAULT_MEM = """
apiVersion: v1
kind: LimitRange
metadata:
  name: mem-limit-range
spec:
  limits:
  - default:
      memory: 512Mi
    defaultRequest:
      memory: 256Mi
    type: Container
"""

MIN_MAX_MEM = """
apiVersion: v1
kind: LimitRange
metadata:
  name: mem-min-max-demo-lr
spec:
  limits:
  - max:
      memory: 1Gi
    min:
      memory: 500Mi
    type: Container
"""

MEM_CPU_QUOTA = """
apiVersion: v1
kind: ResourceQuota
metadata:
  name: mem-cpu-demo
spec:
  hard:
    requests.cpu: "1"
    requests.memory: 1Gi
    limits.cpu: "2"
    limits.memory: 2Gi
"""

POD_QUOTA = """
apiVersion: v1
kind: ResourceQuota
metadata:
  name: pod-demo
spec:
  hard:
    pods: "2"
"""


def pod_yaml(name: str, *, limit_mem: str = "", request_mem: str = "", limit_cpu: str = "",
             request_cpu: str = "") -> str:
    limits = "".join(f"\n          {k}: {v}" for k, v in (("memory", limit_mem), ("cpu", limit_cpu)) if v)
    requests = "".join(f"\n          {k}: {v}" for k, v in (("memory", request_mem), ("cpu", request_cpu)) if v)
    resources = ""
    if limits or requests:
        resources = "\n      resources:" + (f"\n        limits:{limits}" if limits else "") + \
            (f"\n        requests:{requests}" if requests else "")
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
    - name: {name}-ctr
      image: kubelab/nginx{resources}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = start_apiserver(tmp_path_factory.mktemp("quota") / "state")
    yield running
    running.stop()


@contextlib.asynccontextmanager
async def controller(server: RunningApiServer) -> AsyncIterator[ApiClient]:
    client = ApiClient.from_kubeconfig(server.kubeconfig)
    factory = InformerFactory(client)
    quota = ResourceQuotaController(client, factory, ControllerManagerSettings(leader_elect=False))
    await factory.start()
    await factory.wait_synced()
    task = asyncio.create_task(quota.run(1), name="resourcequota")
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await factory.stop()
        await client.close()


async def run(server: RunningApiServer, *args: str, input: str | None = None, check: bool = True) -> Any:
    return await asyncio.to_thread(kubectl, *args, kubeconfig=server.kubeconfig, input=input, check=check)


async def namespace(server: RunningApiServer, prefix: str) -> str:
    name = f"{prefix}-{next(_names)}"
    await run(server, "create", "namespace", name)
    return name


async def test_default_memory_requests_and_limits(server: RunningApiServer) -> None:
    ns = await namespace(server, "default-mem-example")
    await run(server, "apply", "-n", ns, "-f", "-", input=DEFAULT_MEM)
    await run(server, "apply", "-n", ns, "-f", "-", input=pod_yaml("default-mem-demo"))
    out = (await run(server, "get", "pod", "default-mem-demo", "-n", ns, "-o",
                     "jsonpath={.spec.containers[0].resources}")).stdout
    assert out == '{"limits":{"memory":"512Mi"},"requests":{"memory":"256Mi"}}'
    # Only a limit: the request defaults to the limit (pod defaulting), not to the LimitRange's.
    await run(server, "apply", "-n", ns, "-f", "-", input=pod_yaml("default-mem-demo-2", limit_mem="1Gi"))
    out = (await run(server, "get", "pod", "default-mem-demo-2", "-n", ns, "-o",
                     "jsonpath={.spec.containers[0].resources}")).stdout
    assert out == '{"limits":{"memory":"1Gi"},"requests":{"memory":"1Gi"}}'
    described = (await run(server, "describe", "limitrange", "mem-limit-range", "-n", ns)).stdout
    assert "Container   memory    -    -    256Mi            512Mi          -" in described, described
    table = (await run(server, "get", "limits", "-n", ns)).stdout.splitlines()
    assert table[0].split() == ["NAME", "CREATED", "AT"]
    assert table[1].startswith("mem-limit-range")


async def test_min_max_memory_constraints(server: RunningApiServer) -> None:
    ns = await namespace(server, "constraints-mem-example")
    await run(server, "apply", "-n", ns, "-f", "-", input=MIN_MAX_MEM)
    shown = (await run(server, "get", "limitrange", "mem-min-max-demo-lr", "-n", ns, "-o",
                       "jsonpath={.spec.limits[0]}")).stdout
    assert '"default":{"memory":"1Gi"}' in shown and '"defaultRequest":{"memory":"1Gi"}' in shown
    ok = pod_yaml("constraints-mem-demo", limit_mem="800Mi", request_mem="600Mi")
    await run(server, "apply", "-n", ns, "-f", "-", input=ok)
    too_big = pod_yaml("constraints-mem-demo-2", limit_mem="1.5Gi", request_mem="800Mi")
    result = await run(server, "apply", "-n", ns, "-f", "-", input=too_big, check=False)
    assert result.returncode != 0
    assert 'pods "constraints-mem-demo-2" is forbidden: maximum memory usage per Container is 1Gi, ' \
           "but limit is 1536Mi" in result.stderr
    too_small = pod_yaml("constraints-mem-demo-3", limit_mem="800Mi", request_mem="100Mi")
    result = await run(server, "apply", "-n", ns, "-f", "-", input=too_small, check=False)
    assert "minimum memory usage per Container is 500Mi, but request is 100Mi" in result.stderr


async def test_memory_and_cpu_quota(server: RunningApiServer) -> None:
    ns = await namespace(server, "quota-mem-cpu-example")
    async with controller(server):
        await run(server, "apply", "-n", ns, "-f", "-", input=MEM_CPU_QUOTA)
        await run(server, "apply", "-n", ns, "-f", "-", input=pod_yaml(
            "quota-mem-cpu-demo", limit_mem="800Mi", limit_cpu="800m", request_mem="600Mi", request_cpu="400m"))

        async def described() -> bool:
            out = (await run(server, "describe", "quota", "mem-cpu-demo", "-n", ns)).stdout
            return "requests.memory  600Mi  1Gi" in out and "limits.cpu       800m   2" in out
        await eventually(described, timeout=30, what="describe quota shows the usage")
        out = (await run(server, "describe", "quota", "mem-cpu-demo", "-n", ns)).stdout
        assert "Resource         Used   Hard\n--------         ----   ----\n" in out, out
        table = (await run(server, "get", "quota", "-n", ns)).stdout.splitlines()
        assert table[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
        assert "requests.cpu: 400m/1, requests.memory: 600Mi/1Gi" in table[1]
        assert "limits.cpu: 800m/2, limits.memory: 800Mi/2Gi" in table[1]

        second = pod_yaml("quota-mem-cpu-demo-2", limit_mem="1Gi", limit_cpu="800m", request_mem="700Mi",
                          request_cpu="400m")
        result = await run(server, "apply", "-n", ns, "-f", "-", input=second, check=False)
        assert result.returncode != 0
        assert ('pods "quota-mem-cpu-demo-2" is forbidden: exceeded quota: mem-cpu-demo, requested: '
                "requests.memory=700Mi, used: requests.memory=600Mi, limited: requests.memory=1Gi") in result.stderr
        bare = await run(server, "run", "bare", "-n", ns, "--image=kubelab/nginx", check=False)
        assert "failed quota: mem-cpu-demo: must specify limits.cpu for: bare; limits.memory for: bare; " \
               "requests.cpu for: bare; requests.memory for: bare" in bare.stderr


async def test_pod_quota(server: RunningApiServer) -> None:
    ns = await namespace(server, "quota-pod-example")
    async with controller(server):
        await run(server, "apply", "-n", ns, "-f", "-", input=POD_QUOTA)

        async def ready() -> bool:
            out = (await run(server, "get", "resourcequota", "pod-demo", "-n", ns, "-o",
                             "jsonpath={.status.used.pods}/{.status.hard.pods}")).stdout
            return out == "0/2"
        await eventually(ready, timeout=30, what="quota status filled in")
        for name in ("a", "b"):
            await run(server, "run", name, "-n", ns, "--image=kubelab/nginx")
        result = await run(server, "run", "c", "-n", ns, "--image=kubelab/nginx", check=False)
        assert result.returncode != 0
        assert ('Error from server (Forbidden): pods "c" is forbidden: exceeded quota: pod-demo, requested: '
                "pods=1, used: pods=2, limited: pods=2") in result.stderr
        await run(server, "delete", "pod", "a", "-n", ns, "--grace-period=0", "--force", "--wait=false")

        async def freed() -> bool:
            return (await run(server, "run", "c", "-n", ns, "--image=kubelab/nginx", check=False)).returncode == 0
        await eventually(freed, timeout=30, what="a deleted pod gives its place back")
        described = (await run(server, "describe", "quota", "pod-demo", "-n", ns)).stdout
        assert ["pods", "2", "2"] in [line.split() for line in described.splitlines()], described


async def test_discovery_and_explain(server: RunningApiServer) -> None:
    resources = (await run(server, "api-resources", "--api-group=")).stdout
    rows = {line.split()[0]: line.split() for line in resources.splitlines()[1:]}
    assert rows["resourcequotas"][1] == "quota"
    assert rows["limitranges"][1] == "limits"
    assert "podtemplates" in rows
    explained = (await run(server, "explain", "resourcequota.spec.hard")).stdout
    assert "hard" in explained.lower()
    explained = (await run(server, "explain", "limitrange.spec.limits")).stdout
    assert "defaultRequest" in explained


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_create_quota(server: RunningApiServer, version: str) -> None:
    """kubectl >= 1.32 sends ``create quota`` as protobuf, older ones as JSON."""
    ns = await namespace(server, f"create-quota-{version.replace('.', '')}")
    await asyncio.to_thread(kubectl, "create", "quota", "best-effort", "--hard=pods=3",
                            "--scopes=BestEffort", "-n", ns, kubeconfig=server.kubeconfig, version=version)
    stored = (await run(server, "get", "quota", "best-effort", "-n", ns, "-o",
                        "jsonpath={.spec.hard.pods} {.spec.scopes[0]}")).stdout
    assert stored == "3 BestEffort"
