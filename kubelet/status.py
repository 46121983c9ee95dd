"""Pod status computation: from what the runtime reports to the ``status`` of a Pod object.

Pure functions, called by ``kubelet.sync`` after every sync of a pod. They follow the kubelet's
``generateAPIPodStatus``/``getPhase``: container states with ``lastState`` from the previous
attempt, ``restartCount`` from the attempt number, ``CrashLoopBackOff`` waiting states, the
phase rules (a crash-looping container counts as stopped, so ``Always`` pods stay Running),
the conditions ``PodReadyToStartContainers``, ``Initialized``, ``ContainersReady``, ``Ready``
and ``PodScheduled`` whose ``lastTransitionTime`` only moves when their status changes.

Native sidecars (KEP-753: an init container with ``restartPolicy: Always``, see
:func:`is_sidecar`) appear in ``initContainerStatuses`` with ``started`` and ``ready``; the pod
is Initialized once every regular init container completed and every sidecar started (or once
any app container ran); ContainersReady and Ready also wait for the sidecars' readiness; a
running sidecar keeps the phase Running, an exited one does not count (so a Job's pod whose app
containers are done is Succeeded or Failed once its sidecars were stopped).

Ephemeral containers (``kubectl debug``) appear in ``ephemeralContainerStatuses`` only: never
ready, never restarted, no part of the phase or the conditions.

A finished pod (Succeeded/Failed) whose sandbox was stopped, its address released, keeps the
``podIP``/``podIPs`` it had, as Kubernetes' kubelet reports a terminal pod's last IPs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubelet.runtime.interface import ContainerKind, ContainerState, ContainerStatus, SandboxState, SandboxStatus

__all__ = ["Waiting", "compute_pod_status", "is_sidecar", "latest_attempts", "qos_class", "rfc3339"]


def is_sidecar(container: Mapping[str, Any]) -> bool:
    """A native sidecar: an init container with ``restartPolicy: Always`` (Kubernetes'
    ``IsRestartableInitContainer``); it keeps running beside the app containers."""
    return container.get("restartPolicy") == "Always"


@dataclass(frozen=True)
class Waiting:
    """Why a container is not running (``ContainerCreating``, ``CrashLoopBackOff``, ...)."""

    reason: str
    message: str = ""


def rfc3339(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def latest_attempts(containers: list[ContainerStatus]) -> dict[str, tuple[ContainerStatus, ContainerStatus | None]]:
    """Per container name: (latest attempt, the one before it or None)."""
    by_name: dict[str, list[ContainerStatus]] = {}
    for status in containers:
        by_name.setdefault(status.name, []).append(status)
    result: dict[str, tuple[ContainerStatus, ContainerStatus | None]] = {}
    for name, attempts in by_name.items():
        attempts.sort(key=lambda c: (c.attempt, c.created_at))
        result[name] = (attempts[-1], attempts[-2] if len(attempts) > 1 else None)
    return result


def _terminated(status: ContainerStatus, runtime: str) -> dict[str, Any]:
    return {
        "exitCode": status.exit_code if status.exit_code is not None else 0,
        "reason": status.reason or ("Completed" if status.exit_code == 0 else "Error"),
        "startedAt": rfc3339(status.started_at),
        "finishedAt": rfc3339(status.finished_at),
        "containerID": f"{runtime}://{status.id}",
    }


def _container_status(
    spec: dict[str, Any],
    attempts: tuple[ContainerStatus, ContainerStatus | None] | None,
    waiting: Waiting | None,
    ready: bool,
    runtime: str,
    started: bool = True,
) -> dict[str, Any]:
    name = str(spec["name"])
    out: dict[str, Any] = {"name": name, "image": spec.get("image", ""), "imageID": "", "ready": False,
                           "restartCount": 0, "started": False, "state": {}, "lastState": {}}
    if attempts is None:
        reason = waiting or Waiting("ContainerCreating")
        out["state"] = {"waiting": _waiting(reason)}
        return out
    latest, previous = attempts
    out["imageID"] = latest.image_id
    out["containerID"] = f"{runtime}://{latest.id}"
    out["restartCount"] = latest.attempt
    if previous is not None and previous.state is ContainerState.EXITED:
        out["lastState"] = {"terminated": _terminated(previous, runtime)}
    if latest.state is ContainerState.RUNNING:
        out["state"] = {"running": {"startedAt": rfc3339(latest.started_at)}}
        out["started"] = started
        out["ready"] = ready
    elif latest.state is ContainerState.EXITED:
        if waiting is not None:
            # Waiting to be restarted: the exit just seen becomes the last state.
            out["state"] = {"waiting": _waiting(waiting)}
            out["lastState"] = {"terminated": _terminated(latest, runtime)}
        else:
            out["state"] = {"terminated": _terminated(latest, runtime)}
    else:
        out["state"] = {"waiting": _waiting(waiting or Waiting("ContainerCreating"))}
    return out


def _waiting(waiting: Waiting) -> dict[str, str]:
    out = {"reason": waiting.reason}
    if waiting.message:
        out["message"] = waiting.message
    return out


def _phase(pod: dict[str, Any], statuses: list[dict[str, Any]], sidecars: list[dict[str, Any]],
           pending_init: int, init_failed: bool, terminal: bool) -> str:
    """Kubernetes' getPhase: ``statuses`` of the regular containers, ``sidecars`` of the running
    restartable init containers' statuses, ``pending_init`` init steps not yet done."""
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if init_failed:
        return "Failed"
    waiting = running = stopped = succeeded = 0
    for status in sidecars:
        state, last = status["state"], status["lastState"]
        if "running" in state:
            running += 1
        elif "waiting" in state and "terminated" not in last:
            waiting += 1
    for status in statuses:
        state, last = status["state"], status["lastState"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
            else:
                waiting += 1
    if terminal and running == 0 and waiting == 0:
        return "Succeeded" if stopped == succeeded else "Failed"
    if (pending_init and not _any_regular_started(statuses)) or waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _any_regular_started(statuses: list[dict[str, Any]]) -> bool:
    """Kubernetes' HasAnyRegularContainerStarted (a crash-looping one counts: it ran)."""
    return any("running" in s["state"] or "terminated" in s["state"] or "terminated" in s["lastState"]
               for s in statuses)


def _condition(type_: str, ok: bool, now: str, old: Mapping[str, dict[str, Any]], reason: str = "",
               message: str = "") -> dict[str, Any]:
    status = "True" if ok else "False"
    previous = old.get(type_)
    transition = previous.get("lastTransitionTime") if previous and previous.get("status") == status else None
    condition: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None,
                                 "lastTransitionTime": transition or now}
    if not ok and reason:
        condition["reason"] = reason
        if message:
            condition["message"] = message
    return condition


def qos_class(pod: dict[str, Any]) -> str:
    """BestEffort (no requests/limits), Guaranteed (limits == requests for cpu and memory), else Burstable."""
    containers = [*((pod.get("spec") or {}).get("containers") or []),
                  *((pod.get("spec") or {}).get("initContainers") or [])]
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if requests or limits:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def compute_pod_status(
    pod: dict[str, Any],
    *,
    sandbox: SandboxStatus | None,
    containers: list[ContainerStatus],
    waiting: Mapping[str, Waiting],
    is_ready: Callable[[ContainerStatus], bool],
    host_ip: str,
    now: str,
    runtime: str,
    terminal: bool = False,
    is_started: Callable[[ContainerStatus], bool] | None = None,
) -> dict[str, Any]:
    """The full ``status`` of ``pod`` (a new dict; the pod is not changed). ``is_started``: the
    startup-probe verdict of a running container (default: running means started)."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    old_conditions = {c.get("type", ""): c for c in old.get("conditions") or []}
    attempts = latest_attempts(containers)

    statuses: list[dict[str, Any]] = []
    unready: list[str] = []
    for container in spec.get("containers") or []:
        name = str(container["name"])
        found = attempts.get(name)
        ready = found is not None and found[0].state is ContainerState.RUNNING and is_ready(found[0])
        started = found is not None and (is_started is None or is_started(found[0]))
        container_status = _container_status(container, found, waiting.get(name), ready, runtime, started)
        statuses.append(container_status)
        if not container_status["ready"]:
            unready.append(name)
    regular_started = _any_regular_started(statuses)

    init_statuses: list[dict[str, Any]] = []
    sidecar_statuses: list[dict[str, Any]] = []
    init_failed, pending_init = False, []
    unready_sidecars: list[str] = []
    for container in spec.get("initContainers") or []:
        name = str(container["name"])
        found = attempts.get(name)
        latest = found[0] if found else None
        if is_sidecar(container):
            running = latest is not None and latest.state is ContainerState.RUNNING
            started = running and latest is not None and (is_started is None or is_started(latest))
            ready = started and latest is not None and is_ready(latest)
            container_status = _container_status(container, found, waiting.get(name), ready, runtime, started)
            init_statuses.append(container_status)
            sidecar_statuses.append(container_status)
            if not started:
                pending_init.append(name)
            if not ready:
                unready_sidecars.append(name)
            continue
        init_statuses.append(_container_status(container, found, waiting.get(name), False, runtime))
        if latest is None or latest.kind is not ContainerKind.INIT or latest.state is not ContainerState.EXITED \
                or latest.exit_code != 0:
            pending_init.append(name)
            if latest is not None and latest.state is ContainerState.EXITED and latest.exit_code != 0 \
                    and spec.get("restartPolicy") == "Never":
                init_failed = True
    init_done = not pending_init or regular_started
    unready = [*unready_sidecars, *unready]

    phase = _phase(pod, statuses, sidecar_statuses, len(pending_init), init_failed, terminal)
    sandbox_ready = sandbox is not None and sandbox.state is SandboxState.READY
    containers_ready = not unready and init_done and not terminal
    unready_message = f"containers with unready status: [{' '.join(unready)}]"
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready, now, old_conditions),
        _condition("Initialized", init_done, now, old_conditions, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(pending_init)}]"),
        _condition("Ready", containers_ready, now, old_conditions,
                   "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady", unready_message),
        _condition("ContainersReady", containers_ready, now, old_conditions,
                   "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady", unready_message),
        old_conditions.get("PodScheduled") or _condition("PodScheduled", True, now, old_conditions),
    ]

    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": old.get("startTime") or now,
        "containerStatuses": statuses,
        "qosClass": old.get("qosClass") or qos_class(pod),
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    ephemeral = [_container_status(c, attempts.get(str(c["name"])), waiting.get(str(c["name"])), False, runtime)
                 for c in spec.get("ephemeralContainers") or []]
    if ephemeral:
        # Never ready, never restarted; they do not count for the phase or the conditions.
        status["ephemeralContainerStatuses"] = ephemeral
    ip = ""
    if sandbox is not None:
        ip = host_ip if spec.get("hostNetwork") and host_ip else sandbox.ip  # host network: the node's IP
    if old.get("podIP") and (sandbox is None or (not ip and phase in ("Succeeded", "Failed"))):
        # A finished pod's sandbox is stopped and its address released, yet the status keeps
        # reporting the IP the pod had, as the kubelet copies a terminal pod's last IPs forward.
        status["podIP"], status["podIPs"] = old["podIP"], old.get("podIPs") or [{"ip": old["podIP"]}]
    elif sandbox is not None:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return status
