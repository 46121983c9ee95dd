"""The Docker kubelet's pod lifecycle against real containers (issue 4, "Done when" 3 and 4).

One module-scoped setup: the real apiserver embedded in the test loop, and ONE node's kubelet
built as ``kubelet.server`` builds a Docker node (a :class:`DockerRuntime` on a pod network of
its own, a :class:`RealKubeletGroup` with the pod features: volumes, env, probes, hooks; no
service proxy, DNS or HTTPS server), a unique cluster name and subnet, a 1 s CrashLoopBackOff
base. Pods are bound to the node directly (``spec.nodeName``). Every Docker object carries the
module's cluster label and is removed by ``cleanup_cluster`` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import pytest_asyncio

from kubelab.images import ensure_images
from kubelet.podfeatures import EventSink
from kubelet.runtime.docker import DockerRuntime, DockerRuntimeSettings, cleanup_cluster
from kubelet.runtime.docker_spec import LABEL_CLUSTER, LABEL_POD_UID
from kubelet.runtime.interface import ContainerStatus
from kubelet.server import RealKubeletGroup
from kubelet.settings import KubeletSettings
from machinery.client.events import EventRecorder
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import CONFIGMAPS, EVENTS, PODS
from tests.apiserver.conftest import embedded_api

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

CLUSTER = f"t-dkubelet-{uuid.uuid4().hex[:6]}"
NODE = "docker-node-1"
NS = "default"
IMAGE = "kubelab/busybox:1.35"
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
PROBE_SCALE = 0.25
"""Probe periods run at a quarter of their declared length (periodSeconds 1 → 0.25 s)."""


# -- the kubelet --------------------------------------------------------------------------------
class _Placeholder:
    """Prober slot the group replaces with the node's ProbeManager (as kubelet.server does)."""

    def is_ready(self, pod: dict[str, Any], status: ContainerStatus) -> bool:
        return True


class DockerKubelet:
    """One Docker node's kubelet that a test can stop and start again (a kubelet restart)."""

    def __init__(self, client: ApiClient, dclient: docker.DockerClient, settings: KubeletSettings) -> None:
        self.client = client
        self.dclient = dclient
        self.settings = settings
        self.group: RealKubeletGroup | None = None
        self.runtime: DockerRuntime | None = None
        self._recorder: EventRecorder | None = None

    async def start(self) -> None:
        s = self.settings
        runtime = DockerRuntime(self.dclient, DockerRuntimeSettings(cluster=s.cluster_name, node_name=s.node_name,
                                                                    pod_subnet=s.pod_subnet, pod_cidr=s.pod_cidr))
        await runtime.start()
        recorder = EventRecorder(self.client, component="kubelet", host=s.node_name)

        def events_for(_node: str) -> EventSink:
            return recorder

        group = RealKubeletGroup(self.client, s, runtime_factory=lambda _n, _c: (runtime, _Placeholder()),
                                 events_factory=events_for)
        syncer = group.nodes[s.node_name].syncer
        assert syncer.features is not None
        syncer.features.volume_refresh = 0.5  # ConfigMap updates reach files within ~0.5 s
        self.runtime, self.group, self._recorder = runtime, group, recorder
        await group.start()
        await group.wait_registered(30)
        await runtime.wait_events_connected()

    async def stop(self) -> None:
        """What a cancelled ``serve()`` does; containers keep running."""
        group, runtime, recorder = self.group, self.runtime, self._recorder
        self.group = self.runtime = self._recorder = None
        if group is not None:
            await group.stop()  # closes the probe workers too
        if runtime is not None:
            await runtime.close()
        if recorder is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(recorder.close(), 2.0)

    def adopted(self, uid: str) -> bool:
        """The running kubelet has synced the pod ``uid`` at least once."""
        return self.group is not None and self.group.nodes[NODE].syncer.key_of(uid) is not None


@pytest.fixture(scope="module")
def dclient(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    ensure_images(docker_client, ["busybox"])
    yield docker_client
    cleanup_cluster(docker_client, CLUSTER)


@pytest.fixture(scope="module")
def subnet(dclient: docker.DockerClient) -> str:
    used = {str(cfg.get("Subnet")) for n in dclient.networks.list(greedy=True)
            for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []}
    while True:
        candidate = f"10.251.{random.randrange(256)}.0/24"
        if candidate not in used:
            return candidate


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ApiClient]:
    async with embedded_api(tmp_path_factory.mktemp("apiserver")) as api:
        api_client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        # What the controller-manager's root CA publisher would do: pods' token volumes read it.
        await api_client.create(CONFIGMAPS, {"metadata": {"name": "kube-root-ca.crt", "namespace": NS},
                                             "data": {"ca.crt": (api.settings.pki_dir / "ca.crt").read_text()}})
        try:
            yield api_client
        finally:
            await api_client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kubelet(client: ApiClient, dclient: docker.DockerClient, subnet: str,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DockerKubelet]:
    root = tmp_path_factory.mktemp("kubelet")
    settings = KubeletSettings(
        kubeconfig=Path("/nonexistent"), node_name=NODE, cluster_name=CLUSTER, pod_subnet=subnet,
        root_dir=root, crash_loop_base_delay=1.0, crash_loop_max_delay=8.0, network_agent=False, run_dns=False,
        lease_renew_interval=1.0, probe_time_scale=PROBE_SCALE)
    node = DockerKubelet(client, dclient, settings)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
        await asyncio.to_thread(cleanup_cluster, dclient, CLUSTER)


# -- helpers ------------------------------------------------------------------------------------
def container(name: str, command: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": command, **fields}


def pod_manifest(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2, "containers": containers, **spec}}


PodCheck = Callable[[dict[str, Any]], bool]


async def wait_pod(client: ApiClient, name: str, check: PodCheck, *, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the pod until ``check`` holds (KeyError/IndexError count as "not yet"); return it."""
    deadline = time.monotonic() + timeout
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pod = await client.get(PODS, name, namespace=NS)
        with contextlib.suppress(KeyError, IndexError, TypeError):
            if check(pod):
                return pod
        await asyncio.sleep(0.1)
    raise AssertionError(f"pod {name} did not satisfy the check in {timeout:g}s; status: {pod.get('status')}")


async def until(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout:g}s: {what}")


def cstatus(pod: dict[str, Any], index: int = 0) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = pod["status"]["containerStatuses"]
    return statuses[index]


def condition(pod: dict[str, Any], type_: str) -> str:
    return next(str(c["status"]) for c in pod["status"].get("conditions") or [] if c["type"] == type_)


def is_running_ready(pod: dict[str, Any]) -> bool:
    return bool(pod["status"]["phase"] == "Running" and condition(pod, "Ready") == "True")


def docker_id(pod: dict[str, Any], index: int = 0) -> str:
    return str(cstatus(pod, index)["containerID"]).removeprefix("docker://")


async def pod_containers(dclient: docker.DockerClient, uid: str) -> list[Any]:
    """Every Docker container (pause included, exited too) of pod ``uid`` in this cluster."""
    filters = {"label": [f"{LABEL_CLUSTER}={CLUSTER}", f"{LABEL_POD_UID}={uid}"]}
    return list(await asyncio.to_thread(dclient.containers.list, all=True, filters=filters, ignore_removed=True))


async def events_of(client: ApiClient, name: str, reason: str) -> list[dict[str, Any]]:
    items = (await client.list(EVENTS, namespace=NS))["items"]
    return [e for e in items if e["involvedObject"].get("name") == name and e.get("reason") == reason]


async def exec_in(kubelet: DockerKubelet, container_id: str, command: list[str]) -> tuple[int, str]:
    assert kubelet.runtime is not None
    code, output = await kubelet.runtime.exec_sync(container_id, command, timeout=10)
    return code, output.decode()


@pytest_asyncio.fixture(loop_scope="module")
async def create_pod(client: ApiClient, kubelet: DockerKubelet
                     ) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
    """Create pods; at the end of the test they are force-deleted (the kubelet removes their containers)."""
    names: list[str] = []

    async def create(manifest: dict[str, Any]) -> dict[str, Any]:
        created = await client.create(PODS, manifest, namespace=NS)
        names.append(str(created["metadata"]["name"]))
        return created

    yield create
    for name in names:
        with contextlib.suppress(NotFoundError):
            await client.delete(PODS, name, namespace=NS, grace_period_seconds=0)


# -- running, ready, restarted ------------------------------------------------------------------
async def test_pod_runs_with_docker_container_status(client: ApiClient, dclient: docker.DockerClient,
                                                     kubelet: DockerKubelet, subnet: str, create_pod: Any) -> None:
    created = await create_pod(pod_manifest("web", [container("main", SLEEP)]))
    pod = await wait_pod(client, "web", is_running_ready)
    status = cstatus(pod)
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(subnet)
    assert status["containerID"].startswith("docker://")
    assert status["imageID"] and status["started"] is True and status["ready"] is True
    assert status["restartCount"] == 0 and "running" in status["state"]
    assert condition(pod, "ContainersReady") == "True" and condition(pod, "PodReadyToStartContainers") == "True"
    ids = {c.id for c in await pod_containers(dclient, created["metadata"]["uid"])}
    assert docker_id(pod) in ids and len(ids) == 2  # pause + main


async def test_killed_container_is_restarted(client: ApiClient, dclient: docker.DockerClient,
                                             kubelet: DockerKubelet, create_pod: Any) -> None:
    await create_pod(pod_manifest("killed", [container("main", SLEEP)]))
    first = docker_id(await wait_pod(client, "killed", is_running_ready))
    await asyncio.to_thread(dclient.containers.get(first).kill)
    pod = await wait_pod(client, "killed", lambda p: cstatus(p)["restartCount"] == 1 and is_running_ready(p))
    last = cstatus(pod)["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["containerID"]) == (137, "Error", f"docker://{first}")
    assert docker_id(pod) != first


async def test_crashing_container_goes_into_crash_loop_backoff(client: ApiClient, kubelet: DockerKubelet,
                                                               create_pod: Any) -> None:
    await create_pod(pod_manifest("crash", [container("boom", ["sh", "-c", "exit 1"])]))

    def backing_off(pod: dict[str, Any]) -> bool:
        status = cstatus(pod)
        return bool(status["restartCount"] >= 2 and status["state"]["waiting"]["reason"] == "CrashLoopBackOff")

    pod = await wait_pod(client, "crash", backing_off, timeout=30)
    status = cstatus(pod)
    assert status["state"]["waiting"]["message"].startswith("back-off ")
    assert "restarting failed container=boom pod=crash_default(" in status["state"]["waiting"]["message"]
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["phase"] == "Running" and condition(pod, "Ready") == "False"
    seen = status["restartCount"]
    pod = await wait_pod(client, "crash", lambda p: cstatus(p)["restartCount"] > seen, timeout=20)
    assert await events_of(client, "crash", "BackOff")


# -- probes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, probe", [
    pytest.param(["sh", "-c", "touch /tmp/healthy; sleep 1; rm /tmp/healthy; " + SLEEP[2]],
                 {"exec": {"command": ["cat", "/tmp/healthy"]}}, id="exec-file-removed"),
    pytest.param(SLEEP, {"httpGet": {"port": 8081, "path": "/healthz"}}, id="httpGet-closed-port"),
])
async def test_failing_liveness_probe_restarts_the_container(client: ApiClient, kubelet: DockerKubelet,
                                                             create_pod: Any, command: list[str],
                                                             probe: dict[str, Any]) -> None:
    name = f"live-{uuid.uuid4().hex[:5]}"
    liveness = {**probe, "periodSeconds": 1, "failureThreshold": 2, "timeoutSeconds": 4}
    await create_pod(pod_manifest(name, [container("main", command, livenessProbe=liveness)]))
    pod = await wait_pod(client, name, lambda p: cstatus(p)["restartCount"] >= 1, timeout=30)
    assert "terminated" in cstatus(pod)["lastState"]
    unhealthy = await until(lambda: events_of(client, name, "Unhealthy"), what="an Unhealthy event")
    assert unhealthy[0]["type"] == "Warning" and unhealthy[0]["message"].startswith("Liveness probe failed")
    assert await until(lambda: events_of(client, name, "Killing"), what="a Killing event")


@pytest.mark.parametrize("command, ready", [
    pytest.param(["true"], "True", id="passing"),
    pytest.param(["cat", "/nonexistent"], "False", id="failing"),
])
async def test_readiness_probe_drives_ready(client: ApiClient, kubelet: DockerKubelet, create_pod: Any,
                                            command: list[str], ready: str) -> None:
    name = f"ready-{uuid.uuid4().hex[:5]}"
    readiness = {"exec": {"command": command}, "periodSeconds": 1, "timeoutSeconds": 4}
    await create_pod(pod_manifest(name, [container("main", SLEEP, readinessProbe=readiness)]))
    if ready == "True":
        pod = await wait_pod(client, name, is_running_ready)
    else:
        await until(lambda: events_of(client, name, "Unhealthy"), what="a failed readiness probe")
        await asyncio.sleep(4 * PROBE_SCALE)  # several more failed probes
        pod = await client.get(PODS, name, namespace=NS)
        assert pod["status"]["phase"] == "Running" and "running" in cstatus(pod)["state"]
    assert condition(pod, "Ready") == ready and condition(pod, "ContainersReady") == ready
    assert cstatus(pod)["ready"] is (ready == "True") and cstatus(pod)["restartCount"] == 0


# -- exits --------------------------------------------------------------------------------------
async def test_memory_hog_is_oom_killed(client: ApiClient, kubelet: DockerKubelet, create_pod: Any) -> None:
    hog = container("hog", ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                    resources={"limits": {"memory": "16Mi"}})
    await create_pod(pod_manifest("hog", [hog], restartPolicy="Never"))
    pod = await wait_pod(client, "hog", lambda p: p["status"]["phase"] == "Failed" and "terminated" in
                         cstatus(p)["state"], timeout=30)
    # Docker's oom event may trail its die event: the kubelet then corrects the reason shortly after.
    pod = await wait_pod(client, "hog", lambda p: cstatus(p)["state"]["terminated"]["reason"] == "OOMKilled",
                         timeout=5)
    assert cstatus(pod)["state"]["terminated"]["exitCode"] == 137 and pod["status"]["phase"] == "Failed"


@pytest.mark.parametrize("code, phase, reason", [
    pytest.param(0, "Succeeded", "Completed", id="exit-0"),
    pytest.param(2, "Failed", "Error", id="exit-2"),
])
async def test_restart_policy_never_ends_the_pod(client: ApiClient, dclient: docker.DockerClient,
                                                 kubelet: DockerKubelet, create_pod: Any, code: int, phase: str,
                                                 reason: str) -> None:
    name = f"once-{code}"
    created = await create_pod(pod_manifest(name, [container("job", ["sh", "-c", f"exit {code}"])],
                                            restartPolicy="Never"))
    pod = await wait_pod(client, name, lambda p: p["status"]["phase"] == phase, timeout=30)
    terminated = cstatus(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (code, reason)
    assert cstatus(pod)["restartCount"] == 0 and condition(pod, "Ready") == "False"
    apps = [c for c in await pod_containers(dclient, created["metadata"]["uid"]) if c.id == docker_id(pod)]
    assert len(apps) == 1  # never restarted


# -- configuration ------------------------------------------------------------------------------
async def test_env_and_config_map_volume(client: ApiClient, kubelet: DockerKubelet, create_pod: Any) -> None:
    await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "app-config", "namespace": NS},
                                     "data": {"greeting": "hello", "app.conf": "version=1\n"}}, namespace=NS)
    main = container("main", SLEEP, env=[
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ], volumeMounts=[{"name": "config", "mountPath": "/etc/app"}])
    await create_pod(pod_manifest("configured", [main],
                                  volumes=[{"name": "config", "configMap": {"name": "app-config"}}]))
    pod = await wait_pod(client, "configured", is_running_ready)
    cid = docker_id(pod)
    code, out = await exec_in(kubelet, cid, ["sh", "-c", 'echo "$GREETING $MY_IP"; cat /etc/app/app.conf'])
    assert code == 0
    assert out.splitlines() == [f"hello {pod['status']['podIP']}", "version=1"]

    await client.patch(CONFIGMAPS, "app-config", {"data": {"app.conf": "version=2\n"}}, namespace=NS)

    async def updated() -> bool:
        return (await exec_in(kubelet, cid, ["cat", "/etc/app/app.conf"]))[1] == "version=2\n"

    await until(updated, timeout=15, what="the ConfigMap update in the mounted file")


# -- termination --------------------------------------------------------------------------------
async def test_graceful_delete_removes_pod_and_containers(client: ApiClient, dclient: docker.DockerClient,
                                                          kubelet: DockerKubelet, create_pod: Any) -> None:
    created = await create_pod(pod_manifest("doomed", [container("main", SLEEP)]))
    uid = created["metadata"]["uid"]
    await wait_pod(client, "doomed", is_running_ready)
    deleted = await client.delete(PODS, "doomed", namespace=NS)
    assert deleted["metadata"].get("deletionTimestamp")  # graceful: the kubelet finishes it

    async def gone() -> bool:
        try:
            await client.get(PODS, "doomed", namespace=NS)
        except NotFoundError:
            return True
        return False

    await until(gone, timeout=20, what="the pod object to disappear")
    await until(lambda: _none(pod_containers(dclient, uid)), timeout=10, what="the pod's containers removed")


async def _none(found: Awaitable[list[Any]]) -> bool:
    return not await found


# -- kubelet restart ----------------------------------------------------------------------------
async def test_kubelet_restart_keeps_pods_running(client: ApiClient, dclient: docker.DockerClient,
                                                  kubelet: DockerKubelet, create_pod: Any) -> None:
    readiness = {"exec": {"command": ["true"]}, "periodSeconds": 1, "timeoutSeconds": 4}
    kept = await create_pod(pod_manifest("survivor", [container("main", SLEEP, readinessProbe=readiness)]))
    gone = await create_pod(pod_manifest("orphan", [container("main", SLEEP)]))
    uid, orphan_uid = kept["metadata"]["uid"], gone["metadata"]["uid"]
    await wait_pod(client, "orphan", is_running_ready)
    first = docker_id(await wait_pod(client, "survivor", is_running_ready))
    await asyncio.to_thread(dclient.containers.get(first).kill)
    before = await wait_pod(client, "survivor", lambda p: cstatus(p)["restartCount"] == 1 and is_running_ready(p))
    ids_before = sorted(c.id for c in await pod_containers(dclient, uid))
    assert len(ids_before) == 3  # pause, the killed attempt, the running one
    readiness_seen: list[str] = []
    watcher = asyncio.create_task(_record_ready(client, "survivor", str(before["metadata"]["resourceVersion"]),
                                                readiness_seen), name="watch survivor")

    await kubelet.stop()
    # While no kubelet runs, the orphan's API object goes away for good.
    await client.delete(PODS, "orphan", namespace=NS, grace_period_seconds=0)
    await kubelet.start()

    await until(lambda: _true(kubelet.adopted(uid)), timeout=15, what="the new kubelet to sync the pod")
    await until(lambda: _none(pod_containers(dclient, orphan_uid)), timeout=10, what="orphan containers removed")
    await asyncio.sleep(1.0)  # let any wrong restart or duplicate show itself
    assert sorted(c.id for c in await pod_containers(dclient, uid)) == ids_before
    running = [c for c in await pod_containers(dclient, uid) if c.status == "running"]
    assert len(running) == 2  # pause + the current attempt, no duplicate
    after = await wait_pod(client, "survivor", is_running_ready)
    assert docker_id(after) == docker_id(before) and cstatus(after)["restartCount"] == 1
    assert cstatus(after)["lastState"] == cstatus(before)["lastState"]
    assert after["status"]["podIP"] == before["status"]["podIP"]
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    assert set(readiness_seen) <= {"True"}, f"Ready flapped across the kubelet restart: {readiness_seen}"


async def _record_ready(client: ApiClient, name: str, resource_version: str, seen: list[str]) -> None:
    """Append the Ready condition of every change of pod ``name`` after ``resource_version``."""
    async for event in client.watch(PODS, namespace=NS, resource_version=resource_version,
                                    field_selector=f"metadata.name={name}", allow_bookmarks=False):
        if event.type == "MODIFIED":
            with contextlib.suppress(KeyError, StopIteration):
                seen.append(condition(event.object, "Ready"))


async def _true(value: bool) -> bool:
    return value
