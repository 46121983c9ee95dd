"""The fake runtime on its own: timings, crash and readiness flags, IP allocation, stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelet.runtime.fake import FakeRuntime, FakeRuntimeSettings
from kubelet.runtime.interface import (
    ContainerKind,
    ContainerNotFoundError,
    ContainerState,
    RuntimeError_,
    RuntimeEvent,
    RuntimeEventType,
)

FAST = FakeRuntimeSettings(start_delay=0.01, crash_after=0.02, stop_delay=0.0)


def pod(uid: str = "u1", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default", "uid": uid, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}


async def start(runtime: FakeRuntime, obj: dict[str, Any], image: str = "nginx:1.25",
                kind: ContainerKind = ContainerKind.REGULAR) -> str:
    await runtime.run_pod_sandbox(obj)
    container_id = await runtime.create_container(obj, {"name": "app", "image": image}, kind=kind, attempt=0)
    await runtime.start_container(container_id)
    return container_id


async def wait_state(runtime: FakeRuntime, container_id: str, state: ContainerState) -> None:
    async with asyncio.timeout(2):
        while (await runtime.container_status(container_id)).state is not state:
            await asyncio.sleep(0.005)


async def test_container_runs_after_the_start_delay_and_reports_events() -> None:
    runtime = FakeRuntime(settings=FAST)
    events: list[RuntimeEvent] = []
    runtime.set_event_handler(events.append)
    container_id = await start(runtime, pod())
    assert (await runtime.container_status(container_id)).state is ContainerState.CREATED
    await wait_state(runtime, container_id, ContainerState.RUNNING)
    assert events == [RuntimeEvent(RuntimeEventType.SANDBOX_CHANGED, "u1"),
                      RuntimeEvent(RuntimeEventType.CONTAINER_STARTED, "u1", container_id)]
    assert runtime.is_ready(pod(), await runtime.container_status(container_id))


@pytest.mark.parametrize(
    ("image", "annotations", "kind", "exit_code", "reason"),
    [
        pytest.param("crash:1", {}, ContainerKind.REGULAR, 1, "Error", id="crash-image"),
        pytest.param("nginx", {"kubelab.dev/fake-crash": "true"}, ContainerKind.REGULAR, 1, "Error",
                     id="crash-annotation"),
        pytest.param("busybox", {}, ContainerKind.INIT, 0, "Completed", id="init-completes"),
    ],
)
async def test_containers_that_exit(image: str, annotations: dict[str, str], kind: ContainerKind, exit_code: int,
                                    reason: str) -> None:
    runtime = FakeRuntime(settings=FAST)
    container_id = await start(runtime, pod(annotations=annotations), image=image, kind=kind)
    await wait_state(runtime, container_id, ContainerState.EXITED)
    status = await runtime.container_status(container_id)
    assert (status.exit_code, status.reason) == (exit_code, reason)
    assert status.started_at is not None and status.finished_at is not None


async def test_not_ready_annotation_fails_readiness() -> None:
    runtime = FakeRuntime(settings=FAST)
    obj = pod(annotations={"kubelab.dev/fake-not-ready": "true"})
    container_id = await start(runtime, obj)
    await wait_state(runtime, container_id, ContainerState.RUNNING)
    assert not runtime.is_ready(obj, await runtime.container_status(container_id))


@pytest.mark.parametrize(
    ("stop_delay", "timeout", "exit_code"),
    [
        pytest.param(0.0, 30.0, 0, id="prompt-stop"),
        pytest.param(0.05, 30.0, 0, id="prestop-within-grace"),
        pytest.param(0.05, 0.0, 137, id="killed-after-grace"),
    ],
)
async def test_stop(stop_delay: float, timeout: float, exit_code: int) -> None:
    runtime = FakeRuntime(settings=FakeRuntimeSettings(start_delay=0.01, stop_delay=stop_delay))
    container_id = await start(runtime, pod())
    await wait_state(runtime, container_id, ContainerState.RUNNING)
    await runtime.stop_container(container_id, timeout=timeout)
    assert (await runtime.container_status(container_id)).exit_code == exit_code


async def test_ips_come_from_the_node_range_and_are_reused() -> None:
    runtime = FakeRuntime(pod_cidr="10.1.2.0/30", settings=FAST)
    first = await runtime.run_pod_sandbox(pod("a"))
    assert first.ip == "10.1.2.2"
    assert (await runtime.run_pod_sandbox(pod("a"))).ip == first.ip  # idempotent
    with pytest.raises(RuntimeError_):
        await runtime.run_pod_sandbox(pod("b"))
    await runtime.remove_pod_sandbox("a")
    assert (await runtime.run_pod_sandbox(pod("b"))).ip == first.ip
    assert await runtime.list_pod_uids() == ["b"]


async def test_remove_sandbox_removes_containers() -> None:
    runtime = FakeRuntime(settings=FAST)
    container_id = await start(runtime, pod())
    await runtime.remove_pod_sandbox("u1")
    assert await runtime.list_containers("u1") == []
    with pytest.raises(ContainerNotFoundError):
        await runtime.container_status(container_id)


async def test_simulated_output_records_start_and_exit_and_goes_with_the_sandbox() -> None:
    runtime = FakeRuntime(pod_cidr="127.128.5.0/24", settings=FAST)
    container_id = await start(runtime, pod(), image="crash:1")
    assert runtime.output(container_id).lines == []
    await wait_state(runtime, container_id, ContainerState.EXITED)
    output = runtime.output(container_id)
    assert [line for _at, line in output.lines] == [
        b"hollow container app started: image crash:1, attempt 0, pod IP 127.128.5.2 (simulated: no process runs)\n",
        b"hollow container app exited with code 1 (Error)\n"]
    assert output.finished
    assert [c.id for c in runtime.attempts("default", "p", "app")] == [container_id]
    assert runtime.attempts("default", "other", "app") == []
    await runtime.remove_pod_sandbox("u1")
    assert runtime.attempts("default", "p", "app") == []
    with pytest.raises(ContainerNotFoundError):
        runtime.output(container_id)
