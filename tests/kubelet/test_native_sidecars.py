"""Native sidecars (KEP-753: init containers with ``restartPolicy: Always``) on the fake runtime.

The kubelet starts them in order with the other init containers without waiting for them to
exit, keeps them running (restarting them when they exit), starts the app containers after the
init sequence, stops the app containers before the sidecars (in reverse order) on deletion, and
does not let them keep a Job's pod alive. Pure status rules are checked against
``compute_pod_status`` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelet.hollow import KubeletGroup
from kubelet.runtime.fake import COMPLETE_AFTER_ANNOTATION, FakeRuntime
from kubelet.runtime.interface import ContainerKind, ContainerState, ContainerStatus, SandboxState, SandboxStatus
from kubelet.status import compute_pod_status
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import PODS
from tests.kubelet.conftest import GroupFactory, eventually

SIDECAR = {"name": "proxy", "image": "proxy:1", "restartPolicy": "Always"}


def meshed_pod(name: str, *, restart: str = "Always", annotations: dict[str, str] | None = None,
               init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {"nodeName": "node-a", "restartPolicy": restart, "terminationGracePeriodSeconds": 5,
                 "initContainers": init if init is not None else [
                     {"name": "setup", "image": "setup:1"}, SIDECAR, {"name": "after", "image": "after:1"}],
                 "containers": [{"name": "app", "image": "app:1"}]},
    }


def runtime_of(group: KubeletGroup) -> FakeRuntime:
    runtime = group.nodes["node-a"].runtime
    assert isinstance(runtime, FakeRuntime)
    return runtime


def condition(obj: dict[str, Any], type_: str) -> str:
    return str(next(c for c in obj["status"]["conditions"] if c["type"] == type_)["status"])


def init_status(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(c for c in obj["status"].get("initContainerStatuses") or [] if c["name"] == name))


async def wait_pod(client: ApiClient, name: str, check: Callable[[dict[str, Any]], bool],
                   timeout: float = 20) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        obj = await client.get(PODS, name, namespace="default")
        return obj if obj.get("status") and check(obj) else None

    result: dict[str, Any] = await eventually(probe, timeout=timeout)
    return result


def ready(obj: dict[str, Any]) -> bool:
    return obj["status"].get("phase") == "Running" and condition(obj, "Ready") == "True"


async def test_sidecar_starts_in_order_keeps_running_and_gates_the_app(client: ApiClient,
                                                                       start_group: GroupFactory) -> None:
    group = await start_group()
    await client.create(PODS, meshed_pod("meshed"))
    obj = await wait_pod(client, "meshed", ready)
    runtime = runtime_of(group)
    attempts = {n: runtime.attempts("default", "meshed", n)[-1] for n in ("setup", "proxy", "after", "app")}
    assert attempts["setup"].state is ContainerState.EXITED and attempts["after"].state is ContainerState.EXITED
    assert attempts["proxy"].state is ContainerState.RUNNING and attempts["app"].state is ContainerState.RUNNING
    assert attempts["proxy"].kind is ContainerKind.INIT
    # Each step began only once the previous one was done (exited, or for the sidecar: running).
    setup, proxy, after, app = (attempts[n] for n in ("setup", "proxy", "after", "app"))
    assert setup.finished_at is not None and proxy.started_at is not None and after.finished_at is not None
    assert setup.finished_at <= proxy.created_at
    assert proxy.started_at <= after.created_at
    assert after.finished_at <= app.created_at
    sidecar = init_status(obj, "proxy")
    assert sidecar["started"] is True and sidecar["ready"] is True and "running" in sidecar["state"]
    assert "terminated" in init_status(obj, "setup")["state"]
    assert condition(obj, "Initialized") == "True" and condition(obj, "ContainersReady") == "True"


async def test_exited_sidecar_is_restarted_without_touching_the_app(client: ApiClient,
                                                                     start_group: GroupFactory) -> None:
    group = await start_group()
    await client.create(PODS, meshed_pod("restarts", init=[SIDECAR]))
    await wait_pod(client, "restarts", ready)
    runtime = runtime_of(group)
    [first] = runtime.attempts("default", "restarts", "proxy")
    [app] = runtime.attempts("default", "restarts", "app")
    runtime.simulate_exit(first.id, 1)

    obj = await wait_pod(client, "restarts", lambda o: init_status(o, "proxy")["restartCount"] >= 1
                         and init_status(o, "proxy")["ready"] is True)
    assert init_status(obj, "proxy")["lastState"]["terminated"]["exitCode"] == 1
    assert obj["status"]["phase"] == "Running"
    [app_now] = runtime.attempts("default", "restarts", "app")
    assert app_now.id == app.id and app_now.state is ContainerState.RUNNING


@pytest.mark.parametrize("policy", [pytest.param("Never", id="never"), pytest.param("OnFailure", id="on-failure")])
async def test_sidecar_does_not_block_job_completion(client: ApiClient, start_group: GroupFactory,
                                                     policy: str) -> None:
    group = await start_group()
    await client.create(PODS, meshed_pod("job", restart=policy, init=[SIDECAR],
                                         annotations={COMPLETE_AFTER_ANNOTATION: "0.3"}))
    obj = await wait_pod(client, "job", lambda o: o["status"].get("phase") in ("Succeeded", "Failed"))
    assert obj["status"]["phase"] == "Succeeded"
    [app] = obj["status"]["containerStatuses"]
    assert app["state"]["terminated"]["exitCode"] == 0
    assert "terminated" in init_status(obj, "proxy")["state"]
    runtime = runtime_of(group)
    assert all(c.state is ContainerState.EXITED for c in runtime.attempts("default", "job", "proxy"))
    assert condition(obj, "Ready") == "False"


async def test_deletion_stops_app_before_sidecars_in_reverse_order(client: ApiClient,
                                                                   start_group: GroupFactory) -> None:
    group = await start_group(fake_stop_delay=0.2)
    second = {"name": "second", "image": "second:1", "restartPolicy": "Always"}
    await client.create(PODS, meshed_pod("ordered", init=[SIDECAR, second]))
    await wait_pod(client, "ordered", ready)
    runtime = runtime_of(group)
    stopped: list[str] = []
    names = {c.id: c.name for n in ("proxy", "second", "app") for c in runtime.attempts("default", "ordered", n)}
    original = runtime.stop_container

    async def recording_stop(container_id: str, *, timeout: float) -> None:
        await original(container_id, timeout=timeout)
        if container_id in names and names[container_id] not in stopped:
            stopped.append(names[container_id])

    runtime.stop_container = recording_stop  # type: ignore[method-assign]
    await client.delete(PODS, "ordered", namespace="default")

    async def gone() -> bool:
        try:
            await client.get(PODS, "ordered", namespace="default")
        except NotFoundError:
            return True
        return False

    await eventually(gone, timeout=20)
    assert stopped == ["app", "second", "proxy"]


# -- pure status rules --------------------------------------------------------------------------
_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _attempt(name: str, kind: ContainerKind, state: ContainerState, exit_code: int | None = None,
             attempt: int = 0) -> ContainerStatus:
    return ContainerStatus(id=f"{name}-{attempt}", pod_uid="u", name=name, kind=kind, attempt=attempt,
                           image=f"{name}:1", image_id="", state=state, created_at=_T0 + timedelta(seconds=attempt),
                           started_at=_T0, finished_at=_T0 if state is ContainerState.EXITED else None,
                           exit_code=exit_code)


def _status(restart: str, containers: list[ContainerStatus], *, started: bool = True,
            ready_names: tuple[str, ...] = ("proxy", "app")) -> dict[str, Any]:
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
           "spec": {"restartPolicy": restart, "initContainers": [SIDECAR], "containers": [{"name": "app"}]}}
    sandbox = SandboxStatus(pod_uid="u", id="s", state=SandboxState.READY, ip="10.0.0.2", created_at=_T0)
    return compute_pod_status(pod, sandbox=sandbox, containers=containers, waiting={},
                              is_ready=lambda c: c.name in ready_names, is_started=lambda c: started,
                              host_ip="127.0.0.1", now="2026-01-01T00:00:00Z", runtime="fake")


INIT, REG = ContainerKind.INIT, ContainerKind.REGULAR
RUN, EXIT = ContainerState.RUNNING, ContainerState.EXITED


@pytest.mark.parametrize(
    ("restart", "containers", "started", "ready_names", "phase", "initialized", "pod_ready"),
    [
        pytest.param("Always", [_attempt("proxy", INIT, RUN)], False, ("proxy",), "Pending", "False", "False",
                     id="sidecar-running-not-started"),
        pytest.param("Always", [_attempt("proxy", INIT, RUN)], True, ("proxy",), "Pending", "True", "False",
                     id="sidecar-started-app-not-created"),
        pytest.param("Always", [_attempt("proxy", INIT, RUN), _attempt("app", REG, RUN)], True, ("app",),
                     "Running", "True", "False", id="unready-sidecar-keeps-pod-unready"),
        pytest.param("Always", [_attempt("proxy", INIT, RUN), _attempt("app", REG, RUN)], True, ("proxy", "app"),
                     "Running", "True", "True", id="all-ready"),
        pytest.param("Never", [_attempt("proxy", INIT, RUN), _attempt("app", REG, EXIT, 0)], True, ("proxy",),
                     "Running", "True", "False", id="job-done-sidecar-still-running"),
        pytest.param("Never", [_attempt("proxy", INIT, EXIT, 143), _attempt("app", REG, EXIT, 0)], True, (),
                     "Succeeded", "True", "False", id="job-done-sidecar-stopped"),
        pytest.param("Never", [_attempt("proxy", INIT, EXIT, 0), _attempt("app", REG, EXIT, 2)], True, (),
                     "Failed", "True", "False", id="job-failed-sidecar-stopped"),
        pytest.param("Always", [_attempt("proxy", INIT, EXIT, 1), _attempt("proxy", INIT, RUN, attempt=1),
                                _attempt("app", REG, RUN)], False, ("app",), "Running", "True", "False",
                     id="restarting-sidecar-after-init-stays-initialized"),
    ],
)
def test_status_with_sidecar(restart: str, containers: list[ContainerStatus], started: bool,
                             ready_names: tuple[str, ...], phase: str, initialized: str, pod_ready: str) -> None:
    status = _status(restart, containers, started=started, ready_names=ready_names)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert status["phase"] == phase
    assert conditions["Initialized"] == initialized
    assert conditions["Ready"] == pod_ready == conditions["ContainersReady"]
    [sidecar] = status["initContainerStatuses"]
    assert sidecar["name"] == "proxy"
    running = containers[-1].state is RUN if containers[-1].name == "proxy" else any(
        c.name == "proxy" and c.state is RUN for c in containers)
    assert sidecar["started"] is (running and started)
