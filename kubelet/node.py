"""Node registration, the node lease heartbeat and node status, for one node.

``NodeAgent.run()`` is started by ``kubelet.hollow.KubeletGroup`` per node. As the kubelet's
``registerWithAPIServer``/``nodeleasecontroller``/``nodestatus`` it:

* creates the Node (capacity = allocatable: cpu, memory, pods; labels ``kubernetes.io/hostname``,
  ``kubernetes.io/os``, ``kubernetes.io/arch``, ``node.kubernetes.io/instance-type`` for hollow
  nodes; taints; ``spec.podCIDR``); an existing Node is adopted and its labels and pod CIDR reconciled;
* renews ``kube-node-lease/<node>`` every ``lease_renew_interval`` seconds (update with the
  cached resourceVersion; a 409 re-reads), the first renewal jittered so a thousand nodes of one
  process spread their writes over the interval;
* posts ``status`` (conditions Ready/MemoryPressure/DiskPressure/PIDPressure, addresses,
  nodeInfo, capacity) at registration, when it changes, and at least every
  ``node_status_report_frequency`` seconds.

Writes go through a semaphore shared by the process (bounded concurrency).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from machinery.client.rest import ApiClient
from machinery.errors import AlreadyExistsError, ApiError, ConflictError, NotFoundError
from machinery.meta import now_rfc3339
from machinery.resources import LEASES, NODES

__all__ = ["KUBELET_VERSION", "NodeAgent", "NodeConfig", "node_conditions"]

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.32.0-kubelab"
LEASE_NAMESPACE = "kube-node-lease"


@dataclass
class NodeConfig:
    """What one node registers as."""

    name: str
    host_ip: str
    pod_cidr: str
    runtime_version: str
    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    hollow: bool = False
    lease_duration_seconds: int = 40
    lease_renew_interval: float = 10.0
    status_report_frequency: float = 60.0
    kubelet_port: int = 10250
    """``status.daemonEndpoints.kubeletEndpoint.Port``: where the kubelet endpoints answer (0: nowhere)."""


def _micro_time() -> str:
    """A MicroTime (lease renewTime): RFC 3339 with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def node_conditions(previous: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """The node's conditions; ``lastTransitionTime`` kept from ``previous`` when the status is unchanged."""
    old = {c.get("type"): c for c in previous}
    conditions = []
    for type_, status, reason, message in _CONDITIONS:
        before = old.get(type_) or {}
        transition = before.get("lastTransitionTime") if before.get("status") == status else None
        conditions.append({"type": type_, "status": status, "reason": reason, "message": message,
                           "lastHeartbeatTime": now, "lastTransitionTime": transition or now})
    return conditions


class NodeAgent:
    """Registration, lease and status of one node."""

    def __init__(self, client: ApiClient, config: NodeConfig, *, writes: asyncio.Semaphore) -> None:
        self.client = client
        self.config = config
        self._writes = writes
        self._node_uid = ""
        self._lease: dict[str, Any] | None = None
        self._last_status: dict[str, Any] | None = None
        self._status_posted = 0.0
        self.registered = asyncio.Event()

    # -- the Node object ------------------------------------------------------------------
    def labels(self) -> dict[str, str]:
        labels = {
            "kubernetes.io/hostname": self.config.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
        }
        if self.config.hollow:
            labels["node.kubernetes.io/instance-type"] = "hollow"
        labels.update(self.config.labels)
        return labels

    def resources(self) -> dict[str, str]:
        return {"cpu": self.config.cpu, "memory": self.config.memory, "pods": str(self.config.pods),
                "ephemeral-storage": "100Gi"}

    def status(self, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """The node status to post (conditions carry a fresh heartbeat)."""
        now = now_rfc3339()
        return {
            "capacity": self.resources(),
            "allocatable": self.resources(),
            "conditions": node_conditions(list((previous or {}).get("conditions") or []), now),
            "addresses": [{"type": "InternalIP", "address": self.config.host_ip},
                          {"type": "Hostname", "address": self.config.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.kubelet_port}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "6.1.0-kubelab", "osImage": "kubelab hollow node" if self.config.hollow else "Linux",
                "containerRuntimeVersion": self.config.runtime_version, "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux", "architecture": "amd64",
            },
        }

    def node_object(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"podCIDR": self.config.pod_cidr, "podCIDRs": [self.config.pod_cidr]}
        if self.config.taints:
            spec["taints"] = self.config.taints
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.config.name, "labels": self.labels(),
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": spec}

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Register (retrying), then heartbeat until cancelled."""
        delay = 0.5
        while True:
            try:
                await self.register()
                break
            except ApiError as exc:
                log.warning("node %s: registration failed (%s); retrying in %.1fs", self.config.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        interval = self.config.lease_renew_interval
        await asyncio.sleep(random.uniform(0, interval))  # spread many nodes over the interval
        while True:
            try:
                await self.renew_lease()
                if asyncio.get_running_loop().time() - self._status_posted >= self.config.status_report_frequency:
                    await self.post_status()
            except ApiError as exc:
                log.warning("node %s: heartbeat failed: %s", self.config.name, exc)
            await asyncio.sleep(interval)

    async def register(self) -> None:
        async with self._writes:
            try:
                node = await self.client.create(NODES, self.node_object())
            except AlreadyExistsError:
                node = await self.client.get(NODES, self.config.name)
                labels = dict((node.get("metadata") or {}).get("labels") or {})
                patch: dict[str, Any] = {}
                if any(labels.get(k) != v for k, v in self.labels().items()):
                    labels.update(self.labels())
                    patch["metadata"] = {"labels": labels}
                if (node.get("spec") or {}).get("podCIDR") != self.config.pod_cidr:
                    # The node's pods get IPs from this range: the Node must name the one in use.
                    patch["spec"] = {"podCIDR": self.config.pod_cidr, "podCIDRs": [self.config.pod_cidr]}
                if patch:
                    node = await self.client.patch(NODES, self.config.name, patch)
        self._node_uid = str(node["metadata"].get("uid", ""))
        self._last_status = node.get("status") or {}
        await self.post_status()
        await self.renew_lease()
        self.registered.set()
        log.info("node %s registered", self.config.name)

    async def post_status(self) -> None:
        status = self.status(self._last_status)
        async with self._writes:
            node = await self.client.patch(NODES, self.config.name, {"status": status}, subresource="status")
        self._last_status = node.get("status") or status
        self._status_posted = asyncio.get_running_loop().time()

    def _lease_object(self) -> dict[str, Any]:
        owner = [{"apiVersion": "v1", "kind": "Node", "name": self.config.name, "uid": self._node_uid}]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.config.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": owner if self._node_uid else []},
                "spec": {"holderIdentity": self.config.name,
                         "leaseDurationSeconds": self.config.lease_duration_seconds,
                         "renewTime": _micro_time()}}

    async def renew_lease(self) -> None:
        async with self._writes:
            if self._lease is None:
                try:
                    self._lease = await self.client.get(LEASES, self.config.name, namespace=LEASE_NAMESPACE)
                except NotFoundError:
                    self._lease = await self.client.create(LEASES, self._lease_object(), namespace=LEASE_NAMESPACE)
                    return
            lease = dict(self._lease)
            lease["spec"] = {**(lease.get("spec") or {}), "holderIdentity": self.config.name,
                             "leaseDurationSeconds": self.config.lease_duration_seconds, "renewTime": _micro_time()}
            try:
                self._lease = await self.client.update(LEASES, lease)
            except (ConflictError, NotFoundError):
                self._lease = None  # re-read (or re-create) on the next renewal
                raise
