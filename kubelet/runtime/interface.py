"""The seam between the kubelet's pod lifecycle and whatever runs containers.

``kubelet.sync`` drives a :class:`ContainerRuntime` (the shape of Kubernetes' CRI, trimmed to
what a pod lifecycle needs): a pod sandbox that owns the pod IP, containers created per
*attempt* (the restart count lives in the runtime, as Docker labels will carry it), graceful
stop with a timeout, listing and status, and events that tell the kubelet a container started
or died so it re-syncs that pod at once instead of polling. Readiness is asked of a
:class:`Prober` (the fake runtime answers from its flags; the Docker runtime's prober runs
the pod's probes).

Implementations: ``kubelet.runtime.fake.FakeRuntime`` (hollow nodes) and, next, a Docker runtime.
All methods are coroutines that must not block the event loop (Docker: ``asyncio.to_thread``).
Runtime errors are :class:`RuntimeError_` subclasses; nothing SDK-specific crosses this seam.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "ContainerKind",
    "ContainerNotFoundError",
    "ContainerRuntime",
    "ContainerState",
    "ContainerStatus",
    "EventHandler",
    "Prober",
    "RuntimeError_",
    "RuntimeEvent",
    "RuntimeEventType",
    "SandboxState",
    "SandboxStatus",
]


class RuntimeError_(Exception):
    """A runtime operation failed; ``reason`` is the Kubernetes waiting reason to show."""

    reason = "RunContainerError"


class ContainerNotFoundError(RuntimeError_):
    """No container (or sandbox) with that id exists in the runtime."""

    reason = "ContainerNotFound"


class ContainerKind(enum.Enum):
    """Init containers run to completion, in order, before regular ones start."""

    INIT = "init"
    REGULAR = "regular"


class ContainerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


class SandboxState(enum.Enum):
    READY = "ready"
    NOT_READY = "not_ready"


@dataclass(frozen=True)
class SandboxStatus:
    """The pod-level environment (Docker: the pause container) and the IP it owns."""

    pod_uid: str
    id: str
    state: SandboxState
    ip: str
    created_at: datetime


@dataclass(frozen=True)
class ContainerStatus:
    """One container attempt as the runtime sees it."""

    id: str
    """Runtime id; the pod status shows ``<runtime>://<id>``."""
    pod_uid: str
    name: str
    kind: ContainerKind
    attempt: int
    """0 for the first run, +1 per restart: the pod status' ``restartCount``."""
    image: str
    image_id: str
    state: ContainerState
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""
    """For exited containers: ``Completed``, ``Error``, ``OOMKilled``, ``ContainerCannotRun``."""
    message: str = ""


class RuntimeEventType(enum.Enum):
    CONTAINER_STARTED = "ContainerStarted"
    CONTAINER_DIED = "ContainerDied"
    SANDBOX_CHANGED = "SandboxChanged"


@dataclass(frozen=True)
class RuntimeEvent:
    """Something changed in the runtime for ``pod_uid``: the kubelet re-syncs that pod."""

    type: RuntimeEventType
    pod_uid: str
    container_id: str = ""


EventHandler = Callable[[RuntimeEvent], None]
"""Called on the event loop (a threaded runtime hops there with ``call_soon_threadsafe``)."""


class ContainerRuntime(Protocol):
    """What the kubelet needs from a container runtime (one instance per node)."""

    @property
    def name(self) -> str:
        """Short runtime name, the scheme of container ids: ``fake``, ``docker``."""
        ...

    def version(self) -> str:
        """``nodeInfo.containerRuntimeVersion``, e.g. ``fake://0.1.0`` or ``docker://27.3.1``."""
        ...

    def set_event_handler(self, handler: EventHandler) -> None:
        """Register the one callback told about container starts and exits."""
        ...

    async def run_pod_sandbox(
        self,
        pod: dict[str, Any],
        *,
        dns_servers: Sequence[str] = (),
        dns_searches: Sequence[str] = (),
        dns_options: Sequence[str] = (),
    ) -> SandboxStatus:
        """Create (or return the existing) sandbox of ``pod``; allocates its IP. The DNS lists are
        the pod's resolv.conf (``kubelet.network.resolv_conf_for_pod``); empty: the runtime's default."""
        ...

    async def pod_sandbox_status(self, pod_uid: str) -> SandboxStatus | None:
        ...

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        """Stop the sandbox (containers must already be stopped) and release its IP (CRI's
        ``StopPodSandbox`` tears the pod network down); the stopped sandbox reports no IP. The
        pod's exited containers stay, with their logs, until :meth:`remove_pod_sandbox`. Idempotent."""
        ...

    async def remove_pod_sandbox(self, pod_uid: str) -> None:
        """Remove the sandbox and every container of the pod; frees the IP; idempotent."""
        ...

    async def list_pod_uids(self) -> list[str]:
        """Every pod uid with a sandbox here (a restarted kubelet rebuilds its view from this)."""
        ...

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
        """Create attempt ``attempt`` of ``container`` in the pod's sandbox; its id.

        ``container`` is the pod spec entry as the kubelet prepared it (``kubelet.envvars``:
        ``$(VAR)`` in ``command``/``args`` expanded; ``lifecycle`` removed, the kubelet runs hooks).
        ``env``: the resolved ``{"name", "value"}`` list (None: the spec's literal values);
        ``mounts``: ``{"containerPath", "hostPath", "readOnly"}`` bind mounts (``kubelet.volumes``,
        ``subPath`` already applied to ``hostPath``)."""
        ...

    async def start_container(self, container_id: str) -> None:
        ...

    async def stop_container(self, container_id: str, *, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns when exited. (The kubelet runs
        ``lifecycle.preStop`` itself, through :meth:`exec_sync` or HTTP, before calling this.)"""
        ...

    async def exec_sync(self, container_id: str, command: list[str], *, timeout: float) -> tuple[int, bytes]:
        """Run ``command`` in the running container; (exit code, stdout+stderr). Exec probes and
        exec lifecycle hooks use it. Raises :class:`RuntimeError_` (``TimeoutError`` past ``timeout``)."""
        ...

    async def list_containers(self, pod_uid: str) -> list[ContainerStatus]:
        """Every container attempt of the pod (exited ones included), oldest first."""
        ...

    async def container_status(self, container_id: str) -> ContainerStatus:
        """Raises :class:`ContainerNotFoundError`."""
        ...


class Prober(Protocol):
    """Readiness of a running container (the kubelet's prober; the fake answers from flags)."""

    def is_ready(self, pod: dict[str, Any], status: ContainerStatus) -> bool:
        ...
