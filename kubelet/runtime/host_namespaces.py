"""A pod's host namespaces on a Docker node: ``hostNetwork``, ``hostPID``, ``hostIPC`` and
``shareProcessNamespace`` as Docker namespace modes.

:class:`kubelet.runtime.docker_sandbox.DockerSandboxes` asks :class:`HostNamespaces` for the sandbox's
and :class:`kubelet.runtime.docker.DockerRuntime` for each container's namespace settings; nothing here
starts a container. What each field becomes, as Kubernetes defines it (``kubectl debug node/NAME``
sets the first three):

* ``hostNetwork``: the pause container runs with ``network_mode=host`` and the pod's containers
  join it as usual (``network_mode=container:<pause>``), so they all live in the node's network
  namespace. No hostname is set (the pod sees the node's, as it shares the node's UTS namespace
  on Kubernetes) and no port is published (a ``hostPort`` *is* the container's port on the node).
  The sandbox's address is the pod network's gateway (the host's own address on the bridge, where
  probes reach the pod); the kubelet reports the node's InternalIP as the pod IP. DNS: with
  ``dnsPolicy: ClusterFirst`` the pod keeps the node's resolv.conf (Kubernetes falls back to
  ``Default`` for host-network pods); ``ClusterFirstWithHostNet`` gets the cluster DNS;
* ``hostPID``: every container runs with ``pid_mode=host`` (it sees and signals the node's processes);
* ``hostIPC``: the pause container and every container run with ``ipc_mode=host``;
* ``shareProcessNamespace``: every container joins the pause container's PID namespace, whose
  PID 1 is the pause process (Kubernetes' shared process namespace).

:func:`unsupported` names the pod fields of this family the Docker runtime cannot honour
(``hostUsers: false``: Docker has no per-container user namespace); the runtime refuses to create
such a pod's sandbox with that message (a ``FailedCreatePodSandBox`` event) instead of running it
without them.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from typing import Any

from kubelet.runtime.interface import RuntimeError_

__all__ = ["HostNamespaces", "UnsupportedPodFieldError", "unsupported"]

Obj = Mapping[str, Any]

HOST = "host"


class UnsupportedPodFieldError(RuntimeError_):
    """The pod asks for something the Docker runtime cannot give it (the message says what)."""

    reason = "CreatePodSandboxError"


def _spec(pod: Obj) -> Obj:
    return pod.get("spec") or {}


def unsupported(pod: Obj) -> str:
    """Why this runtime cannot run ``pod`` as specified ("" when it can)."""
    if _spec(pod).get("hostUsers") is False:
        return ("spec.hostUsers: false (a user namespace per pod) is not supported by the Docker runtime "
                "of this node")
    return ""


class HostNamespaces:
    """Namespace settings of one node's sandboxes and containers on one Docker network."""

    def __init__(self, client: Any, network: str) -> None:
        self.client = client
        """A ``docker.DockerClient`` (used in worker threads only: to read the network's gateway)."""
        self.network = network
        self._gateway = ""

    # -- the sandbox ----------------------------------------------------------------------
    def sandbox_config(self, pod: Obj, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (keyword arguments of the pause container's ``containers.run``) with the pod's
        host namespaces applied; raises :class:`UnsupportedPodFieldError`."""
        reason = unsupported(pod)
        if reason:
            raise UnsupportedPodFieldError(reason)
        spec = _spec(pod)
        out = dict(config)
        if spec.get("hostNetwork"):
            for key in ("network", "hostname", "ports"):
                out.pop(key, None)
            out["network_mode"] = HOST
        if spec.get("hostIPC"):
            out["ipc_mode"] = HOST
        if spec.get("hostPID"):
            out["pid_mode"] = HOST
        return out

    @staticmethod
    def uses_cluster_dns(pod: Obj) -> bool:
        """False for a host-network pod with ``dnsPolicy: ClusterFirst`` (it keeps the node's resolv.conf)."""
        spec = _spec(pod)
        return not (spec.get("hostNetwork") and (spec.get("dnsPolicy") or "ClusterFirst") == "ClusterFirst")

    def sandbox_ip(self, pause_attrs: Obj) -> str:
        """The address of a host-network sandbox (the pod network's gateway), "" for any other sandbox."""
        if ((pause_attrs.get("HostConfig") or {}).get("NetworkMode")) != HOST:
            return ""
        if not self._gateway:
            self._gateway = self._network_gateway()
        return self._gateway

    def _network_gateway(self) -> str:
        """The gateway of the pod network: the host's address on the bridge."""
        network = self.client.networks.get(self.network)
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if config.get("Gateway"):
                return str(config["Gateway"]).split("/")[0]
            with contextlib.suppress(KeyError, ValueError, StopIteration):
                return str(next(ipaddress.ip_network(config["Subnet"], strict=False).hosts()))
        return ""

    # -- containers -------------------------------------------------------------------------
    @staticmethod
    def container_modes(pod: Obj, sandbox_id: str) -> dict[str, str]:
        """``pid_mode``/``ipc_mode`` of the pod's containers (the sandbox's network is joined as usual)."""
        spec = _spec(pod)
        modes: dict[str, str] = {}
        if spec.get("hostPID"):
            modes["pid_mode"] = HOST
        elif spec.get("shareProcessNamespace"):
            modes["pid_mode"] = f"container:{sandbox_id}"
        if spec.get("hostIPC"):
            modes["ipc_mode"] = HOST
        return modes
