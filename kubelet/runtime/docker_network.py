"""The cluster's pod network on Docker, and a node's pod IPs on it.

:func:`ensure_network` creates the user-defined bridge ``kubelab-<cluster>`` (:func:`network_name`,
labelled with the cluster, subnet and gateway ``.1`` given) unless it exists; any node of the cluster may
create it first, the others adopt it.

:class:`DockerPodIPs` gives sandboxes static addresses from the node's pod CIDR. It is used by
:class:`kubelet.runtime.docker_sandbox.DockerSandboxes` when the settings name a ``pod_cidr``: the nodes
of a cluster share one Docker network, and Docker's own IPAM would hand out addresses from the whole
subnet, so the kubelet allocates from its node's ``spec.podCIDR`` (:mod:`kubelet.network.ipam`) and
passes the address with the network's endpoint config (``docker run --ip``).

Before the first allocation the allocator is rebuilt from the network as Docker sees it: the running
sandboxes of this node keep their addresses (under their pod UID), anything else connected to the
network (another node's pod, a foreign container) blocks its address. A full range is re-read once
before :class:`~kubelet.network.ipam.PodCIDRExhaustedError` is raised (foreign containers may have
gone). Blocking: called from the runtime's worker threads, inside its SDK-error translation.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any

import docker.errors
import docker.types

from kubelet.network.ipam import FOREIGN_OWNER, PodCIDRExhaustedError, PodIPAllocator
from kubelet.runtime.docker_spec import KIND_SANDBOX, LABEL_CLUSTER, LABEL_KIND, LABEL_NODE, LABEL_POD_UID

__all__ = ["DockerPodIPs", "ensure_network", "network_name"]

log = logging.getLogger(__name__)


def network_name(cluster: str) -> str:
    return f"kubelab-{cluster}"


def ensure_network(client: Any, *, cluster: str, subnet: str) -> None:
    """Create the cluster's pod network unless it exists (blocking; SDK errors propagate)."""
    name = network_name(cluster)
    if any(n.name == name for n in client.networks.list(names=[name])):
        return
    network = ipaddress.ip_network(subnet)
    ipam = docker.types.IPAMConfig(pool_configs=[
        docker.types.IPAMPool(subnet=str(network), gateway=str(next(network.hosts())))])
    try:
        client.networks.create(name, driver="bridge", ipam=ipam, check_duplicate=True,
                               labels={LABEL_CLUSTER: cluster})
        log.info("created pod network %s (%s)", name, network)
    except docker.errors.APIError:
        # Another node of the cluster may have created it in the meantime.
        if not any(n.name == name for n in client.networks.list(names=[name])):
            raise


class DockerPodIPs:
    """The pod IPs of one node's sandboxes on the cluster's Docker network."""

    def __init__(self, client: Any, *, network: str, cluster: str, node: str, pod_cidr: str) -> None:
        self.client = client
        self.network = network
        self.allocator = PodIPAllocator(pod_cidr)
        self._labels = [f"{LABEL_CLUSTER}={cluster}", f"{LABEL_NODE}={node}", f"{LABEL_KIND}={KIND_SANDBOX}"]
        self._lock = threading.Lock()
        self._rebuilt = False

    def rebuild(self) -> None:
        """Reserve every address in use on the network (see the module docstring)."""
        sandboxes = self.client.containers.list(filters={"label": self._labels}, ignore_removed=True)
        mine = {str(c.id): str(c.labels.get(LABEL_POD_UID, "")) for c in sandboxes}
        endpoints = (self.client.api.inspect_network(self.network).get("Containers") or {})
        foreign = []
        for container_id, endpoint in endpoints.items():
            ip = str(endpoint.get("IPv4Address") or "").partition("/")[0]
            owner = mine.get(str(container_id))
            if ip and not (owner and self.allocator.reserve(owner, ip)):
                foreign.append(ip)
        self.allocator.set_foreign(foreign)

    def assign(self, pod_uid: str) -> str:
        """The pod's address (the one it holds, else a free one of the node's pod CIDR)."""
        with self._lock:
            if not self._rebuilt:
                self.rebuild()
                self._rebuilt = True
        try:
            return self.allocator.allocate(pod_uid)
        except PodCIDRExhaustedError:
            with self._lock:
                self.rebuild()
            return self.allocator.allocate(pod_uid)

    def endpoint_config(self, ip: str) -> dict[str, Any]:
        """``networking_config`` of ``containers.create``: the sandbox's static address on the network."""
        return {self.network: self.client.api.create_endpoint_config(ipv4_address=ip)}

    def failed(self, pod_uid: str, ip: str, *, address_in_use: bool) -> None:
        """The sandbox with ``ip`` did not start: give the address back, or, when Docker found it taken,
        keep it blocked so that the pod's next attempt gets another one."""
        self.allocator.release(pod_uid)
        if address_in_use:
            self.allocator.reserve(FOREIGN_OWNER, ip)

    def release(self, pod_uid: str) -> None:
        """The pod's sandboxes are gone: its address is free again."""
        self.allocator.release(pod_uid)
