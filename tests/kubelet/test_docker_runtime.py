"""DockerRuntime against a real Docker engine (``@pytest.mark.docker``), plus the pure spec mapping.

The module uses its own cluster name and a /24 pod subnet; each test runs as its own node, so its
teardown removes exactly its containers; the module's teardown removes the network. Traffic only
goes to the containers the tests create.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import pytest

from kubelab.images import ensure_images
from kubelet.runtime.docker import PAUSE_COMMAND, DockerRuntime, DockerRuntimeSettings, cleanup_cluster
from kubelet.runtime.docker_spec import (
    LABEL_CLUSTER,
    LABEL_NODE,
    container_config,
    parse_docker_time,
    pull_policy,
    status_from_inspect,
)
from kubelet.runtime.interface import (
    ContainerKind,
    ContainerState,
    ContainerStatus,
    RuntimeError_,
    RuntimeEvent,
    RuntimeEventType,
    SandboxState,
)
from tests.docker_daemon import ensure_docker

IMAGE = "kubelab/busybox:1.35"
CLUSTER = f"t-dock-{uuid.uuid4().hex[:6]}"


def make_pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"containers": containers, **spec}}


def ctr(name: str, command: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": IMAGE, **fields}
    if command is not None:
        out["command"] = command
    return out


# -- pure mapping (no Docker) -------------------------------------------------------------------
@pytest.mark.parametrize(("container", "expected"), [
    pytest.param({"image": "busybox"}, "Always", id="no-tag"),
    pytest.param({"image": "busybox:latest"}, "Always", id="latest"),
    pytest.param({"image": "localhost:5000/busybox"}, "Always", id="registry-port-no-tag"),
    pytest.param({"image": "kubelab/busybox:1.35"}, "IfNotPresent", id="tag"),
    pytest.param({"image": "busybox@sha256:abc"}, "IfNotPresent", id="digest"),
    pytest.param({"image": "busybox", "imagePullPolicy": "Never"}, "Never", id="explicit"),
])
def test_pull_policy_defaults(container: dict[str, Any], expected: str) -> None:
    assert pull_policy(container) == expected


@pytest.mark.parametrize(("fields", "expected"), [
    pytest.param({}, {}, id="image-defaults"),
    pytest.param({"command": ["a", "b"]}, {"entrypoint": ["a", "b"], "command": []}, id="command-drops-cmd"),
    pytest.param({"args": ["x"]}, {"command": ["x"]}, id="args-keep-entrypoint"),
    pytest.param({"command": ["a"], "args": ["x"]}, {"entrypoint": ["a"], "command": ["x"]}, id="both"),
    pytest.param({"resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}},
                 {"nano_cpus": 500_000_000, "mem_limit": 64 << 20, "memswap_limit": 64 << 20, "cpu_shares": 512},
                 id="limits-default-request"),
    pytest.param({"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1"}}},
                 {"nano_cpus": 1_000_000_000, "cpu_shares": 256}, id="request-shares"),
    pytest.param({"resources": {"requests": {"cpu": "1m"}}}, {"cpu_shares": 2}, id="min-shares"),
    pytest.param({"securityContext": {"runAsUser": 1337, "runAsGroup": 7, "readOnlyRootFilesystem": True,
                                      "privileged": True, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}},
                 {"user": "1337:7", "read_only": True, "privileged": True, "cap_add": ["NET_ADMIN"],
                  "cap_drop": ["ALL"]}, id="security-context"),
    pytest.param({"workingDir": "/tmp", "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {}}]},
                 {"working_dir": "/tmp", "environment": ["A=1"]}, id="workdir-literal-env"),
])
def test_container_config(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    pod = make_pod("p", [])
    config = container_config(pod, {"name": "c", "image": IMAGE, **fields}, sandbox_id="abc", labels={}, name="n")
    assert config["network_mode"] == "container:abc" and config["ipc_mode"] == "container:abc"
    assert {k: config[k] for k in expected} == expected


def test_pod_security_context_is_the_default() -> None:
    pod = make_pod("p", [], securityContext={"runAsUser": 5})
    config = container_config(pod, {"name": "c", "image": IMAGE}, sandbox_id="a", labels={}, name="n")
    assert config["user"] == "5"


def test_invalid_quantity_is_a_config_error() -> None:
    with pytest.raises(RuntimeError_) as info:
        container_config(make_pod("p", []), {"name": "c", "image": IMAGE, "resources": {"limits": {"cpu": "x"}}},
                         sandbox_id="a", labels={}, name="n")
    assert info.value.reason == "CreateContainerConfigError"


@pytest.mark.parametrize(("state", "expected"), [
    pytest.param({"Status": "exited", "ExitCode": 0}, (ContainerState.EXITED, 0, "Completed"), id="completed"),
    pytest.param({"Status": "exited", "ExitCode": 3}, (ContainerState.EXITED, 3, "Error"), id="error"),
    pytest.param({"Status": "exited", "ExitCode": 137, "OOMKilled": True}, (ContainerState.EXITED, 137, "OOMKilled"),
                 id="oom"),
    pytest.param({"Status": "created", "ExitCode": 127, "Error": "exec: no such file"},
                 (ContainerState.EXITED, 127, "ContainerCannotRun"), id="cannot-run"),
    pytest.param({"Status": "created"}, (ContainerState.CREATED, None, ""), id="created"),
    pytest.param({"Status": "running"}, (ContainerState.RUNNING, None, ""), id="running"),
])
def test_status_from_inspect(state: dict[str, Any], expected: tuple[Any, ...]) -> None:
    attrs = {"Id": "x", "Created": "2024-05-01T10:00:00.123456789Z", "Image": "sha256:1",
             "Config": {"Image": IMAGE, "Labels": {"io.kubernetes.container.restartCount": "4"}},
             "State": {"StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "2024-05-01T10:00:01Z", **state}}
    status = status_from_inspect(attrs)
    assert (status.state, status.exit_code, status.reason) == expected
    assert status.attempt == 4 and status.started_at is None


@pytest.mark.parametrize(("text", "micro"), [
    pytest.param("2024-05-01T10:00:00.123456789Z", 123456, id="nanos"),
    pytest.param("2024-05-01T10:00:00Z", 0, id="whole"),
    pytest.param("2024-05-01T12:00:00.5+02:00", 500000, id="offset"),
])
def test_parse_docker_time(text: str, micro: int) -> None:
    parsed = parse_docker_time(text)
    assert parsed is not None and parsed.hour == 10 and parsed.microsecond == micro
    assert parse_docker_time("0001-01-01T00:00:00Z") is None


# -- real Docker ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dclient() -> Iterator[docker.DockerClient]:
    client = ensure_docker()
    ensure_images(client, ["busybox"])
    yield client
    cleanup_cluster(client, CLUSTER)
    client.close()


@pytest.fixture(scope="module")
def subnet(dclient: docker.DockerClient) -> str:
    used = {str(cfg.get("Subnet")) for n in dclient.networks.list(greedy=True)
            for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []}
    while True:
        candidate = f"10.250.{random.randrange(256)}.0/24"
        if candidate not in used:
            return candidate


@pytest.fixture
async def runtime(dclient: docker.DockerClient, subnet: str, request: pytest.FixtureRequest,
                  ) -> AsyncIterator[DockerRuntime]:
    node = f"node-{uuid.uuid4().hex[:6]}"
    rt = DockerRuntime(dclient, DockerRuntimeSettings(cluster=CLUSTER, node_name=node, pod_subnet=subnet))
    yield rt
    await rt.close()
    for c in dclient.containers.list(all=True, filters={"label": [f"{LABEL_CLUSTER}={CLUSTER}",
                                                                  f"{LABEL_NODE}={node}"]}):
        c.remove(force=True)


async def start_pod(rt: DockerRuntime, pod: dict[str, Any]) -> tuple[str, list[str]]:
    sandbox = await rt.run_pod_sandbox(pod)
    ids = []
    for container in pod["spec"]["containers"]:
        cid = await rt.create_container(pod, container, kind=ContainerKind.REGULAR, attempt=0)
        await rt.start_container(cid)
        ids.append(cid)
    return sandbox.ip, ids


async def wait_exited(rt: DockerRuntime, cid: str, timeout: float = 20) -> ContainerStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await rt.container_status(cid)
        if status.state is ContainerState.EXITED:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"container {cid[:12]} did not exit in {timeout}s")


async def exec_(dclient: docker.DockerClient, cid: str, cmd: list[str], retries: int = 1) -> tuple[int, str]:
    for _ in range(retries):
        code, out = await asyncio.to_thread(dclient.containers.get(cid).exec_run, cmd)
        if code == 0:
            break
        await asyncio.sleep(0.1)
    return int(code), out.decode()


HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/etc"]
TRAP_READY = "/tmp/trap-installed"
SLEEP = ["sh", "-c", f"trap 'exit 0' TERM; touch {TRAP_READY}; sleep 3600 & wait"]
"""Runs until SIGTERM, then exits 0; ``TRAP_READY`` exists once its TERM trap is installed."""


@pytest.mark.docker
async def test_pods_get_ips_and_reach_each_other(runtime: DockerRuntime, dclient: docker.DockerClient,
                                                 subnet: str) -> None:
    ip_a, _ = await start_pod(runtime, make_pod("pod-a", [ctr("web", HTTPD)]))
    ip_b, (client_id,) = await start_pod(runtime, make_pod("pod-b", [ctr("client", SLEEP)]))
    prefix = subnet.rsplit(".", 1)[0]
    assert ip_a.startswith(prefix) and ip_b.startswith(prefix) and ip_a != ip_b
    code, out = await exec_(dclient, client_id, ["wget", "-qO-", f"http://{ip_a}:8080/passwd"], retries=30)
    assert code == 0 and "proxy:x:1337" in out


@pytest.mark.docker
async def test_containers_share_the_pause_network_and_hostname(runtime: DockerRuntime,
                                                               dclient: docker.DockerClient) -> None:
    pod = make_pod("shared", [ctr("web", HTTPD), ctr("side", SLEEP)])
    ip, (_, side) = await start_pod(runtime, pod)
    code, out = await exec_(dclient, side, ["wget", "-qO-", "http://127.0.0.1:8080/passwd"], retries=30)
    assert code == 0 and "root:x:0:0" in out
    assert (await exec_(dclient, side, ["hostname"]))[1].strip() == "shared"
    assert ip in (await exec_(dclient, side, ["cat", "/etc/hosts"]))[1]
    sandbox = await runtime.pod_sandbox_status(pod["metadata"]["uid"])
    assert sandbox is not None and sandbox.state is SandboxState.READY and sandbox.ip == ip
    assert await runtime.run_pod_sandbox(pod) == sandbox  # idempotent


@pytest.mark.docker
@pytest.mark.parametrize(("command", "code", "reason"), [
    pytest.param(["true"], 0, "Completed", id="completed"),
    pytest.param(["sh", "-c", "exit 3"], 3, "Error", id="error"),
    pytest.param(["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"], 137, "OOMKilled", id="oom-16Mi"),
])
async def test_exit_code_and_reason(runtime: DockerRuntime, command: list[str], code: int, reason: str) -> None:
    died = asyncio.Event()
    runtime.set_event_handler(lambda e: died.set() if e.type is RuntimeEventType.CONTAINER_DIED else None)
    assert await runtime.wait_events_connected()
    pod = make_pod("exits", [ctr("c", command, resources={"limits": {"memory": "16Mi"}})])
    _, (cid,) = await start_pod(runtime, pod)
    await asyncio.wait_for(died.wait(), 20)  # the kubelet reads the status when told the container died
    status = await wait_exited(runtime, cid)
    assert (status.exit_code, status.reason) == (code, reason)
    assert status.started_at is not None and status.finished_at is not None
    assert status.finished_at >= status.started_at


@pytest.mark.docker
async def test_start_failure_is_container_cannot_run(runtime: DockerRuntime) -> None:
    pod = make_pod("cannot", [ctr("c", ["/no/such/binary"])])
    await runtime.run_pod_sandbox(pod)
    cid = await runtime.create_container(pod, pod["spec"]["containers"][0], kind=ContainerKind.REGULAR, attempt=0)
    with pytest.raises(RuntimeError_):
        await runtime.start_container(cid)
    status = await runtime.container_status(cid)
    assert status.state is ContainerState.EXITED and status.reason == "ContainerCannotRun"
    assert "no such file" in status.message


@pytest.mark.docker
@pytest.mark.parametrize(("fields", "command", "expected"), [
    pytest.param({"resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}},
                 "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares "
                 "/sys/fs/cgroup/memory/memory.limit_in_bytes", "50000\n256\n67108864", id="cgroup-limits"),
    pytest.param({"securityContext": {"runAsUser": 1337}}, "id -u", "1337", id="run-as-user"),
    pytest.param({"securityContext": {"readOnlyRootFilesystem": True}}, "touch /x 2>&1; echo $?",
                 "touch: /x: Read-only file system\n1", id="read-only-root"),
    pytest.param({"securityContext": {"capabilities": {"drop": ["CHOWN"]}}}, "chown 1 /tmp 2>&1; echo $?",
                 "chown: /tmp: Operation not permitted\n1", id="drop-capability"),
    pytest.param({"workingDir": "/etc", "env": [{"name": "GREETING", "value": "hi"}]}, "echo $GREETING $(pwd)",
                 "hi /etc", id="env-and-workdir"),
])
async def test_container_settings_apply(runtime: DockerRuntime, dclient: docker.DockerClient,
                                        fields: dict[str, Any], command: str, expected: str) -> None:
    pod = make_pod("settings", [ctr("c", ["sh", "-c", f"{command}; sleep 3600"], **fields)])
    _, (cid,) = await start_pod(runtime, pod)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = (await asyncio.to_thread(dclient.containers.get(cid).logs)).decode().strip()
        if logs.count("\n") >= expected.count("\n") and logs:
            break
        await asyncio.sleep(0.05)
    assert logs == expected


@pytest.mark.docker
async def test_sandbox_dns_settings_reach_app_containers(runtime: DockerRuntime, dclient: docker.DockerClient) -> None:
    pod = make_pod("dns", [ctr("c", SLEEP)])
    await runtime.run_pod_sandbox(pod, dns_servers=["10.96.0.10"], dns_searches=["default.svc.cluster.local"],
                                  dns_options=["ndots:5"])
    cid = await runtime.create_container(pod, pod["spec"]["containers"][0], kind=ContainerKind.REGULAR, attempt=0)
    await runtime.start_container(cid)
    resolv = (await exec_(dclient, cid, ["cat", "/etc/resolv.conf"]))[1]
    assert "search default.svc.cluster.local" in resolv and "ndots:5" in resolv


@pytest.mark.docker
async def test_resolved_mounts(runtime: DockerRuntime, dclient: docker.DockerClient, tmp_path: Any) -> None:
    (tmp_path / "data.txt").write_text("from-host")
    pod = make_pod("mounts", [ctr("c", SLEEP)])
    await runtime.run_pod_sandbox(pod)
    cid = await runtime.create_container(pod, pod["spec"]["containers"][0], kind=ContainerKind.REGULAR, attempt=0,
                                         mounts=[{"containerPath": "/data", "hostPath": str(tmp_path),
                                                  "readOnly": True}])
    await runtime.start_container(cid)
    assert (await exec_(dclient, cid, ["cat", "/data/data.txt"]))[1] == "from-host"
    assert (await exec_(dclient, cid, ["touch", "/data/x"]))[0] != 0


@pytest.mark.docker
@pytest.mark.exclusive
@pytest.mark.parametrize(("command", "timeout", "code", "min_s", "max_s"), [
    pytest.param(SLEEP, 5.0, 0, 0.0, 1.5, id="sigterm-honoured"),
    pytest.param(["sh", "-c", "sleep 3600"], 1.0, 137, 0.9, 3.0, id="sigkill-after-timeout"),
])
async def test_stop_with_grace_period(runtime: DockerRuntime, dclient: docker.DockerClient, command: list[str],
                                      timeout: float, code: int, min_s: float, max_s: float) -> None:
    _, (cid,) = await start_pod(runtime, make_pod("stop", [ctr("c", command)]))
    if command == SLEEP:
        assert (await exec_(dclient, cid, ["test", "-f", TRAP_READY], retries=200))[0] == 0, "no TERM trap"
    started = time.monotonic()
    await runtime.stop_container(cid, timeout=timeout)
    elapsed = time.monotonic() - started
    status = await runtime.container_status(cid)
    assert status.state is ContainerState.EXITED and status.exit_code == code
    assert min_s <= elapsed <= max_s


@pytest.mark.docker
async def test_pre_stop_hook_runs_before_sigterm(runtime: DockerRuntime, dclient: docker.DockerClient,
                                                 tmp_path: Any) -> None:
    pod = make_pod("prestop", [ctr("c", SLEEP, lifecycle={"preStop": {"exec": {
        "command": ["sh", "-c", "echo bye > /out/hook"]}}})])
    await runtime.run_pod_sandbox(pod)
    cid = await runtime.create_container(pod, pod["spec"]["containers"][0], kind=ContainerKind.REGULAR, attempt=0,
                                         mounts=[{"containerPath": "/out", "hostPath": str(tmp_path)}])
    await runtime.start_container(cid)
    await runtime.stop_container(cid, timeout=5)
    assert (tmp_path / "hook").read_text() == "bye\n"


@pytest.mark.docker
async def test_die_event_is_delivered_quickly(runtime: DockerRuntime, dclient: docker.DockerClient) -> None:
    loop = asyncio.get_running_loop()
    got: list[tuple[RuntimeEvent, float]] = []
    runtime.set_event_handler(lambda e: got.append((e, loop.time())))
    assert await runtime.wait_events_connected()
    pod = make_pod("events", [ctr("c", SLEEP)])
    _, (cid,) = await start_pod(runtime, pod)
    uid = pod["metadata"]["uid"]
    started = loop.time()
    await asyncio.to_thread(dclient.api.kill, cid)
    while not any(e.type is RuntimeEventType.CONTAINER_DIED and e.container_id == cid for e, _ in got):
        assert loop.time() - started < 2, got
        await asyncio.sleep(0.005)
    died_at = next(t for e, t in got if e.type is RuntimeEventType.CONTAINER_DIED)
    assert died_at - started < 0.5
    types = {(e.type, e.pod_uid) for e, _ in got}
    assert (RuntimeEventType.CONTAINER_STARTED, uid) in types
    assert (RuntimeEventType.SANDBOX_CHANGED, uid) in types
    print(f"\nkill → die event delivered on the loop: {1000 * (died_at - started):.0f} ms")


@pytest.mark.docker
async def test_a_new_runtime_rebuilds_from_labels(runtime: DockerRuntime, dclient: docker.DockerClient) -> None:
    init = ctr("setup", ["true"])
    pod = make_pod("rebuild", [ctr("app", ["sh", "-c", "exit 1"])], initContainers=[init])
    sandbox = await runtime.run_pod_sandbox(pod)
    iid = await runtime.create_container(pod, init, kind=ContainerKind.INIT, attempt=0)
    await runtime.start_container(iid)
    await wait_exited(runtime, iid)
    for attempt in (0, 1):
        cid = await runtime.create_container(pod, pod["spec"]["containers"][0], kind=ContainerKind.REGULAR,
                                             attempt=attempt)
        await runtime.start_container(cid)
        await wait_exited(runtime, cid)

    fresh = DockerRuntime(dclient, runtime.settings)
    uid = pod["metadata"]["uid"]
    assert await fresh.list_pod_uids() == [uid]
    assert await fresh.pod_sandbox_status(uid) == sandbox
    seen = [(c.name, c.kind, c.attempt, c.exit_code) for c in await fresh.list_containers(uid)]
    assert seen == [("setup", ContainerKind.INIT, 0, 0), ("app", ContainerKind.REGULAR, 0, 1),
                    ("app", ContainerKind.REGULAR, 1, 1)]
    other_node = DockerRuntime(dclient, DockerRuntimeSettings(cluster=CLUSTER, node_name="someone-else"))
    assert await other_node.list_pod_uids() == []

    await fresh.remove_pod_sandbox(uid)
    assert await fresh.list_pod_uids() == [] and await fresh.list_containers(uid) == []
    assert await fresh.pod_sandbox_status(uid) is None


@pytest.mark.docker
@pytest.mark.parametrize(("image", "policy", "reason"), [
    pytest.param("kubelab/absent:1.0", "Never", "ErrImageNeverPull", id="never-missing"),
    pytest.param("kubelab/absent:1.0", None, "ErrImagePull", id="if-not-present-missing"),
    pytest.param(IMAGE, "Always", "ErrImagePull", id="always-present"),
])
async def test_image_pull_errors(runtime: DockerRuntime, image: str, policy: str | None, reason: str) -> None:
    container = {"name": "c", "image": image, **({"imagePullPolicy": policy} if policy else {})}
    pod = make_pod("images", [container])
    await runtime.run_pod_sandbox(pod)
    with pytest.raises(RuntimeError_) as info:
        await runtime.create_container(pod, container, kind=ContainerKind.REGULAR, attempt=0)
    assert info.value.reason == reason
    if reason == "ErrImagePull":
        assert "no registry is reachable" in str(info.value)


@pytest.mark.docker
async def test_dead_sandbox_is_replaced(runtime: DockerRuntime) -> None:
    pod = make_pod("replace", [ctr("c", SLEEP)])
    _, (cid,) = await start_pod(runtime, pod)
    uid = pod["metadata"]["uid"]
    await runtime.stop_pod_sandbox(uid)
    stopped = await runtime.pod_sandbox_status(uid)
    assert stopped is not None and stopped.state is SandboxState.NOT_READY
    second = await runtime.run_pod_sandbox(pod)
    assert second.state is SandboxState.READY and second.id != stopped.id
    assert (await runtime.container_status(cid)).state is ContainerState.EXITED


@pytest.mark.docker
async def test_cleanup_cluster_leaves_nothing(dclient: docker.DockerClient, subnet: str) -> None:
    cluster = f"t-clean-{uuid.uuid4().hex[:6]}"
    other_subnet = subnet.replace("10.250.", "10.251.")
    rt = DockerRuntime(dclient, DockerRuntimeSettings(cluster=cluster, node_name="n", pod_subnet=other_subnet))
    try:
        await start_pod(rt, make_pod("p", [ctr("c", SLEEP)]))
        removed = await asyncio.to_thread(cleanup_cluster, dclient, cluster)
        assert removed == (2, 1)
        selector = {"label": [f"{LABEL_CLUSTER}={cluster}"]}
        assert dclient.containers.list(all=True, filters=selector) == []
        assert dclient.networks.list(filters=selector) == []
    finally:
        await rt.close()
        cleanup_cluster(dclient, cluster)


@pytest.mark.docker
async def test_pod_start_time_against_raw_sdk(runtime: DockerRuntime, dclient: docker.DockerClient) -> None:
    await runtime.ensure_network()
    ours, raw = [], []
    labels = {LABEL_CLUSTER: CLUSTER, LABEL_NODE: runtime.settings.node_name}
    for i in range(5):
        pod = make_pod(f"bench-{i}", [ctr("c", SLEEP)])
        started = time.perf_counter()
        await start_pod(runtime, pod)
        ours.append(time.perf_counter() - started)

        started = time.perf_counter()

        def run_raw() -> None:
            pause = dclient.containers.run(IMAGE, PAUSE_COMMAND, network=runtime.settings.network, detach=True,
                                           labels=labels, hostname="raw")
            dclient.containers.run(IMAGE, SLEEP, network_mode=f"container:{pause.id}", detach=True, labels=labels)

        await asyncio.to_thread(run_raw)
        raw.append(time.perf_counter() - started)
    ours.sort()
    raw.sort()
    print(f"\npod start (pause + 1 container), median of 5: DockerRuntime {ours[2]:.3f}s, raw SDK {raw[2]:.3f}s")
    assert ours[2] < raw[2] * 2 + 0.2
