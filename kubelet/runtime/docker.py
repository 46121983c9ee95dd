"""The Docker implementation of :class:`kubelet.runtime.interface.ContainerRuntime`.

Built by the kubelet of a Docker-backed node (one instance per node; several nodes may share one
engine, each touching only containers labelled with its node name). A pod is the dockershim shape:

* a **pause container** (``pause_image`` running a shell that sleeps, reaps and exits 0 on
  SIGTERM) on the cluster's pod network, the user-defined bridge ``kubelab-<cluster>`` (created
  when missing, labelled, subnet from the settings). It owns the pod IP, the hostname, DNS
  settings and host port publishing, and its IPC namespace is shareable. With a ``pod_cidr`` in
  the settings (the node's ``spec.podCIDR``) the pod IP is allocated from it by
  :mod:`kubelet.runtime.docker_network` and given to Docker as a static address; a sandbox that fails
  to start is removed and its address released, so nothing is left half-created;
* init and app containers created per attempt with ``network_mode=container:<pause>`` and
  ``ipc_mode=container:<pause>`` (see :mod:`kubelet.runtime.docker_spec` for the spec mapping);
  an ephemeral container with ``targetContainerName`` also joins its target's PID namespace
  (``pid_mode=container:<target>``), so ``ps`` in ``kubectl debug --target`` sees the target;
* ``hostNetwork``, ``hostPID``, ``hostIPC`` and ``shareProcessNamespace`` change those namespace
  modes (:mod:`kubelet.runtime.host_namespaces`: ``kubectl debug node/NAME`` pods run in the host's);
* images are never pulled: an image absent locally is an ``ErrImagePull`` (no registry is ever
  contacted), ``imagePullPolicy: Never`` an ``ErrImageNeverPull``.

Every container carries the labels of :mod:`kubelet.runtime.docker_spec`, so a new instance
(a restarted kubelet) rebuilds pods, containers and restart counts from Docker alone. Container
starts and exits arrive through Docker's event stream (:mod:`kubelet.runtime.docker_events`).
The SDK is blocking: every call runs in a worker thread; SDK errors become :class:`RuntimeError_`.

:func:`cleanup_cluster` removes every container and network of a cluster (``kubelab down``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors

from kubelet.runtime.docker_events import DockerEventWatcher
from kubelet.runtime.docker_network import DockerPodIPs, ensure_network, network_name
from kubelet.runtime.docker_spec import (
    KIND_SANDBOX,
    LABEL_ATTEMPT,
    LABEL_CLUSTER,
    LABEL_CONTAINER,
    LABEL_KIND,
    LABEL_NODE,
    LABEL_POD_UID,
    PRESTOP_LABEL,
    SANDBOX_CONTAINER_NAME,
    ImageNeverPullError,
    ImagePullError,
    container_config,
    container_labels,
    container_name,
    host_ports,
    kind_label,
    parse_docker_time,
    pull_policy,
    resolv_conf,
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
    SandboxState,
    SandboxStatus,
)

__all__ = ["PAUSE_COMMAND", "DockerRuntime", "DockerRuntimeSettings", "cleanup_cluster", "network_name"]

log = logging.getLogger(__name__)

PAUSE_COMMAND = ["sh", "-c", 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait; done']
"""PID 1 of every pod: waits (reaping its child), exits 0 at once on SIGTERM."""


@dataclass(frozen=True)
class DockerRuntimeSettings:
    """Where one node's pods live on the Docker engine."""

    cluster: str
    """The cluster name: every container and the network carry ``kubelab.dev/cluster=<cluster>``."""
    node_name: str
    """This node: containers carry ``kubelab.dev/node=<node>``; other nodes' containers are ignored."""
    pod_subnet: str = "10.244.0.0/16"
    """Subnet of the pod network (used only when this runtime creates the network)."""
    pod_cidr: str = ""
    """The node's ``spec.podCIDR`` (inside the pod network's subnet): pod IPs come from it. Empty: Docker
    picks them from the whole subnet."""
    pause_image: str = "kubelab/busybox:1.35"
    """Image of the pause container; it needs ``sh`` and ``sleep``."""
    host_port_ip: str = "127.0.0.1"
    """Host address that ``hostPort`` entries are published on."""

    @property
    def network(self) -> str:
        return network_name(self.cluster)


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """SDK errors never cross the runtime seam."""
    try:
        yield
    except docker.errors.NotFound as exc:
        raise ContainerNotFoundError(f"{what}: {exc.explanation or exc}") from exc
    except docker.errors.APIError as exc:
        raise RuntimeError_(f"{what}: {exc.explanation or exc}") from exc
    except docker.errors.DockerException as exc:
        raise RuntimeError_(f"{what}: {exc}") from exc


def _write_resolv_conf(pause: Any, text: str) -> None:
    """Replace the sandbox's resolv.conf (shared by every container of the pod) with ``text``; where the
    engine's files are out of reach the pod keeps Docker's resolver, which forwards to the same servers."""
    path = str(pause.attrs.get("ResolvConfPath") or "")
    try:
        with open(path, "w") as out:
            out.write(text)
    except OSError as exc:
        log.warning("sandbox %s: cannot write resolv.conf at %r, keeping Docker's: %s", pause.short_id, path, exc)


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
        self._host = HostNamespaces(client, settings.network)
        self._ips = DockerPodIPs(client, network=settings.network, cluster=settings.cluster,
                                 node=settings.node_name, pod_cidr=settings.pod_cidr) if settings.pod_cidr else None

    # -- identity and lifecycle -----------------------------------------------------------
    @property
    def name(self) -> str:
        return "docker"

    def version(self) -> str:
        if not self._version:
            with _translated("docker version"):
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
        with _translated(f"pod network {self.settings.network}"):
            ensure_network(self.client, cluster=self.settings.cluster, subnet=self.settings.pod_subnet)

    async def ensure_network(self) -> None:
        if not self._network_ready:
            await asyncio.to_thread(self._ensure_network_sync)
            self._network_ready = True

    # -- lookups --------------------------------------------------------------------------
    def _filters(self, **labels: str) -> dict[str, Any]:
        pairs = {LABEL_CLUSTER: self.settings.cluster, LABEL_NODE: self.settings.node_name, **labels}
        return {"label": [f"{k}={v}" for k, v in pairs.items()]}

    def _find(self, pod_uid: str | None = None, *, sandbox: bool | None = None) -> list[Any]:
        labels = {LABEL_POD_UID: pod_uid} if pod_uid else {}
        with _translated("list containers"):
            # ignore_removed: a container removed between the list and its inspect (another pod's
            # cleanup in flight) is simply not listed, instead of failing the whole listing.
            found = self.client.containers.list(all=True, filters=self._filters(**labels), ignore_removed=True)
        if sandbox is None:
            return list(found)
        return [c for c in found if (c.labels.get(LABEL_KIND) == KIND_SANDBOX) == sandbox]

    def _sandbox(self, pod_uid: str) -> Any | None:
        """The newest pause container of the pod (a running one first)."""
        found = self._find(pod_uid, sandbox=True)
        if not found:
            return None
        found.sort(key=lambda c: (c.status == "running", c.attrs.get("Created", "")), reverse=True)
        return found[0]

    def _sandbox_status(self, pause: Any) -> SandboxStatus:
        networks = (pause.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        ip = str((networks.get(self.settings.network) or {}).get("IPAddress") or "")
        ip = ip or self._host.sandbox_ip(pause.attrs)  # a host-network pod: the node's address
        running = pause.status == "running"
        return SandboxStatus(
            pod_uid=str(pause.labels.get(LABEL_POD_UID, "")), id=str(pause.id),
            state=SandboxState.READY if running and ip else SandboxState.NOT_READY, ip=ip,
            created_at=parse_docker_time(pause.attrs.get("Created")) or datetime.now(UTC),
        )

    # -- sandboxes ------------------------------------------------------------------------
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
        return await asyncio.to_thread(self._run_pod_sandbox_sync, pod, list(dns_servers), list(dns_searches),
                                       list(dns_options))

    def _run_pod_sandbox_sync(self, pod: dict[str, Any], servers: list[str], searches: list[str],
                              options: list[str]) -> SandboxStatus:
        uid = str(pod["metadata"]["uid"])
        if not HostNamespaces.uses_cluster_dns(pod):
            servers, searches, options = [], [], []
        attempt = 0
        existing = self._sandbox(uid)
        if existing is not None:
            if existing.status == "running":
                return self._sandbox_status(existing)
            attempt = int(existing.labels.get(LABEL_ATTEMPT, "0")) + 1
            for container in self._find(uid, sandbox=False):
                if container.status == "running":
                    with _translated(f"stop {container.name}"):
                        container.stop(timeout=0)
        self._require_image(self.settings.pause_image, "IfNotPresent")
        spec = pod.get("spec") or {}
        labels = container_labels(pod, cluster=self.settings.cluster, node=self.settings.node_name,
                                   container=SANDBOX_CONTAINER_NAME, kind=KIND_SANDBOX, attempt=attempt)
        hostname = str(spec.get("hostname") or pod["metadata"]["name"])[:63]
        config: dict[str, Any] = {
            "name": container_name(pod, SANDBOX_CONTAINER_NAME, attempt), "labels": labels,
            "hostname": hostname, "network": self.settings.network, "ipc_mode": "shareable",
            "ports": host_ports(pod, self.settings.host_port_ip) or None,
        }
        if servers:
            config["dns"] = servers
        if searches:
            config["dns_search"] = searches
        if options:
            config["dns_opt"] = options
        config = self._host.sandbox_config(pod, config)
        pause = self._start_sandbox(uid, config)
        if servers:
            _write_resolv_conf(pause, resolv_conf(servers, searches, options))
        log.info("pod %s: sandbox %s started", uid, pause.short_id)
        return self._sandbox_status(pause)

    def _start_sandbox(self, uid: str, config: dict[str, Any]) -> Any:
        """Create and start the pause container (with its address from the node's pod CIDR); when that
        fails, remove what was created and release the address."""
        ip = ""
        with _translated(f"run sandbox of pod {uid}"):
            if self._ips is not None and config.get("network_mode") != "host":  # hostNetwork: the node's IP
                ip = self._ips.assign(uid)
                config["networking_config"] = self._ips.endpoint_config(ip)
            pause = None
            try:
                pause = self.client.containers.create(self.settings.pause_image, PAUSE_COMMAND, **config)
                pause.start()
                pause.reload()
            except docker.errors.APIError as exc:
                if pause is not None:
                    with contextlib.suppress(docker.errors.APIError):
                        pause.remove(force=True)
                if self._ips is not None:
                    self._ips.failed(uid, ip, address_in_use="already in use" in str(exc))
                raise
        return pause

    async def pod_sandbox_status(self, pod_uid: str) -> SandboxStatus | None:
        pause = await asyncio.to_thread(self._sandbox, pod_uid)
        return None if pause is None else self._sandbox_status(pause)

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        """Stop the pause container; Docker disconnects it from the pod network, so its address goes
        back to the node's range (the exited containers, and their logs, stay until removal)."""

        def stop() -> None:
            for pause in self._find(pod_uid, sandbox=True):
                if pause.status == "running":
                    with _translated(f"stop sandbox of pod {pod_uid}"):
                        pause.stop(timeout=2)
            if self._ips is not None:
                self._ips.release(pod_uid)

        await asyncio.to_thread(stop)

    async def remove_pod_sandbox(self, pod_uid: str) -> None:
        def remove() -> None:
            apps = self._find(pod_uid, sandbox=False)
            for container in [*apps, *self._find(pod_uid, sandbox=True)]:  # the pause container last
                self._oom_killed.discard(str(container.id))
                with contextlib.suppress(ContainerNotFoundError), _translated(f"remove {container.name}"):
                    container.remove(force=True, v=True)
            if self._ips is not None:
                self._ips.release(pod_uid)

        await asyncio.to_thread(remove)

    async def list_pod_uids(self) -> list[str]:
        pauses = await asyncio.to_thread(self._find, None, sandbox=True)
        return sorted({str(p.labels[LABEL_POD_UID]) for p in pauses})

    # -- containers -----------------------------------------------------------------------
    def _require_image(self, image: str, policy: str) -> None:
        if policy == "Always":
            raise ImagePullError(f'failed to pull image "{image}": no registry is reachable from this node '
                                 "(imagePullPolicy: Always); build or load the image locally")
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            if policy == "Never":
                raise ImageNeverPullError(
                    f'container image "{image}" is not present with pull policy of Never') from None
            raise ImagePullError(f'failed to pull image "{image}": not present locally and no registry is '
                                 "reachable from this node; build or load it (kubelab image build|load)") from None
        except docker.errors.APIError as exc:
            raise ImagePullError(f'inspecting image "{image}": {exc.explanation or exc}') from exc

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
        pause = self._sandbox(uid)
        if pause is None or pause.status != "running":
            raise RuntimeError_(f"pod {uid} has no running sandbox")
        self._require_image(str(container.get("image") or ""), pull_policy(container))
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
        with _translated(f"create container {name} of pod {uid}"):
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
        for candidate in self._find(pod_uid, sandbox=False):
            if candidate.labels.get(LABEL_CONTAINER) == name and candidate.status == "running":
                return str(candidate.id)
        raise RuntimeError_(f'target container "{name}" of pod {pod_uid} is not running')

    async def start_container(self, container_id: str) -> None:
        def start() -> None:
            with _translated(f"start container {container_id[:12]}"):
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
            with _translated(f"stop container {container_id[:12]}"):
                self.client.api.stop(container_id, timeout=stop_timeout(remaining))

        await asyncio.to_thread(stop)

    def _pre_stop_command(self, container_id: str) -> list[str]:
        with _translated(f"inspect {container_id[:12]}"):
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
            with _translated(f"exec in container {container_id[:12]}"):
                exec_id = self.client.api.exec_create(container_id, command, stdout=True, stderr=True)["Id"]
                output = self.client.api.exec_start(exec_id)
                code = self.client.api.exec_inspect(exec_id).get("ExitCode")
            return (int(code) if code is not None else -1), bytes(output or b"")

        return await asyncio.wait_for(asyncio.to_thread(run), timeout)

    async def list_containers(self, pod_uid: str) -> list[ContainerStatus]:
        def list_() -> list[ContainerStatus]:
            statuses = [self._status(c.attrs) for c in self._find(pod_uid, sandbox=False)]
            return sorted(statuses, key=lambda s: (s.created_at, s.attempt))

        return await asyncio.to_thread(list_)

    async def container_status(self, container_id: str) -> ContainerStatus:
        def inspect() -> ContainerStatus:
            with _translated(f"inspect container {container_id[:12]}"):
                attrs = self.client.api.inspect_container(container_id)
            labels = (attrs.get("Config") or {}).get("Labels") or {}
            if labels.get(LABEL_CLUSTER) != self.settings.cluster:
                raise ContainerNotFoundError(f"container {container_id[:12]} is not of cluster "
                                             f"{self.settings.cluster}")
            return self._status(attrs)

        return await asyncio.to_thread(inspect)

    def _status(self, attrs: Mapping[str, Any]) -> ContainerStatus:
        status = status_from_inspect(attrs)
        if status.reason == "Error" and status.id in self._oom_killed:
            status = replace(status, reason="OOMKilled")
        return status


def cleanup_cluster(client: Any, cluster: str) -> tuple[int, int]:
    """Remove every container, then every network labelled ``kubelab.dev/cluster=<cluster>``
    (``kubelab down``); return how many of each were removed."""
    selector = {"label": [f"{LABEL_CLUSTER}={cluster}"]}
    containers = networks = 0
    with _translated(f"clean up cluster {cluster}"):
        for container in client.containers.list(all=True, filters=selector, sparse=True):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
                containers += 1
        for network in client.networks.list(filters=selector):
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
                networks += 1
    return containers, networks
