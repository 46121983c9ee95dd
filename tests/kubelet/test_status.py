"""Pod status computation (pure): phases, container states, conditions, QoS; and status writes
that fail are retried until they land."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubelet.hollow import KubeletGroup
from kubelet.runtime.interface import ContainerKind, ContainerState, ContainerStatus, SandboxState, SandboxStatus
from kubelet.settings import KubeletSettings
from kubelet.status import Waiting, compute_pod_status, qos_class
from machinery.client.rest import ApiClient
from machinery.errors import ServiceUnavailableError
from machinery.resources import PODS, ResourceInfo
from tests.apiserver.conftest import embedded_api
from tests.kubelet.conftest import eventually

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SANDBOX = SandboxStatus(pod_uid="u", id="s", state=SandboxState.READY, ip="10.0.0.2", created_at=T0)


def pod(restart: str = "Always", init: bool = False, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": restart, "containers": [{"name": "app", "image": "img"}]}
    if init:
        spec["initContainers"] = [{"name": "setup", "image": "img"}]
    return {"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": spec, "status": status or {}}


def c(state: ContainerState, *, attempt: int = 0, exit_code: int | None = None, name: str = "app",
      kind: ContainerKind = ContainerKind.REGULAR) -> ContainerStatus:
    exited = state is ContainerState.EXITED
    return ContainerStatus(id=f"{name}{attempt}", pod_uid="u", name=name, kind=kind, attempt=attempt, image="img",
                           image_id="fake://img", state=state, created_at=T0, started_at=T0,
                           finished_at=T0 if exited else None, exit_code=exit_code,
                           reason=("Completed" if exit_code == 0 else "Error") if exited else "")


def compute(obj: dict[str, Any], containers: list[ContainerStatus], waiting: dict[str, Waiting] | None = None,
            ready: bool = True, terminal: bool = False) -> dict[str, Any]:
    return compute_pod_status(obj, sandbox=SANDBOX, containers=containers, waiting=waiting or {},
                              is_ready=lambda _c: ready, host_ip="10.200.0.1", now="2024-01-01T00:00:10Z",
                              runtime="fake", terminal=terminal)


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {cond["type"]: cond["status"] for cond in status["conditions"]}


CRASH = Waiting("CrashLoopBackOff", "back-off 10s")


@pytest.mark.parametrize(
    ("restart", "containers", "waiting", "terminal", "phase"),
    [
        pytest.param("Always", [], {}, False, "Pending", id="nothing-started"),
        pytest.param("Always", [c(ContainerState.CREATED)], {}, False, "Pending", id="creating"),
        pytest.param("Always", [c(ContainerState.RUNNING)], {}, False, "Running", id="running"),
        pytest.param("Always", [c(ContainerState.EXITED, exit_code=1)], {"app": CRASH}, False, "Running",
                     id="crashloop-always"),
        pytest.param("OnFailure", [c(ContainerState.EXITED, exit_code=0)], {}, False, "Succeeded",
                     id="onfailure-success"),
        pytest.param("Never", [c(ContainerState.EXITED, exit_code=1)], {}, False, "Failed", id="never-failed"),
        pytest.param("Never", [c(ContainerState.EXITED, exit_code=0)], {}, False, "Succeeded", id="never-succeeded"),
        pytest.param("Always", [c(ContainerState.EXITED, exit_code=0)], {}, True, "Succeeded", id="deleted-clean"),
        pytest.param("Always", [c(ContainerState.EXITED, exit_code=137)], {}, True, "Failed", id="deleted-killed"),
    ],
)
def test_phase(restart: str, containers: list[ContainerStatus], waiting: dict[str, Waiting], terminal: bool,
               phase: str) -> None:
    assert compute(pod(restart), containers, waiting, terminal=terminal)["phase"] == phase


def test_running_pod_status_fields() -> None:
    status = compute(pod(), [c(ContainerState.RUNNING)])
    assert conditions(status) == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                                  "ContainersReady": "True", "PodScheduled": "True"}
    [container] = status["containerStatuses"]
    assert container == {"name": "app", "image": "img", "imageID": "fake://img", "containerID": "fake://app0",
                         "ready": True, "restartCount": 0, "started": True,
                         "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}, "lastState": {}}
    assert (status["podIP"], status["podIPs"], status["hostIP"]) == ("10.0.0.2", [{"ip": "10.0.0.2"}], "10.200.0.1")
    assert status["startTime"] == "2024-01-01T00:00:10Z"
    assert status["qosClass"] == "BestEffort"


def test_crash_loop_shows_waiting_and_last_state() -> None:
    containers = [c(ContainerState.EXITED, exit_code=1), c(ContainerState.EXITED, attempt=1, exit_code=1)]
    status = compute(pod(), containers, {"app": CRASH})
    [container] = status["containerStatuses"]
    assert container["restartCount"] == 1
    assert container["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    assert container["lastState"]["terminated"]["exitCode"] == 1
    assert container["ready"] is False
    ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False", "ContainersNotReady", "containers with unready status: [app]")


def test_not_ready_container() -> None:
    status = compute(pod(), [c(ContainerState.RUNNING)], ready=False)
    assert conditions(status)["Ready"] == "False"
    assert status["containerStatuses"][0]["started"] is True


def test_init_containers_gate_initialized() -> None:
    running_init = [c(ContainerState.RUNNING, name="setup", kind=ContainerKind.INIT)]
    status = compute(pod(init=True), running_init)
    assert status["phase"] == "Pending"
    assert conditions(status)["Initialized"] == "False"
    assert status["initContainerStatuses"][0]["state"]["running"]
    done = [c(ContainerState.EXITED, name="setup", kind=ContainerKind.INIT, exit_code=0), c(ContainerState.RUNNING)]
    status = compute(pod(init=True), done)
    assert (status["phase"], conditions(status)["Initialized"]) == ("Running", "True")


@pytest.mark.parametrize(("restart", "containers", "phase", "pod_ip"), [
    pytest.param("Never", [c(ContainerState.EXITED, exit_code=0)], "Succeeded", "10.0.0.2", id="succeeded-keeps"),
    pytest.param("Never", [c(ContainerState.EXITED, exit_code=1)], "Failed", "10.0.0.2", id="failed-keeps"),
    pytest.param("Always", [c(ContainerState.EXITED, exit_code=137)], "Running", "", id="running-loses"),
])
def test_pod_ip_once_the_sandbox_is_stopped(restart: str, containers: list[ContainerStatus], phase: str,
                                           pod_ip: str) -> None:
    """A finished pod's stopped sandbox gave its address back; the status still reports the pod's IP."""
    old = {"phase": "Running", "podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}]}
    stopped = replace(SANDBOX, state=SandboxState.NOT_READY, ip="")
    status = compute_pod_status(pod(restart, status=old), sandbox=stopped, containers=containers, waiting={},
                                is_ready=lambda _c: True, host_ip="10.200.0.1", now="2024-01-01T00:00:10Z",
                                runtime="fake")
    assert (status["phase"], status["podIP"], status["podIPs"]) == (phase, pod_ip, [{"ip": pod_ip}])
    assert conditions(status)["PodReadyToStartContainers"] == "False"


def test_transition_time_kept_while_status_unchanged() -> None:
    old = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2023-01-01T00:00:00Z"},
                          {"type": "Initialized", "status": "False", "lastTransitionTime": "2023-01-01T00:00:00Z"}],
           "startTime": "2023-01-01T00:00:00Z"}
    status = compute(pod(status=old), [c(ContainerState.RUNNING)])
    times = {cond["type"]: cond["lastTransitionTime"] for cond in status["conditions"]}
    assert times["Ready"] == "2023-01-01T00:00:00Z"
    assert times["Initialized"] == "2024-01-01T00:00:10Z"  # flipped False -> True
    assert status["startTime"] == "2023-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        pytest.param({}, "BestEffort", id="none"),
        pytest.param({"requests": {"cpu": "100m"}}, "Burstable", id="requests-only"),
        pytest.param({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed", id="limits-imply-requests"),
        pytest.param({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable",
                     id="requests-below-limits"),
    ],
)
def test_qos_class(resources: dict[str, Any], expected: str) -> None:
    assert qos_class({"spec": {"containers": [{"name": "a", "resources": resources}]}}) == expected


class StatusWritesFail(ApiClient):
    """An apiserver that is away for the first ``failures`` pod status writes."""

    failures = 4
    attempts = 0

    async def patch(self, resource: ResourceInfo, name: str, patch: Any, *, namespace: str | None = None,
                    patch_type: str = "merge", subresource: str = "", field_manager: str = "",
                    force: bool = False) -> dict[str, Any]:
        if resource == PODS and subresource == "status":
            self.attempts += 1
            if self.attempts <= self.failures:
                raise ServiceUnavailableError("the apiserver is restarting")
        return await super().patch(resource, name, patch, namespace=namespace, patch_type=patch_type,
                                   subresource=subresource, field_manager=field_manager, force=force)


async def test_failed_status_writes_are_retried_until_they_land(tmp_path: Path) -> None:
    async with embedded_api(tmp_path) as api:
        client = StatusWritesFail.from_kubeconfig(api.settings.kubeconfig_path)
        assert isinstance(client, StatusWritesFail)
        group = KubeletGroup(client, KubeletSettings(kubeconfig=tmp_path / "kubeconfig", node_name="node-a",
                                                     fake_start_delay=0.05, sync_frequency=0))
        try:
            await group.start()
            await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "web", "namespace": "default"},
                                       "spec": {"nodeName": "node-a",
                                                "containers": [{"name": "app", "image": "busybox"}]}})

            async def running() -> bool:
                status = (await client.get(PODS, "web", namespace="default")).get("status") or {}
                return status.get("phase") == "Running" and bool(status.get("podIP"))
            await eventually(running, timeout=60)
            assert client.attempts > client.failures
        finally:
            await group.stop()
            await client.close()
