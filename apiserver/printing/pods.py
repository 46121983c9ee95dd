"""The Pod printer: the READY / STATUS / RESTARTS logic kubectl users read every day.

Called through the registry in :mod:`apiserver.printing.table`. The STATUS cell follows
Kubernetes' own reasoning, in its order: the phase (or ``status.reason``), a scheduling gate,
the first unfinished init container (``Init:0/2``, ``Init:CrashLoopBackOff``, ``Init:Error``),
then the app containers' waiting / terminated reasons (``CrashLoopBackOff``, ``ErrImagePull``,
``Completed``), and finally ``Terminating`` once a deletion timestamp is set. Sidecars (init
containers with ``restartPolicy: Always``) count as containers in READY and RESTARTS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column
from apiserver.printing.humanize import NONE, dig, human_duration, parse_time, since

POD_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Ready", "string", description="Ready containers out of all containers of the pod."),
    Column("Status", "string", description="Summary of the pod's phase and container states."),
    Column("Restarts", "string", description="Container restarts, and how long ago the last one was."),
    AGE,
    Column("IP", "string", priority=1, description="The pod's first IP address."),
    Column("Node", "string", priority=1, description="The node the pod is bound to."),
    Column("Nominated Node", "string", priority=1, description="The node preemption nominated."),
    Column("Readiness Gates", "string", priority=1, description="Readiness gates that are true."),
)

_TERMINAL_PHASES = ("Succeeded", "Failed")
_NODE_UNREACHABLE_REASON = "NodeLost"


def _condition_true(status: dict[str, Any], condition_type: str) -> bool:
    """Whether the first pod condition of this type is ``True``."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == condition_type:
            return bool(condition.get("status") == "True")
    return False


def _terminated_reason(terminated: dict[str, Any], prefix: str = "") -> str:
    """``Error`` / ``Completed`` from the runtime, else ``Signal:9`` or ``ExitCode:1``."""
    if terminated.get("reason"):
        return prefix + str(terminated["reason"])
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


class _Restarts:
    """Accumulates a restart count and the time of the most recent restart."""

    def __init__(self) -> None:
        self.count = 0
        self.last: datetime | None = None

    def add(self, container_status: dict[str, Any]) -> None:
        self.count += int(container_status.get("restartCount") or 0)
        finished = parse_time(dig(container_status, "lastState", "terminated", "finishedAt"))
        if finished is not None and (self.last is None or finished > self.last):
            self.last = finished

    def text(self, now: datetime) -> str:
        """``3`` or ``3 (5m ago)``."""
        if self.count != 0 and self.last is not None:
            return f"{self.count} ({human_duration(now - self.last)} ago)"
        return str(self.count)


def pod_status_and_counts(pod: dict[str, Any], now: datetime) -> tuple[str, str, str]:
    """The READY, STATUS and RESTARTS cells of one pod."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "")
    reason = str(status.get("reason") or phase)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {str(c.get("name")): c for c in spec.get("initContainers") or []}
    sidecars = {name for name, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(sidecars)
    ready = 0
    all_restarts = _Restarts()
    sidecar_restarts = _Restarts()

    initializing = False
    init_total = len(spec.get("initContainers") or [])
    for index, cs in enumerate(status.get("initContainerStatuses") or []):
        all_restarts.add(cs)
        is_sidecar = cs.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts.add(cs)
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if is_sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            reason = _terminated_reason(terminated, "Init:")
        elif waiting and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{index}/{init_total}"
        initializing = True
        break

    restarts = all_restarts
    if not initializing or _condition_true(status, "Initialized"):
        restarts = sidecar_restarts
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts.add(cs)
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated is not None:
                reason = _terminated_reason(terminated)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"

    deleting = bool(dig(pod, "metadata", "deletionTimestamp"))
    if deleting and status.get("reason") == _NODE_UNREACHABLE_REASON:
        reason = "Unknown"
    elif deleting and phase not in _TERMINAL_PHASES:
        reason = "Terminating"

    return f"{ready}/{total}", reason, restarts.text(now)


def _readiness_gates(pod: dict[str, Any]) -> str:
    """``<none>``, or how many readiness-gate conditions are true out of all gates."""
    gates = dig(pod, "spec", "readinessGates") or []
    if not gates:
        return NONE
    conditions = dig(pod, "status", "conditions") or []
    true_count = 0
    for gate in gates:
        for condition in conditions:
            if condition.get("type") == gate.get("conditionType"):
                if condition.get("status") == "True":
                    true_count += 1
                break
    return f"{true_count}/{len(gates)}"


def pod_cells(pod: dict[str, Any], now: datetime) -> list[Any]:
    """Every cell of a pod row, wide columns included."""
    ready, reason, restarts = pod_status_and_counts(pod, now)
    status = pod.get("status") or {}
    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or NONE
    return [
        dig(pod, "metadata", "name") or "",
        ready,
        reason,
        restarts,
        since(dig(pod, "metadata", "creationTimestamp"), now),
        pod_ip,
        dig(pod, "spec", "nodeName") or NONE,
        status.get("nominatedNodeName") or NONE,
        _readiness_gates(pod),
    ]


def pod_row_conditions(pod: dict[str, Any]) -> list[dict[str, str]]:
    """The row condition that marks a finished pod (kubectl uses it to grey out or hide rows)."""
    phase = dig(pod, "status", "phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return []
