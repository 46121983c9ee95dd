"""The Docker implementation of :class:`kubelet.runtime.interface.ContainerRuntime`.

Built by the kubelet of a Docker-backed node (one instance per node; several nodes may share one
engine, each touching only containers labelled with its node name). A pod is the dockershim shape:

* a **pause container** per pod, its sandbox (:mod:`kubelet.runtime.docker_sandbox`): it owns the
  pod IP on the cluster's pod network (from the node's ``pod_cidr`` when the settings name one,
  :mod:`kubelet.runtime.docker_network`), the hostname, DNS settings and host port publishing;
  stopping it releases the IP, removing it removes the pod;
* init and app containers created per attempt with ``network_mode=container:<pause>`` and
  ``ipc_mode=container:<pause>`` (see :mod:`kubelet.runtime.docker_spec` for the spec mapping);
  an ephemeral container with ``targetContainerName`` also joins its target's PID namespace
  (``pid_mode=container:<target>``), so ``ps`` in ``kubectl debug --target`` sees the target;
* ``hostNetwork``, ``hostPID``, ``hostIPC`` and ``shareProcessNamespace`` change those namespace
  modes (:mod:`kubelet.runtime.host_namespaces`: ``kubectl debug node/NAME`` pods run in the host's);
* images are never pulled: an image absent locally is an ``ErrImagePull`` (no registry is ever
  contacted), ``imagePullPolicy: Never`` an ``ErrImageNeverPull``
  (:func:`kubelet.runtime.docker_engine.require_image`).

Every container carries the labels of :mod:`kubelet.runtime.docker_spec`, so a new instance
(a restarted kubelet) rebuilds pods, containers and restart counts from Docker alone. Container
starts and exits arrive through Docker's event stream (:mod:`kubelet.runtime.docker_events`).
The SDK is blocking: every call runs in a worker thread; SDK errors become :class:`RuntimeError_`
(:func:`kubelet.runtime.docker_engine.translated`).

:func:`cleanup_cluster` removes every container and network of a cluster (``kubelab down``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors

from kubelet.runtime.docker_engine import DockerRuntimeSettings, NodeContainers, require_image, translated
from kubelet.runtime.docker_events import DockerEventWatcher
from kubelet.runtime.docker_network import ensure_network, network_name
from kubelet.runtime.docker_sandbox import PAUSE_COMMAND, DockerSandboxes
from kubelet.runtime.docker_spec import (
    LABEL_CLUSTER,
    LABEL_CONTAINER,
    LABEL_POD_UID,
    PRESTOP_LABEL,
    container_config,
    container_labels,
    container_name,
    kind_label,
    pull_policy,
    status_from_inspect,
    stop_timeout,
)
from kubelet.runtime.host_namespaces import HostNamespaces
from kubelet.runtime.interface import (
    ContainerKind,
    ContainerNotFoundError,
    ContainerState,
    ContainerStatus,
    EventHandler,
    RuntimeError_,
    RuntimeEvent,
    SandboxStatus,
)

__all__ = ["PAUSE_COMMAND", "DockerRuntime", "DockerRuntimeSettings", "cleanup_cluster", "network_name"]

log = logging.getLogger(__name__)
_OOM_EVENT_WINDOW = 5.0
"""Seconds after a SIGKILL exit during which a missing ``oom`` event is still awaited."""
_OOM_EVENT_GRACE = 1.0
"""Seconds a status read waits for that event."""


class DockerRuntime:
    """One node's pods on a Docker engine (see the module docstring)."""

    def __init__(self, client: Any, settings: DockerRuntimeSettings) -> None:
        self.client = client
        """A ``docker.DockerClient``; shared by the worker threads."""
        self.settings = settings
        self._handler: EventHandler | None = None
        self._watcher: DockerEventWatcher | None = None
        self._version = ""
        self._network_ready = False
        self._oom_killed: set[str] = set()
        """Container ids Docker's event stream reported an OOM kill for."""
        self._containers = NodeContainers(client, settings)
        self._sandboxes = DockerSandboxes(self._containers, HostNamespaces(client, settings.network))

    # -- identity and lifecycle -----------------------------------------------------------
    @property
    def name(self) -> str:
        return "docker"

    def version(self) -> str:
        if not self._version:
            with translated("docker version"):
                self._version = str(self.client.version().get("Version", "unknown"))
        return f"docker://{self._version}"

    async def start(self) -> None:
        """Ask the engine's version and ensure the pod network (optional: done lazily otherwise)."""
        await asyncio.to_thread(self.version)
        await self.ensure_network()

    def set_event_handler(self, handler: EventHandler) -> None:
        """Register the handler; the event thread starts now when called on a running loop
        (otherwise at the first sandbox operation)."""
        self._handler = handler
        with contextlib.suppress(RuntimeError):
            self._ensure_watcher(asyncio.get_running_loop())

    def _ensure_watcher(self, loop: asyncio.AbstractEventLoop) -> DockerEventWatcher:
        if self._watcher is None:
            self._watcher = DockerEventWatcher(self.client, cluster=self.settings.cluster,
                                               node=self.settings.node_name, loop=loop, deliver=self._deliver,
                                               on_oom=self._oom_killed.add)
            self._watcher.start()
        return self._watcher

    async def wait_events_connected(self, timeout: float = 5.0) -> bool:
        """Start the event thread if needed and wait until its stream is open (for tests/startup)."""
        watcher = self._ensure_watcher(asyncio.get_running_loop())
        return await asyncio.to_thread(watcher.connected.wait, timeout)

    def _deliver(self, event: RuntimeEvent) -> None:
        if self._handler is not None:
            self._handler(event)

    async def close(self) -> None:
        """Stop the event thread (containers keep running: they belong to the node, not to us)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await asyncio.to_thread(watcher.stop)

    # -- the pod network ------------------------------------------------------------------
    def _ensure_network_sync(self) -> None:
        with translated(f"pod network {self.settings.network}"):
            ensure_network(self.client, cluster=self.settings.cluster, subnet=self.settings.pod_subnet)

    async def ensure_network(self) -> None:
        if not self._network_ready:
            await asyncio.to_thread(self._ensure_network_sync)
            self._network_ready = True

    # -- sandboxes (kubelet.runtime.docker_sandbox) --------------------------------------
    async def run_pod_sandbox(
        self,
        pod: dict[str, Any],
        *,
        dns_servers: Sequence[str] = (),
        dns_searches: Sequence[str] = (),
        dns_options: Sequence[str] = (),
    ) -> SandboxStatus:
        """Return the running sandbox of ``pod``, or start a new pause container (a dead one is
        replaced: the pod's running containers are stopped, they lived in its network namespace)."""
        self._ensure_watcher(asyncio.get_running_loop())
        await self.ensure_network()
        return await asyncio.to_thread(self._sandboxes.run, pod, list(dns_servers), list(dns_searches),
                                       list(dns_options))

    async def pod_sandbox_status(self, pod_uid: str) -> SandboxStatus | None:
        return await asyncio.to_thread(self._sandboxes.pod_status, pod_uid)

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        """Stop the pause container and release the pod's IP; the exited containers stay."""
        await asyncio.to_thread(self._sandboxes.stop, pod_uid)

    async def remove_pod_sandbox(self, pod_uid: str) -> None:
        await asyncio.to_thread(self._sandboxes.remove, pod_uid, removed=self._oom_killed.discard)

    async def list_pod_uids(self) -> list[str]:
        pauses = await asyncio.to_thread(self._containers.find, None, sandbox=True)
        return sorted({str(p.labels[LABEL_POD_UID]) for p in pauses})

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
        """Create one attempt of ``container``. ``env`` is the kubelet's resolved list of
        ``{name, value}`` (default: the spec's literal values); ``mounts`` the resolved
        ``{containerPath, hostPath, readOnly}`` bind mounts."""
        return await asyncio.to_thread(self._create_sync, pod, container, kind, attempt, env, mounts)

    def _create_sync(self, pod: dict[str, Any], container: dict[str, Any], kind: ContainerKind, attempt: int,
                     env: Sequence[Mapping[str, Any]] | None, mounts: Sequence[Mapping[str, Any]] | None) -> str:
        uid = str(pod["metadata"]["uid"])
        pause = self._containers.sandbox(uid)
        if pause is None or pause.status != "running":
            raise RuntimeError_(f"pod {uid} has no running sandbox")
        require_image(self.client, str(container.get("image") or ""), pull_policy(container))
        name = str(container["name"])
        labels = container_labels(pod, cluster=self.settings.cluster, node=self.settings.node_name,
                                  container=name, kind=kind_label(kind), attempt=attempt)
        config = container_config(pod, container, sandbox_id=str(pause.id), labels=labels,
                                  name=container_name(pod, name, attempt), env=env, mounts=mounts)
        config.update(HostNamespaces.container_modes(pod, str(pause.id)))
        target = container.get("targetContainerName")
        if target:
            # An ephemeral container (kubectl debug --target): the target's processes are visible.
            config["pid_mode"] = f"container:{self._running_container_id(uid, str(target))}"
        image = config.pop("image")
        config.pop("detach")
        with translated(f"create container {name} of pod {uid}"):
            try:
                created = self.client.containers.create(image, **config)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                # A leftover of an interrupted attempt under the same name: replace it.
                self.client.containers.get(config["name"]).remove(force=True)
                created = self.client.containers.create(image, **config)
        return str(created.id)

    def _running_container_id(self, pod_uid: str, name: str) -> str:
        """The id of the running container ``name`` of the pod (the target of an ephemeral one)."""
        for candidate in self._containers.find(pod_uid, sandbox=False):
            if candidate.labels.get(LABEL_CONTAINER) == name and candidate.status == "running":
                return str(candidate.id)
        raise RuntimeError_(f'target container "{name}" of pod {pod_uid} is not running')

    async def start_container(self, container_id: str) -> None:
        def start() -> None:
            with translated(f"start container {container_id[:12]}"):
                self.client.api.start(container_id)

        await asyncio.to_thread(start)

    async def stop_container(self, container_id: str, *, timeout: float) -> None:
        """Run the preStop exec hook (within the grace period), then SIGTERM, SIGKILL after the rest."""
        deadline = time.monotonic() + max(timeout, 0.0)
        status = await self.container_status(container_id)
        if status.state is not ContainerState.RUNNING:
            return
        hook = await asyncio.to_thread(self._pre_stop_command, container_id)
        if hook and timeout > 0:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._exec, container_id, hook), timeout)
            except TimeoutError:
                log.info("container %s: preStop hook ran past the grace period", container_id[:12])
        remaining = max(deadline - time.monotonic(), 0.0)

        def stop() -> None:
            with translated(f"stop container {container_id[:12]}"):
                self.client.api.stop(container_id, timeout=stop_timeout(remaining))

        await asyncio.to_thread(stop)

    def _pre_stop_command(self, container_id: str) -> list[str]:
        with translated(f"inspect {container_id[:12]}"):
            labels = self.client.api.inspect_container(container_id)["Config"].get("Labels") or {}
        command = labels.get(PRESTOP_LABEL)
        return [str(part) for part in json.loads(command)] if command else []

    def _exec(self, container_id: str, command: list[str]) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.client.api.exec_start(self.client.api.exec_create(container_id, command)["Id"])

    async def exec_sync(self, container_id: str, command: list[str], *, timeout: float) -> tuple[int, bytes]:
        """Run ``command`` in the running container (exec probes, exec hooks); (exit code, stdout+stderr
        interleaved). ``TimeoutError`` past ``timeout``: Docker cannot kill an exec, it is left to finish."""

        def run() -> tuple[int, bytes]:
            with translated(f"exec in container {container_id[:12]}"):
                exec_id = self.client.api.exec_create(container_id, command, stdout=True, stderr=True)["Id"]
                output = self.client.api.exec_start(exec_id)
                code = self.client.api.exec_inspect(exec_id).get("ExitCode")
            return (int(code) if code is not None else -1), bytes(output or b"")

        return await asyncio.wait_for(asyncio.to_thread(run), timeout)

    async def list_containers(self, pod_uid: str) -> list[ContainerStatus]:
        def list_() -> list[ContainerStatus]:
            statuses = [self._status(c.attrs) for c in self._containers.find(pod_uid, sandbox=False)]
            return sorted(statuses, key=lambda s: (s.created_at, s.attempt))

        return await asyncio.to_thread(list_)

    async def container_status(self, container_id: str) -> ContainerStatus:
        def inspect() -> ContainerStatus:
            with translated(f"inspect container {container_id[:12]}"):
                attrs = self.client.api.inspect_container(container_id)
            labels = (attrs.get("Config") or {}).get("Labels") or {}
            if labels.get(LABEL_CLUSTER) != self.settings.cluster:
                raise ContainerNotFoundError(f"container {container_id[:12]} is not of cluster "
                                             f"{self.settings.cluster}")
            return self._status(attrs)

        return await asyncio.to_thread(inspect)

    def _status(self, attrs: Mapping[str, Any]) -> ContainerStatus:
        """Inspect output as a status (called on worker threads: it may wait a little, see below)."""
        status = status_from_inspect(attrs)
        if status.reason == "Error" and self._oom_event_due(attrs, status):
            deadline = time.monotonic() + _OOM_EVENT_GRACE
            while status.id not in self._oom_killed and time.monotonic() < deadline:
                time.sleep(0.02)
        if status.reason == "Error" and status.id in self._oom_killed:
            status = replace(status, reason="OOMKilled")
        return status

    def _oom_event_due(self, attrs: Mapping[str, Any], status: ContainerStatus) -> bool:
        """A SIGKILLed container with a memory limit that just exited: the engine's ``oom`` event for it
        may still be on its way (it can trail the exit on a busy machine)."""
        if status.exit_code != 137 or status.id in self._oom_killed or status.finished_at is None:
            return False
        if not int((attrs.get("HostConfig") or {}).get("Memory") or 0):
            return False
        return (datetime.now(UTC) - status.finished_at).total_seconds() < _OOM_EVENT_WINDOW


def cleanup_cluster(client: Any, cluster: str) -> tuple[int, int]:
    """Remove every container, then every network labelled ``kubelab.dev/cluster=<cluster>``
    (``kubelab down``); return how many of each were removed."""
    selector = {"label": [f"{LABEL_CLUSTER}={cluster}"]}
    containers = networks = 0
    with translated(f"clean up cluster {cluster}"):
        for container in client.containers.list(all=True, filters=selector, sparse=True):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
                containers += 1
        for network in client.networks.list(filters=selector):
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
                networks += 1
    return containers, networks
