"""A simulated container runtime for hollow nodes (kwok/kubemark style): no processes at all.

Used by ``kubelet.hollow`` (one instance per hollow node) and by tests. It implements
:class:`kubelet.runtime.interface.ContainerRuntime` and :class:`~kubelet.runtime.interface.Prober`
with timers on the event loop:

* a started container becomes ``running`` after ``start_delay`` seconds;
* init containers exit 0 (``Completed``) ``start_delay`` seconds after running, except native
  sidecars (``restartPolicy: Always``), which run until stopped like app containers;
* app containers of a pod annotated ``kubelab.dev/fake-complete-after: "<seconds>"`` exit 0
  that long after running (a Job's work); :meth:`FakeRuntime.simulate_exit` ends any container;
* a container whose image contains ``crash`` (or whose pod carries the annotation
  ``kubelab.dev/fake-crash: "true"``) exits with code 1 (``Error``) ``crash_after`` seconds
  after running;
* a pod annotated ``kubelab.dev/fake-not-ready: "true"`` never passes readiness;
* stopping runs a pre-stop delay (``stop_delay``, at most the timeout) and then exits with 0
  (or 137 when the timeout ran out first, as a SIGKILL would);
* a sandbox reports SandboxChanged when it starts and stops; containers are created and started
  only in a ready sandbox, and running a pod whose sandbox was stopped replaces the sandbox
  (new id, an address allocated again) and kills the pod's containers (exit 137), as the Docker
  runtime does;
* pod IPs come from a per-node CIDR (from .2; .1 is the bridge), freed when the sandbox is stopped
  (a stopped sandbox reports no IP; its exited containers and their output stay until the sandbox
  is removed, so a finished pod's logs remain) or removed (hollow nodes get loopback CIDRs:
  ``kubelet.settings.HOLLOW_POD_CIDR_BASE``);
* an image listed in :attr:`FakeRuntime.missing_images` is absent: creating a container of it
  fails with ``ErrImagePull`` (``ErrImageNeverPull`` under ``imagePullPolicy: Never``), as a
  pull would with no registry reachable;
* each container has simulated output (:class:`SimulatedOutput`): a line when it starts and one
  when it exits, served as its log by ``kubelet.hollow_endpoints``; no process ever runs, so
  ``exec_sync`` is a stand-in that succeeds for probes and hooks only.

Every state change is reported through the event handler, so the kubelet re-syncs at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from kubelet.runtime.interface import (
    ContainerKind,
    ContainerNotFoundError,
    ContainerState,
    ContainerStatus,
    EventHandler,
    RuntimeError_,
    RuntimeEvent,
    RuntimeEventType,
    SandboxState,
    SandboxStatus,
)

__all__ = ["COMPLETE_AFTER_ANNOTATION", "CRASH_ANNOTATION", "NOT_READY_ANNOTATION", "FakeRuntime",
           "FakeRuntimeSettings", "SimulatedOutput"]

CRASH_ANNOTATION = "kubelab.dev/fake-crash"
COMPLETE_AFTER_ANNOTATION = "kubelab.dev/fake-complete-after"
NOT_READY_ANNOTATION = "kubelab.dev/fake-not-ready"
VERSION = "0.1.0"


class _ImageError(RuntimeError_):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FakeRuntimeSettings:
    """Timings of the simulation (seconds)."""

    start_delay: float = 0.1
    """From ``start_container`` to ``running`` (and from running to exit for init containers)."""
    crash_after: float = 0.5
    """How long a crashing container runs before it exits with code 1."""
    stop_delay: float = 0.0
    """The simulated preStop + SIGTERM handling time; beyond the grace period it is a SIGKILL."""


@dataclass
class SimulatedOutput:
    """What a simulated container "printed": timestamped lines; ``finished`` once it exited."""

    lines: list[tuple[datetime, bytes]] = field(default_factory=list)
    finished: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def write(self, text: str) -> None:
        self.lines.append((_now(), text.encode() + b"\n"))
        self.changed.set()

    def finish(self) -> None:
        self.finished = True
        self.changed.set()


def _now() -> datetime:
    return datetime.now(UTC)


def _flag(pod: dict[str, Any], annotation: str) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(annotation, "")).lower() == "true"


class FakeRuntime:
    """In-memory containers of one node; cheap enough for a thousand nodes in one process."""

    def __init__(self, *, pod_cidr: str = "10.244.0.0/24", settings: FakeRuntimeSettings | None = None) -> None:
        self.settings = settings or FakeRuntimeSettings()
        self._network = ipaddress.ip_network(pod_cidr)
        self._free_hosts = self._network.hosts()
        next(self._free_hosts, None)  # .1 is the node bridge's gateway on a real CNI
        self._released: list[str] = []
        self._sandboxes: dict[str, SandboxStatus] = {}
        self._containers: dict[str, ContainerStatus] = {}
        self._pods: dict[str, dict[str, Any]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._output: dict[str, SimulatedOutput] = {}
        self._sidecars: set[str] = set()
        """Ids of init containers with ``restartPolicy: Always`` (they keep running)."""
        self._ids = itertools.count(1)
        self._handler: EventHandler | None = None
        self.missing_images: set[str] = set()
        """Images absent from this node (a pull of them fails); tests add and remove names."""

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "fake"

    def version(self) -> str:
        return f"fake://{VERSION}"

    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    def _emit(self, type_: RuntimeEventType, pod_uid: str, container_id: str = "") -> None:
        if self._handler is not None:
            self._handler(RuntimeEvent(type=type_, pod_uid=pod_uid, container_id=container_id))

    def _new_id(self) -> str:
        return hashlib.sha256(f"{id(self)}-{next(self._ids)}".encode()).hexdigest()[:32]

    # -- sandboxes ------------------------------------------------------------------------
    def _allocate_ip(self) -> str:
        if self._released:
            return self._released.pop(0)
        try:
            return str(next(self._free_hosts))
        except StopIteration:
            raise RuntimeError_(f"no free pod IP in {self._network}") from None

    async def run_pod_sandbox(
        self,
        pod: dict[str, Any],
        *,
        dns_servers: Sequence[str] = (),
        dns_searches: Sequence[str] = (),
        dns_options: Sequence[str] = (),
    ) -> SandboxStatus:
        uid = str(pod["metadata"]["uid"])
        self._pods[uid] = pod
        existing = self._sandboxes.get(uid)
        if existing is not None and existing.state is SandboxState.READY:
            return existing
        if existing is not None:
            # A dead sandbox is replaced, as Docker replaces a dead pause container; the pod's
            # containers lived in its network namespace, so they are killed.
            for container in [c for c in self._containers.values() if c.pod_uid == uid]:
                if container.state is not ContainerState.EXITED:
                    self._exit(container.id, 137, "Error")
        ip = existing.ip if existing is not None and existing.ip else self._allocate_ip()
        sandbox = SandboxStatus(pod_uid=uid, id=self._new_id(), state=SandboxState.READY, ip=ip, created_at=_now())
        self._sandboxes[uid] = sandbox
        self._emit(RuntimeEventType.SANDBOX_CHANGED, uid)
        return sandbox

    async def pod_sandbox_status(self, pod_uid: str) -> SandboxStatus | None:
        return self._sandboxes.get(pod_uid)

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        sandbox = self._sandboxes.get(pod_uid)
        if sandbox is not None and sandbox.state is SandboxState.READY:
            # The network goes with the sandbox: the address is free for the node's next pod.
            self._sandboxes[pod_uid] = replace(sandbox, state=SandboxState.NOT_READY, ip="")
            self._released.append(sandbox.ip)
            self._emit(RuntimeEventType.SANDBOX_CHANGED, pod_uid)

    async def remove_pod_sandbox(self, pod_uid: str) -> None:
        for container in [c for c in self._containers.values() if c.pod_uid == pod_uid]:
            self._cancel_timer(container.id)
            del self._containers[container.id]
            self._output.pop(container.id, None)
            self._sidecars.discard(container.id)
        sandbox = self._sandboxes.pop(pod_uid, None)
        self._pods.pop(pod_uid, None)
        if sandbox is not None and sandbox.ip:
            self._released.append(sandbox.ip)

    async def list_pod_uids(self) -> list[str]:
        return list(self._sandboxes)

    def sandbox_pod(self, pod_uid: str) -> dict[str, Any] | None:
        """The pod a sandbox was started for, as it was then (``kubelet.stats`` names pods by it)."""
        return self._pods.get(pod_uid)

    # -- containers -----------------------------------------------------------------------
    async def create_container(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        *,
        kind: ContainerKind,
        attempt: int,
        env: Sequence[Mapping[str, Any]] | None = None,
        mounts: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        uid = str(pod["metadata"]["uid"])
        self._require_ready_sandbox(uid)
        self._pods[uid] = pod
        image = str(container.get("image", ""))
        if image in self.missing_images:
            if container.get("imagePullPolicy") == "Never":
                raise _ImageError(f'container image "{image}" is not present with pull policy of Never',
                                  "ErrImageNeverPull")
            raise _ImageError(f'failed to pull image "{image}": not present on this hollow node', "ErrImagePull")
        status = ContainerStatus(
            id=self._new_id(), pod_uid=uid, name=str(container["name"]), kind=kind, attempt=attempt, image=image,
            image_id=f"fake://{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
            state=ContainerState.CREATED, created_at=_now(),
        )
        self._containers[status.id] = status
        if kind is ContainerKind.INIT and container.get("restartPolicy") == "Always":
            self._sidecars.add(status.id)
        return status.id

    async def start_container(self, container_id: str) -> None:
        status = self._get(container_id)
        if status.state is not ContainerState.CREATED:
            raise RuntimeError_(f"container {container_id} is {status.state.value}, not created")
        self._require_ready_sandbox(status.pod_uid)
        self._later(container_id, self.settings.start_delay, self._become_running)

    def _become_running(self, container_id: str) -> None:
        status = self._containers.get(container_id)
        if status is None or status.state is not ContainerState.CREATED:
            return
        self._containers[container_id] = replace(status, state=ContainerState.RUNNING, started_at=_now())
        sandbox = self._sandboxes.get(status.pod_uid)
        self._output.setdefault(container_id, SimulatedOutput()).write(
            f"hollow container {status.name} started: image {status.image}, attempt {status.attempt}, pod IP "
            f"{sandbox.ip if sandbox else 'none'} (simulated: no process runs)")
        self._emit(RuntimeEventType.CONTAINER_STARTED, status.pod_uid, container_id)
        complete_after = self._complete_after(status)
        if self._crashes(status):
            self._later(container_id, self.settings.crash_after, lambda cid: self._exit(cid, 1, "Error"))
        elif status.kind is ContainerKind.INIT and container_id not in self._sidecars:
            self._later(container_id, self.settings.start_delay, lambda cid: self._exit(cid, 0, "Completed"))
        elif complete_after is not None:
            self._later(container_id, complete_after, lambda cid: self._exit(cid, 0, "Completed"))

    def _complete_after(self, status: ContainerStatus) -> float | None:
        if status.kind is not ContainerKind.REGULAR:
            return None
        annotations = (self._pods.get(status.pod_uid, {}).get("metadata") or {}).get("annotations") or {}
        try:
            return float(annotations[COMPLETE_AFTER_ANNOTATION])
        except (KeyError, TypeError, ValueError):
            return None

    def simulate_exit(self, container_id: str, exit_code: int = 1) -> None:
        """End a running container now, as if its process exited with ``exit_code`` (tests)."""
        self._exit(container_id, exit_code, "Completed" if exit_code == 0 else "Error")

    def _crashes(self, status: ContainerStatus) -> bool:
        return "crash" in status.image or _flag(self._pods.get(status.pod_uid, {}), CRASH_ANNOTATION)

    def _exit(self, container_id: str, code: int, reason: str) -> None:
        self._cancel_timer(container_id)
        status = self._containers.get(container_id)
        if status is None or status.state is ContainerState.EXITED:
            return
        self._containers[container_id] = replace(
            status, state=ContainerState.EXITED, finished_at=_now(), exit_code=code, reason=reason,
            started_at=status.started_at or _now(),
        )
        output = self._output.setdefault(container_id, SimulatedOutput())
        output.write(f"hollow container {status.name} exited with code {code} ({reason})")
        output.finish()
        self._emit(RuntimeEventType.CONTAINER_DIED, status.pod_uid, container_id)

    async def stop_container(self, container_id: str, *, timeout: float) -> None:
        status = self._get(container_id)
        if status.state is ContainerState.EXITED:
            return
        self._cancel_timer(container_id)
        delay = min(self.settings.stop_delay, max(timeout, 0.0))
        if status.state is ContainerState.RUNNING and delay > 0:
            await asyncio.sleep(delay)
        killed = self.settings.stop_delay > timeout
        if status.state is ContainerState.CREATED:
            self._exit(container_id, 0, "Completed")
        else:
            self._exit(container_id, 137 if killed else 0, "Error" if killed else "Completed")

    async def exec_sync(self, container_id: str, command: list[str], *, timeout: float) -> tuple[int, bytes]:
        """Simulated exec: succeeds (exit 0, no output) in a running container."""
        status = self._get(container_id)
        if status.state is not ContainerState.RUNNING:
            raise RuntimeError_(f"container {container_id} is not running")
        return 0, b""

    async def list_containers(self, pod_uid: str) -> list[ContainerStatus]:
        found = [c for c in self._containers.values() if c.pod_uid == pod_uid]
        return sorted(found, key=lambda c: (c.created_at, c.attempt))

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._get(container_id)

    # -- simulated output -----------------------------------------------------------------
    def attempts(self, namespace: str, pod: str, container: str) -> list[ContainerStatus]:
        """The attempts of container ``container`` of pod ``namespace/pod``, oldest first."""
        uids = [uid for uid, obj in self._pods.items() if (obj.get("metadata") or {}).get("namespace") == namespace
                and (obj.get("metadata") or {}).get("name") == pod and uid in self._sandboxes]
        found = [c for c in self._containers.values() if c.pod_uid in uids and c.name == container]
        return sorted(found, key=lambda c: (c.attempt, c.created_at))

    def output(self, container_id: str) -> SimulatedOutput:
        """The container's simulated output (empty until it runs)."""
        self._get(container_id)
        return self._output.setdefault(container_id, SimulatedOutput())

    # -- prober ---------------------------------------------------------------------------
    def is_ready(self, pod: dict[str, Any], status: ContainerStatus) -> bool:
        return status.state is ContainerState.RUNNING and not _flag(pod, NOT_READY_ANNOTATION)

    # -- helpers --------------------------------------------------------------------------
    def _require_ready_sandbox(self, pod_uid: str) -> None:
        sandbox = self._sandboxes.get(pod_uid)
        if sandbox is None or sandbox.state is not SandboxState.READY:
            raise RuntimeError_(f"pod {pod_uid} has no running sandbox")

    def _get(self, container_id: str) -> ContainerStatus:
        try:
            return self._containers[container_id]
        except KeyError:
            raise ContainerNotFoundError(f"no container {container_id}") from None

    def _later(self, container_id: str, delay: float, action: Any) -> None:
        self._cancel_timer(container_id)
        loop = asyncio.get_running_loop()
        self._timers[container_id] = loop.call_later(delay, self._fire, container_id, action)

    def _fire(self, container_id: str, action: Any) -> None:
        self._timers.pop(container_id, None)
        action(container_id)

    def _cancel_timer(self, container_id: str) -> None:
        timer = self._timers.pop(container_id, None)
        if timer is not None:
            timer.cancel()
