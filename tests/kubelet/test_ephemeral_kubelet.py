"""Ephemeral containers on the fake runtime: started once in the running pod, never restarted,
reported in ``ephemeralContainerStatuses`` only (the pod's phase and readiness do not change)."""

from __future__ import annotations

from typing import Any

from kubelet.runtime.interface import ContainerState
from tests.kubelet.conftest import eventually
from tests.kubelet.test_image_pull_backoff import Harness, make_pod


async def running(h: Harness, container_id: str) -> None:
    async def check() -> bool:
        return (await h.runtime.container_status(container_id)).state is ContainerState.RUNNING

    await eventually(check)


async def test_ephemeral_container_starts_once_and_has_its_own_status() -> None:
    pod = make_pod()
    h = Harness(pod)
    h.runtime.missing_images.clear()
    await h.sync()
    app_id = (await h.runtime.list_containers("uid-1"))[0].id
    await running(h, app_id)
    pod["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "kubelab/busybox:1.35",
                                           "targetContainerName": "app"}]
    await h.sync()
    by_name = {c.name: c for c in await h.runtime.list_containers("uid-1")}
    assert set(by_name) == {"app", "debugger"}
    await running(h, by_name["debugger"].id)
    await h.sync()
    status: dict[str, Any] = pod["status"]
    [debug] = status["ephemeralContainerStatuses"]
    assert debug["name"] == "debugger" and "running" in debug["state"] and debug["ready"] is False
    assert [c["name"] for c in status["containerStatuses"]] == ["app"]
    assert status["phase"] == "Running"
    # It exits: it stays terminated, the pod keeps running.
    h.runtime.simulate_exit(by_name["debugger"].id, 0)
    await h.sync()
    attempts = [c for c in await h.runtime.list_containers("uid-1") if c.name == "debugger"]
    assert len(attempts) == 1 and attempts[0].state is ContainerState.EXITED
    assert "terminated" in pod["status"]["ephemeralContainerStatuses"][0]["state"]
    assert pod["status"]["phase"] == "Running"
