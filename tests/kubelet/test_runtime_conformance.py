"""One suite for every :class:`~kubelet.runtime.interface.ContainerRuntime`: the fake and Docker.

What the protocol promises, run against ``FakeRuntime`` (hollow nodes, unit tests) and
``DockerRuntime`` (``@pytest.mark.docker``, a real engine): sandboxes (idempotent run, IP in the
pod network, stop, replacement of a dead one, removal; a terminal pod's sandbox stopped gives its IP
back while its exited containers and their logs remain), containers (create, start, stop with a
grace period, exit codes and reasons, attempts as restart counts, listing per pod, removal with
the sandbox, errors for unknown ids), exec, and events. A behaviour that passes on one runtime
and fails on the other is a bug in one of them: the kubelet only ever sees the protocol.

The fake runs no process, so the containers here are written to mean the same on both: a
container with the ``SLEEP`` command runs until stopped (the fake's regular containers run
forever); an init container running ``true`` completes with 0 (the fake's init containers do);
a pod annotated ``kubelab.dev/fake-crash`` runs a command exiting 1 (the fake crashes it).
The Docker runtime uses its own cluster name and a free /24 of 10.250.0.0/16 for its pod bridge;
its small-range nodes allocate from the top /29 of it (Docker's own IPAM hands out low addresses).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest

from kubelab.images import ensure_images
from kubelet.runtime.docker import DockerRuntime, DockerRuntimeSettings, cleanup_cluster
from kubelet.runtime.docker_spec import LABEL_CLUSTER, LABEL_NODE
from kubelet.runtime.fake import COMPLETE_AFTER_ANNOTATION, CRASH_ANNOTATION, FakeRuntime, FakeRuntimeSettings
from kubelet.runtime.interface import (
    ContainerKind,
    ContainerNotFoundError,
    ContainerRuntime,
    ContainerState,
    ContainerStatus,
    RuntimeError_,
    RuntimeEvent,
    RuntimeEventType,
    SandboxState,
)
from tests.docker_daemon import ensure_docker

IMAGE = "kubelab/busybox:1.35"
CLUSTER = f"t-conf-{uuid.uuid4().hex[:6]}"
READY_FILE = "/tmp/trap-installed"
SLEEP = ["sh", "-c", f"trap 'exit 0' TERM; touch {READY_FILE}; sleep 3600 & wait"]
"""Runs until SIGTERM, then exits 0; ``READY_FILE`` exists once the trap is installed."""
IGNORES_TERM = ["sh", "-c", "sleep 3600"]
"""PID 1 without a TERM handler: only SIGKILL stops it."""
CRASH = ["sh", "-c", "sleep 0.2; exit 1"]
ONE_SHOT = ["sh", "-c", "echo one-shot work done"]
"""A Job's container: prints and exits 0 (the fake completes it through ``COMPLETE_AFTER_ANNOTATION``)."""
WAIT = 30.0
"""Generous: the machine is shared and Docker is slow under load."""

FAKE_SETTINGS = FakeRuntimeSettings(start_delay=0.05, crash_after=0.2, stop_delay=0.2)
"""stop_delay > 0: the simulated container needs a moment to handle SIGTERM, as ``SLEEP`` does."""


@dataclass
class Subject:
    """A runtime under test, the pod network it allocates from, and the events it reported."""

    runtime: ContainerRuntime
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    other_node: Callable[[], ContainerRuntime]
    """A runtime of another node of the same cluster."""
    small_node: Callable[[], ContainerRuntime]
    """A runtime of another node whose pod CIDR is a /29: a handful of pod IPs."""
    logs: Callable[[ContainerRuntime, str], Awaitable[bytes]]
    """The output a container printed, as the node's log source reads it."""
    events: list[RuntimeEvent] = field(default_factory=list)


def make_pod(name: str, containers: list[dict[str, Any]], *, crash: bool = False, one_shot: bool = False,
             **spec: Any) -> dict[str, Any]:
    annotations = {CRASH_ANNOTATION: "true"} if crash else {}
    if one_shot:
        annotations[COMPLETE_AFTER_ANNOTATION] = "0.1"
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()), "annotations": annotations},
            "spec": {"containers": containers, **spec}}


def ctr(name: str, command: list[str]) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": command}


# -- runtimes --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    client = ensure_docker()
    ensure_images(client, ["busybox"])
    yield client
    cleanup_cluster(client, CLUSTER)
    client.close()


@pytest.fixture(scope="module")
def docker_subnet(docker_client: docker.DockerClient) -> str:
    used = {str(cfg.get("Subnet")) for n in docker_client.networks.list(greedy=True)
            for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []}
    while True:
        candidate = f"10.250.{random.randrange(256)}.0/24"
        if candidate not in used:
            return candidate


async def _fake_logs(runtime: ContainerRuntime, container_id: str) -> bytes:
    assert isinstance(runtime, FakeRuntime)
    return b"".join(line for _, line in runtime.output(container_id).lines)


async def _fake_subject() -> AsyncIterator[Subject]:
    cidr = "10.244.7.0/24"
    subject = Subject(FakeRuntime(pod_cidr=cidr, settings=FAKE_SETTINGS), ipaddress.ip_network(cidr),
                      other_node=lambda: FakeRuntime(pod_cidr=cidr, settings=FAKE_SETTINGS),
                      small_node=lambda: FakeRuntime(pod_cidr="10.244.8.0/29", settings=FAKE_SETTINGS),
                      logs=_fake_logs)
    subject.runtime.set_event_handler(subject.events.append)
    yield subject


async def _docker_subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    client: docker.DockerClient = request.getfixturevalue("docker_client")
    subnet: str = request.getfixturevalue("docker_subnet")
    node = f"node-{uuid.uuid4().hex[:6]}"
    runtime = DockerRuntime(client, DockerRuntimeSettings(cluster=CLUSTER, node_name=node, pod_subnet=subnet))
    network = ipaddress.ip_network(subnet)
    small_nodes: list[DockerRuntime] = []

    def small_node() -> DockerRuntime:
        small = DockerRuntime(client, DockerRuntimeSettings(
            cluster=CLUSTER, node_name=f"{node}-small{len(small_nodes)}", pod_subnet=subnet,
            pod_cidr=f"{network.network_address + 248}/29"))
        small_nodes.append(small)
        return small

    async def logs(_runtime: ContainerRuntime, container_id: str) -> bytes:
        return bytes(await asyncio.to_thread(lambda: client.containers.get(container_id).logs()))

    subject = Subject(runtime, network,
                      other_node=lambda: DockerRuntime(client, DockerRuntimeSettings(cluster=CLUSTER,
                                                                                      node_name="another-node")),
                      small_node=small_node, logs=logs)
    runtime.set_event_handler(subject.events.append)
    assert await runtime.wait_events_connected(WAIT)
    yield subject
    await runtime.close()
    for closing in small_nodes:
        await closing.close()
    for name in [node, *(s.settings.node_name for s in small_nodes)]:
        for c in client.containers.list(all=True, filters={"label": [f"{LABEL_CLUSTER}={CLUSTER}",
                                                                     f"{LABEL_NODE}={name}"]}):
            c.remove(force=True)


@pytest.fixture(params=[pytest.param("fake"), pytest.param("docker", marks=pytest.mark.docker)])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    make = _fake_subject() if request.param == "fake" else _docker_subject(request)
    async for value in make:
        yield value


# -- helpers ---------------------------------------------------------------------------------------
async def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` (a coroutine function or a plain callable) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def in_state(rt: ContainerRuntime, cid: str, state: ContainerState) -> ContainerStatus:
    async def check() -> ContainerStatus | None:
        status = await rt.container_status(cid)
        return status if status.state is state else None

    found: ContainerStatus = await until(check, f"container {cid[:12]} {state.value}")
    return found


async def running(rt: ContainerRuntime, pod: dict[str, Any], container: dict[str, Any], *,
                  kind: ContainerKind = ContainerKind.REGULAR, attempt: int = 0) -> str:
    """Create and start ``container``; its id once running (and, for ``SLEEP``, its trap installed)."""
    cid = await rt.create_container(pod, container, kind=kind, attempt=attempt)
    await rt.start_container(cid)
    await in_state(rt, cid, ContainerState.RUNNING)
    if container.get("command") == SLEEP:
        async def trap_installed() -> bool:
            code, _ = await rt.exec_sync(cid, ["test", "-f", READY_FILE], timeout=WAIT)
            return code == 0

        await until(trap_installed, "the TERM trap")
    return cid


def seen(subject: Subject, type_: RuntimeEventType, pod_uid: str, container_id: str = "") -> int:
    return sum(1 for e in subject.events if e.type is type_ and e.pod_uid == pod_uid
               and (not container_id or e.container_id == container_id))


# -- identity --------------------------------------------------------------------------------------
async def test_version_carries_the_runtime_name(subject: Subject) -> None:
    rt = subject.runtime
    assert rt.name in ("fake", "docker")
    assert rt.version().startswith(f"{rt.name}://") and len(rt.version()) > len(rt.name) + 3


# -- sandboxes -------------------------------------------------------------------------------------
async def test_sandbox_run_is_idempotent_and_owns_an_ip_of_the_pod_network(subject: Subject) -> None:
    rt = subject.runtime
    pod, other = make_pod("a", []), make_pod("b", [])
    uid = pod["metadata"]["uid"]
    sandbox = await rt.run_pod_sandbox(pod)
    assert (sandbox.pod_uid, sandbox.state) == (uid, SandboxState.READY)
    assert ipaddress.ip_address(sandbox.ip) in subject.network
    assert await rt.run_pod_sandbox(pod) == sandbox
    assert await rt.pod_sandbox_status(uid) == sandbox
    second = await rt.run_pod_sandbox(other)
    assert second.ip != sandbox.ip and second.id != sandbox.id
    assert sorted(await rt.list_pod_uids()) == sorted([uid, other["metadata"]["uid"]])
    assert await rt.pod_sandbox_status(str(uuid.uuid4())) is None


async def test_sandbox_stop_and_remove_are_idempotent(subject: Subject) -> None:
    rt = subject.runtime
    pod = make_pod("stop", [])
    uid = pod["metadata"]["uid"]
    await rt.run_pod_sandbox(pod)
    await rt.stop_pod_sandbox(uid)
    await rt.stop_pod_sandbox(uid)
    stopped = await rt.pod_sandbox_status(uid)
    assert stopped is not None and stopped.state is SandboxState.NOT_READY
    assert uid in await rt.list_pod_uids()
    await rt.remove_pod_sandbox(uid)
    await rt.remove_pod_sandbox(uid)
    assert await rt.pod_sandbox_status(uid) is None
    assert uid not in await rt.list_pod_uids()
    await rt.stop_pod_sandbox(str(uuid.uuid4()))
    await rt.remove_pod_sandbox(str(uuid.uuid4()))


async def test_a_dead_sandbox_is_replaced_and_its_containers_stopped(subject: Subject) -> None:
    rt = subject.runtime
    container = ctr("c", SLEEP)
    pod = make_pod("replace", [container])
    uid = pod["metadata"]["uid"]
    first = await rt.run_pod_sandbox(pod)
    cid = await running(rt, pod, container)
    await rt.stop_pod_sandbox(uid)
    second = await rt.run_pod_sandbox(pod)
    assert second.state is SandboxState.READY and second.id != first.id
    assert ipaddress.ip_address(second.ip) in subject.network
    assert await rt.pod_sandbox_status(uid) == second
    assert (await rt.container_status(cid)).state is ContainerState.EXITED
    assert await rt.list_pod_uids() == [uid]


async def test_a_terminal_pods_sandbox_is_stopped_and_its_ip_released_its_logs_remain(subject: Subject) -> None:
    rt = subject.small_node()
    job = ctr("job", ONE_SHOT)
    done = make_pod("done", [job], one_shot=True, restartPolicy="Never")
    uid = done["metadata"]["uid"]
    sandbox = await rt.run_pod_sandbox(done)
    cid = await rt.create_container(done, job, kind=ContainerKind.REGULAR, attempt=0)
    await rt.start_container(cid)
    assert (await in_state(rt, cid, ContainerState.EXITED)).exit_code == 0
    printed = await until(lambda: subject.logs(rt, cid), "the job's output")
    with pytest.raises(RuntimeError_):  # the pod CIDR fills up (at most six addresses in a /29)
        for index in range(8):
            await rt.run_pod_sandbox(make_pod(f"fill-{index}", []))

    await rt.stop_pod_sandbox(uid)
    stopped = await rt.pod_sandbox_status(uid)
    assert stopped is not None and (stopped.state, stopped.ip) == (SandboxState.NOT_READY, "")
    successor = await rt.run_pod_sandbox(make_pod("successor", []))
    assert (successor.state, successor.ip) == (SandboxState.READY, sandbox.ip)  # the one address free again
    [kept] = await rt.list_containers(uid)
    assert (kept.id, kept.state, kept.exit_code) == (cid, ContainerState.EXITED, 0)
    assert await subject.logs(rt, cid) == printed
    assert uid in await rt.list_pod_uids()


async def test_containers_need_a_ready_sandbox(subject: Subject) -> None:
    rt = subject.runtime
    container = ctr("c", SLEEP)
    pod = make_pod("nosandbox", [container])
    with pytest.raises(RuntimeError_):
        await rt.create_container(pod, container, kind=ContainerKind.REGULAR, attempt=0)
    await rt.run_pod_sandbox(pod)
    cid = await rt.create_container(pod, container, kind=ContainerKind.REGULAR, attempt=0)
    await rt.stop_pod_sandbox(pod["metadata"]["uid"])
    with pytest.raises(RuntimeError_):
        await rt.create_container(pod, container, kind=ContainerKind.REGULAR, attempt=1)
    with pytest.raises(RuntimeError_):
        await rt.start_container(cid)


async def test_pods_are_listed_only_by_their_own_node(subject: Subject) -> None:
    rt = subject.runtime
    pod = make_pod("mine", [])
    await rt.run_pod_sandbox(pod)
    other = subject.other_node()
    assert pod["metadata"]["uid"] not in await other.list_pod_uids()
    assert await other.pod_sandbox_status(pod["metadata"]["uid"]) is None


# -- containers ------------------------------------------------------------------------------------
async def test_container_lifecycle_and_status(subject: Subject) -> None:
    rt = subject.runtime
    container = ctr("app", SLEEP)
    pod = make_pod("life", [container])
    uid = pod["metadata"]["uid"]
    await rt.run_pod_sandbox(pod)
    cid = await rt.create_container(pod, container, kind=ContainerKind.REGULAR, attempt=0)
    created = await rt.container_status(cid)
    assert (created.id, created.pod_uid, created.name, created.kind, created.attempt, created.image) == (
        cid, uid, "app", ContainerKind.REGULAR, 0, IMAGE)
    assert created.state is ContainerState.CREATED and created.exit_code is None and created.image_id

    await rt.start_container(cid)
    up = await in_state(rt, cid, ContainerState.RUNNING)
    assert up.started_at is not None and up.started_at >= created.created_at.replace(microsecond=0)
    await until(lambda: seen(subject, RuntimeEventType.CONTAINER_STARTED, uid, cid), "a ContainerStarted event")
    assert [c.id for c in await rt.list_containers(uid)] == [cid]


@pytest.mark.parametrize(("command", "timeout", "code", "reason"), [
    pytest.param(SLEEP, 20.0, 0, "Completed", id="sigterm-honoured"),
    pytest.param(IGNORES_TERM, 0.0, 137, "Error", id="sigkill-at-the-end-of-the-grace-period"),
])
async def test_stop_container(subject: Subject, command: list[str], timeout: float, code: int, reason: str) -> None:
    rt = subject.runtime
    container = ctr("c", command)
    pod = make_pod("stopping", [container])
    uid = pod["metadata"]["uid"]
    await rt.run_pod_sandbox(pod)
    cid = await running(rt, pod, container)
    await rt.stop_container(cid, timeout=timeout)
    status = await rt.container_status(cid)  # stop returns once the container exited
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, code, reason)
    assert status.started_at is not None and status.finished_at is not None
    assert status.finished_at >= status.started_at
    await until(lambda: seen(subject, RuntimeEventType.CONTAINER_DIED, uid, cid), "a ContainerDied event")
    await rt.stop_container(cid, timeout=timeout)  # idempotent
    assert await rt.container_status(cid) == status


@pytest.mark.parametrize(("kind", "container", "crash", "code", "reason"), [
    pytest.param(ContainerKind.INIT, ctr("init", ["true"]), False, 0, "Completed", id="init-completes"),
    pytest.param(ContainerKind.REGULAR, ctr("app", CRASH), True, 1, "Error", id="crash"),
])
async def test_exit_code_and_reason(subject: Subject, kind: ContainerKind, container: dict[str, Any], crash: bool,
                                    code: int, reason: str) -> None:
    rt = subject.runtime
    pod = make_pod("exits", [container], crash=crash)
    uid = pod["metadata"]["uid"]
    await rt.run_pod_sandbox(pod)
    cid = await rt.create_container(pod, container, kind=kind, attempt=0)
    await rt.start_container(cid)
    await until(lambda: seen(subject, RuntimeEventType.CONTAINER_DIED, uid, cid), "a ContainerDied event")
    status = await in_state(rt, cid, ContainerState.EXITED)
    assert (status.kind, status.exit_code, status.reason) == (kind, code, reason)
    assert status.started_at is not None and status.finished_at is not None
    assert status.finished_at >= status.started_at


async def test_attempts_are_kept_as_restart_counts(subject: Subject) -> None:
    rt = subject.runtime
    container = ctr("app", CRASH)
    pod = make_pod("restarts", [container], crash=True)
    uid = pod["metadata"]["uid"]
    await rt.run_pod_sandbox(pod)
    ids = []
    for attempt in (0, 1, 2):
        cid = await rt.create_container(pod, container, kind=ContainerKind.REGULAR, attempt=attempt)
        await rt.start_container(cid)
        await in_state(rt, cid, ContainerState.EXITED)
        ids.append(cid)
    listed = await rt.list_containers(uid)
    assert [(c.id, c.name, c.attempt, c.exit_code) for c in listed] == [
        (ids[0], "app", 0, 1), (ids[1], "app", 1, 1), (ids[2], "app", 2, 1)]
    assert [(await rt.container_status(cid)).attempt for cid in ids] == [0, 1, 2]


async def test_containers_are_listed_per_pod_and_removed_with_the_sandbox(subject: Subject) -> None:
    rt = subject.runtime
    init, app = ctr("init", ["true"]), ctr("app", SLEEP)
    pod, other = make_pod("one", [app], initContainers=[init]), make_pod("two", [app])
    uid = pod["metadata"]["uid"]
    for p in (pod, other):
        await rt.run_pod_sandbox(p)
    iid = await rt.create_container(pod, init, kind=ContainerKind.INIT, attempt=0)
    await rt.start_container(iid)
    await in_state(rt, iid, ContainerState.EXITED)
    aid = await running(rt, pod, app)
    oid = await running(rt, other, app)
    assert [(c.id, c.kind) for c in await rt.list_containers(uid)] == [
        (iid, ContainerKind.INIT), (aid, ContainerKind.REGULAR)]
    assert [c.id for c in await rt.list_containers(other["metadata"]["uid"])] == [oid]
    assert await rt.list_containers(str(uuid.uuid4())) == []

    await rt.stop_container(aid, timeout=20)
    await rt.stop_pod_sandbox(uid)
    await rt.remove_pod_sandbox(uid)
    assert await rt.list_containers(uid) == []
    for cid in (iid, aid):
        with pytest.raises(ContainerNotFoundError):
            await rt.container_status(cid)
    assert (await rt.container_status(oid)).state is ContainerState.RUNNING


async def test_unknown_containers_are_not_found(subject: Subject) -> None:
    rt = subject.runtime
    unknown = uuid.uuid4().hex * 2
    with pytest.raises(ContainerNotFoundError):
        await rt.container_status(unknown)
    with pytest.raises(ContainerNotFoundError):
        await rt.start_container(unknown)
    with pytest.raises(ContainerNotFoundError):
        await rt.stop_container(unknown, timeout=1)


async def test_exec_runs_only_in_a_running_container(subject: Subject) -> None:
    rt = subject.runtime
    container = ctr("app", SLEEP)
    pod = make_pod("exec", [container])
    await rt.run_pod_sandbox(pod)
    cid = await running(rt, pod, container)
    code, _ = await rt.exec_sync(cid, ["true"], timeout=WAIT)
    assert code == 0
    await rt.stop_container(cid, timeout=20)
    with pytest.raises(RuntimeError_):
        await rt.exec_sync(cid, ["true"], timeout=WAIT)


# -- events ----------------------------------------------------------------------------------------
async def test_sandbox_changes_are_reported(subject: Subject) -> None:
    rt = subject.runtime
    pod = make_pod("sandbox-events", [])
    uid = pod["metadata"]["uid"]
    await rt.run_pod_sandbox(pod)
    await until(lambda: seen(subject, RuntimeEventType.SANDBOX_CHANGED, uid), "SandboxChanged on start")
    before = seen(subject, RuntimeEventType.SANDBOX_CHANGED, uid)
    await rt.stop_pod_sandbox(uid)
    await until(lambda: seen(subject, RuntimeEventType.SANDBOX_CHANGED, uid) > before, "SandboxChanged on stop")
    assert not [e for e in subject.events if e.pod_uid != uid]
