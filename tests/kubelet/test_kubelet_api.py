"""The kubelet against the real apiserver (embedded in the test loop) with the fake runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelet.hollow import KubeletGroup
from kubelet.runtime.fake import FakeRuntime, FakeRuntimeSettings
from kubelet.settings import KubeletSettings
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import LEASES, NODES, PODS
from tests.kubelet.conftest import GroupFactory, eventually


def pod(name: str, *, node: str = "node-a", image: str = "nginx:1.25", restart: str = "Always",
        annotations: dict[str, str] | None = None, grace: int = 30) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": grace,
                 "containers": [{"name": "app", "image": image}]},
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


async def test_node_registers_ready_and_renews_its_lease(client: ApiClient, start_group: GroupFactory) -> None:
    await start_group(taints=[{"key": "lab", "value": "x", "effect": "NoSchedule"}], labels={"zone": "a"})
    node = await client.get(NODES, "node-a")
    assert condition(node, "Ready")["status"] == "True"
    assert condition(node, "MemoryPressure")["status"] == "False"
    assert node["status"]["capacity"]["pods"] == "110"
    assert node["status"]["allocatable"]["cpu"] == "4"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.32.0-kubelab"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("fake://")
    assert {a["type"] for a in node["status"]["addresses"]} == {"InternalIP", "Hostname"}
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    assert node["metadata"]["labels"]["zone"] == "a"
    assert node["spec"]["taints"] == [{"key": "lab", "value": "x", "effect": "NoSchedule"}]
    first = (await client.get(LEASES, "node-a", namespace="kube-node-lease"))
    assert first["spec"]["holderIdentity"] == "node-a"

    async def renewed() -> bool:
        lease = await client.get(LEASES, "node-a", namespace="kube-node-lease")
        return bool(lease["spec"]["renewTime"] != first["spec"]["renewTime"])

    await eventually(renewed, timeout=5)


async def test_bound_pod_runs_with_full_status(client: ApiClient, start_group: GroupFactory) -> None:
    await start_group()
    await client.create(PODS, pod("web"))

    async def running() -> dict[str, Any] | None:
        obj = await client.get(PODS, "web", namespace="default")
        ready = condition(obj, "Ready")["status"] == "True"
        return obj if obj["status"]["phase"] == "Running" and ready else None

    obj = await eventually(running)
    status = obj["status"]
    assert {c["type"] for c in status["conditions"]} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    assert all(c["lastTransitionTime"] for c in status["conditions"])
    assert status["podIP"].startswith("10.128.0.")
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == "127.0.0.1"
    assert status["startTime"]
    assert status["qosClass"] == "BestEffort"
    [container] = status["containerStatuses"]
    assert container["ready"] is True and container["started"] is True
    assert container["restartCount"] == 0
    assert "running" in container["state"]
    assert container["containerID"].startswith("fake://")
    assert container["image"] == "nginx:1.25" and container["imageID"]


async def test_graceful_delete_completes(client: ApiClient, start_group: GroupFactory) -> None:
    await start_group(fake_stop_delay=0.3)
    await client.create(PODS, pod("web"))

    async def running() -> bool:
        return bool((await client.get(PODS, "web", namespace="default"))["status"]["phase"] == "Running")

    await eventually(running)
    deleted = await client.delete(PODS, "web", namespace="default")
    assert deleted["metadata"]["deletionTimestamp"]  # graceful: the kubelet confirms

    async def gone() -> bool:
        try:
            await client.get(PODS, "web", namespace="default")
        except NotFoundError:
            return True
        return False

    await eventually(gone)


@pytest.mark.parametrize(
    ("image", "annotations"),
    [
        pytest.param("crash:1", {}, id="image-named-crash"),
        pytest.param("nginx:1.25", {"kubelab.dev/fake-crash": "true"}, id="crash-annotation"),
    ],
)
async def test_crashing_container_backs_off(client: ApiClient, start_group: GroupFactory, image: str,
                                            annotations: dict[str, str]) -> None:
    await start_group()
    await client.create(PODS, pod("crasher", image=image, annotations=annotations))

    async def crash_looping() -> dict[str, Any] | None:
        obj = await client.get(PODS, "crasher", namespace="default")
        [container] = obj["status"]["containerStatuses"]
        waiting = container["state"].get("waiting") or {}
        if container["restartCount"] >= 2 and waiting.get("reason") == "CrashLoopBackOff":
            return obj
        return None

    obj = await eventually(crash_looping, timeout=15)
    [container] = obj["status"]["containerStatuses"]
    assert container["lastState"]["terminated"]["exitCode"] == 1
    assert container["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off" in container["state"]["waiting"]["message"]
    assert obj["status"]["phase"] == "Running"  # restartPolicy Always keeps it Running
    assert condition(obj, "Ready")["status"] == "False"


async def test_crash_with_restart_policy_never_fails_the_pod(client: ApiClient, start_group: GroupFactory) -> None:
    await start_group()
    await client.create(PODS, pod("once", image="crash:1", restart="Never"))

    async def failed() -> dict[str, Any] | None:
        obj = await client.get(PODS, "once", namespace="default")
        return obj if obj["status"]["phase"] == "Failed" else None

    obj = await eventually(failed)
    [container] = obj["status"]["containerStatuses"]
    assert container["restartCount"] == 0
    assert container["state"]["terminated"]["exitCode"] == 1


async def test_not_ready_flag_keeps_ready_false(client: ApiClient, start_group: GroupFactory) -> None:
    await start_group()
    await client.create(PODS, pod("lazy", annotations={"kubelab.dev/fake-not-ready": "true"}))

    async def running() -> dict[str, Any] | None:
        obj = await client.get(PODS, "lazy", namespace="default")
        return obj if obj["status"]["phase"] == "Running" else None

    obj = await eventually(running)
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"
    assert obj["status"]["containerStatuses"][0]["ready"] is False


async def test_many_hollow_nodes_in_one_process(client: ApiClient, start_group: GroupFactory,
                                                 tmp_path: Path) -> None:
    group = await start_group(node_name="hollow-node", hollow=True, count=50, lease_renew_interval=2.0,
                              pki_dir=tmp_path / "pki")
    nodes = await client.list(NODES)
    names = {n["metadata"]["name"] for n in nodes["items"]}
    assert names == {f"hollow-node-{i}" for i in range(1, 51)}
    assert all(n["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "hollow" for n in nodes["items"])
    assert len({n["spec"]["podCIDR"] for n in nodes["items"]}) == 50
    # Each node's kubelet endpoint: its own loopback address, a port it really listens on.
    endpoints = {(a["address"], n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])
                 for n in nodes["items"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"}
    assert {address for address, _ in endpoints} == {f"127.200.0.{i}" for i in range(1, 51)}
    assert all(port > 0 for _, port in endpoints)
    assert group.endpoints is not None
    # One shared informer routes pods by spec.nodeName.
    await client.create(PODS, pod("on-37", node="hollow-node-37"))

    async def running() -> dict[str, Any] | None:
        obj = await client.get(PODS, "on-37", namespace="default")
        return obj if obj["status"]["phase"] == "Running" else None

    obj = await eventually(running)
    assert obj["status"]["hostIP"] == "127.200.0.37"
    assert obj["status"]["podIP"].startswith("127.128.36.")
    assert group.informer.field_selector == ""


async def test_init_containers_run_first(client: ApiClient, start_group: GroupFactory) -> None:
    await start_group()
    obj = pod("with-init")
    obj["spec"]["initContainers"] = [{"name": "setup", "image": "busybox:1.35"}]
    await client.create(PODS, obj)

    async def running() -> dict[str, Any] | None:
        live = await client.get(PODS, "with-init", namespace="default")
        return live if live["status"]["phase"] == "Running" else None

    live = await eventually(running)
    assert condition(live, "Initialized")["status"] == "True"
    [init] = live["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["reason"] == "Completed"


async def test_on_failure_restarts_a_crash(client: ApiClient, start_group: GroupFactory) -> None:
    await start_group()
    await client.create(PODS, pod("retry", image="crash:1", restart="OnFailure"))

    async def restarted() -> bool:
        live = await client.get(PODS, "retry", namespace="default")
        return bool(live["status"]["containerStatuses"][0]["restartCount"] >= 1)

    await eventually(restarted)


async def test_force_deleted_pod_is_cleaned_from_the_runtime(client: ApiClient, start_group: GroupFactory) -> None:
    group = await start_group()
    created = await client.create(PODS, pod("forced"))

    async def running() -> bool:
        return bool((await client.get(PODS, "forced", namespace="default"))["status"]["phase"] == "Running")

    await eventually(running)
    runtime = group.nodes["node-a"].runtime
    assert await runtime.list_pod_uids() == [created["metadata"]["uid"]]
    await client.delete(PODS, "forced", namespace="default", grace_period_seconds=0)

    async def cleaned() -> bool:
        return await runtime.list_pod_uids() == []

    await eventually(cleaned)


async def test_pods_of_other_nodes_are_ignored(client: ApiClient, start_group: GroupFactory) -> None:
    group = await start_group()
    await client.create(PODS, pod("elsewhere", node="node-b"))
    await client.create(PODS, pod("here"))

    async def running() -> bool:
        return bool((await client.get(PODS, "here", namespace="default"))["status"]["phase"] == "Running")

    await eventually(running)
    other = await client.get(PODS, "elsewhere", namespace="default")
    assert other["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert group.informer.field_selector == "spec.nodeName=node-a"


async def test_restart_removes_runtime_pods_deleted_meanwhile(client: ApiClient, tmp_path: Path) -> None:
    runtime = FakeRuntime(settings=FakeRuntimeSettings(start_delay=0.01))
    await runtime.run_pod_sandbox({"metadata": {"uid": "gone-uid", "name": "gone"}})
    settings = KubeletSettings(kubeconfig=tmp_path / "kc", node_name="node-a", lease_renew_interval=0.5)
    group = KubeletGroup(client, settings, runtime_factory=lambda _node, _cidr: (runtime, runtime))
    try:
        await group.start()
        assert await runtime.list_pod_uids() == []
    finally:
        await group.stop()
