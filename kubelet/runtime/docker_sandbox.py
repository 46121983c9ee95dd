"""The pod sandbox on Docker: the pause container that holds a pod's namespaces and IP.

:class:`DockerSandboxes` is the sandbox half of :class:`kubelet.runtime.docker.DockerRuntime`
(the CRI's ``RunPodSandbox``/``PodSandboxStatus``/``StopPodSandbox``/``RemovePodSandbox``), in the
dockershim shape:

* the **pause container** (``pause_image`` running :data:`PAUSE_COMMAND`, which sleeps, reaps and
  exits 0 on SIGTERM) joins the cluster's pod network, the user-defined bridge ``kubelab-<cluster>``
  (:mod:`kubelet.runtime.docker_network`). It owns the pod IP, the hostname, the DNS settings
  (the pod's resolv.conf written into it) and host port publishing; its IPC namespace is
  shareable. ``hostNetwork``/``hostPID``/``hostIPC`` change those modes
  (:mod:`kubelet.runtime.host_namespaces`); a meshed pod in mesh CNI mode gets its traffic capture
  programmed in the new network namespace before anything else runs (:mod:`kubelet.runtime.docker_capture`);
* with a node ``pod_cidr`` the IP is allocated from it (``DockerPodIPs``) and given to Docker as a
  static address; a sandbox that fails to start is removed and its address released, so nothing is
  left half-created;
* running a pod whose pause container died replaces it (attempt + 1); the pod's running containers
  are stopped first, they lived in the dead network namespace;
* stopping a sandbox disconnects it from the network (Docker frees the endpoint) and releases its
  address, so a finished pod holds no IP while its exited containers, and their logs, stay;
  removing it removes every container of the pod.

Blocking: :class:`~kubelet.runtime.docker.DockerRuntime` calls it from worker threads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import docker.errors

from kubelet.runtime.docker_capture import CaptureError, apply_capture, capture_rules
from kubelet.runtime.docker_engine import DockerRuntimeSettings, NodeContainers, require_image, translated
from kubelet.runtime.docker_network import DockerPodIPs
from kubelet.runtime.docker_spec import (
    KIND_SANDBOX,
    LABEL_ATTEMPT,
    LABEL_POD_UID,
    SANDBOX_CONTAINER_NAME,
    container_labels,
    container_name,
    host_ports,
    parse_docker_time,
    resolv_conf,
)
from kubelet.runtime.host_namespaces import HostNamespaces
from kubelet.runtime.interface import ContainerNotFoundError, RuntimeError_, SandboxState, SandboxStatus

__all__ = ["PAUSE_COMMAND", "DockerSandboxes"]

log = logging.getLogger(__name__)

PAUSE_COMMAND = ["sh", "-c", 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait; done']
"""PID 1 of every pod: waits (reaping its child), exits 0 at once on SIGTERM."""


def _write_resolv_conf(pause: Any, text: str) -> None:
    """Replace the sandbox's resolv.conf (shared by every container of the pod) with ``text``; where the
    engine's files are out of reach the pod keeps Docker's resolver, which forwards to the same servers."""
    path = str(pause.attrs.get("ResolvConfPath") or "")
    try:
        with open(path, "w") as out:
            out.write(text)
    except OSError as exc:
        log.warning("sandbox %s: cannot write resolv.conf at %r, keeping Docker's: %s", pause.short_id, path, exc)


class DockerSandboxes:
    """The pause containers of one node (see the module docstring)."""

    def __init__(self, containers: NodeContainers, host: HostNamespaces) -> None:
        self.containers = containers
        self.client = containers.client
        self.settings: DockerRuntimeSettings = containers.settings
        self.host = host
        settings = self.settings
        self.ips = DockerPodIPs(self.client, network=settings.network, cluster=settings.cluster,
                                node=settings.node_name, pod_cidr=settings.pod_cidr) if settings.pod_cidr else None

    def status(self, pause: Any) -> SandboxStatus:
        networks = (pause.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        ip = str((networks.get(self.settings.network) or {}).get("IPAddress") or "")
        ip = ip or self.host.sandbox_ip(pause.attrs)  # a host-network pod: the node's address
        running = pause.status == "running"
        return SandboxStatus(
            pod_uid=str(pause.labels.get(LABEL_POD_UID, "")), id=str(pause.id),
            state=SandboxState.READY if running and ip else SandboxState.NOT_READY, ip=ip,
            created_at=parse_docker_time(pause.attrs.get("Created")) or datetime.now(UTC),
        )

    def pod_status(self, pod_uid: str) -> SandboxStatus | None:
        pause = self.containers.sandbox(pod_uid)
        return None if pause is None else self.status(pause)

    def run(self, pod: dict[str, Any], servers: list[str], searches: list[str], options: list[str]) -> SandboxStatus:
        """The running sandbox of ``pod``, or a new pause container (replacing a dead one)."""
        uid = str(pod["metadata"]["uid"])
        if not HostNamespaces.uses_cluster_dns(pod):
            servers, searches, options = [], [], []
        attempt = 0
        existing = self.containers.sandbox(uid)
        if existing is not None:
            if existing.status == "running":
                return self.status(existing)
            attempt = int(existing.labels.get(LABEL_ATTEMPT, "0")) + 1
            for container in self.containers.find(uid, sandbox=False):
                if container.status == "running":
                    with translated(f"stop {container.name}"):
                        container.stop(timeout=0)
        require_image(self.client, self.settings.pause_image, "IfNotPresent")
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
        config = self.host.sandbox_config(pod, config)
        try:
            capture = capture_rules(pod)
        except CaptureError as exc:
            raise RuntimeError_(str(exc)) from None
        pause = self._start(uid, config)
        if capture is not None:
            self._capture(uid, pause, capture)
        if servers:
            _write_resolv_conf(pause, resolv_conf(servers, searches, options))
        log.info("pod %s: sandbox %s started", uid, pause.short_id)
        return self.status(pause)

    def _capture(self, uid: str, pause: Any, rules: str) -> None:
        """Mesh CNI mode: program the pod's traffic capture in the new sandbox; when that fails the
        sandbox is removed and its address released (the pod must not run uncaptured)."""
        try:
            apply_capture(int((pause.attrs.get("State") or {}).get("Pid") or 0), rules)
        except CaptureError as exc:
            with contextlib.suppress(docker.errors.APIError):
                pause.remove(force=True)
            if self.ips is not None:
                self.ips.release(uid)
            raise RuntimeError_(str(exc)) from None
        log.info("pod %s: mesh traffic capture programmed in sandbox %s", uid, pause.short_id)

    def _start(self, uid: str, config: dict[str, Any]) -> Any:
        """Create and start the pause container (with its address from the node's pod CIDR); when that
        fails, remove what was created and release the address."""
        ip = ""
        with translated(f"run sandbox of pod {uid}"):
            if self.ips is not None and config.get("network_mode") != "host":  # hostNetwork: the node's IP
                ip = self.ips.assign(uid)
                config["networking_config"] = self.ips.endpoint_config(ip)
            pause = None
            try:
                pause = self.client.containers.create(self.settings.pause_image, PAUSE_COMMAND, **config)
                pause.start()
                pause.reload()
            except docker.errors.APIError as exc:
                if pause is not None:
                    with contextlib.suppress(docker.errors.APIError):
                        pause.remove(force=True)
                if self.ips is not None:
                    self.ips.failed(uid, ip, address_in_use="already in use" in str(exc))
                raise
        return pause

    def stop(self, pod_uid: str) -> None:
        """Stop the pause container; Docker disconnects it from the pod network, so its address goes
        back to the node's range (the exited containers, and their logs, stay until removal)."""
        for pause in self.containers.find(pod_uid, sandbox=True):
            if pause.status == "running":
                with translated(f"stop sandbox of pod {pod_uid}"):
                    pause.stop(timeout=2)
        if self.ips is not None:
            self.ips.release(pod_uid)

    def remove(self, pod_uid: str, *, removed: Callable[[str], None]) -> None:
        """Remove every container of the pod, the pause container last, and release its address;
        ``removed`` is told each container id."""
        apps = self.containers.find(pod_uid, sandbox=False)
        for container in [*apps, *self.containers.find(pod_uid, sandbox=True)]:
            removed(str(container.id))
            with contextlib.suppress(ContainerNotFoundError), translated(f"remove {container.name}"):
                container.remove(force=True, v=True)
        if self.ips is not None:
            self.ips.release(pod_uid)
