"""The scheduler's cache: one :class:`NodeInfo` per node, with bound and *assumed* pods.

Fed by the scheduler's informer handlers (nodes, assigned pods) and by the scheduling cycle
(:meth:`SchedulerCache.assume`). Plugins read ``NodeInfo`` objects directly: the scheduling cycle is
synchronous on the event loop, so the cache is its own consistent snapshot.

Guarantees:
- a pod counts against its node as soon as it is assumed, so the next cycle sees the space taken
  before the binding's watch event comes back;
- an assumed pod is confirmed by the informer (``add_pod`` with ``spec.nodeName``), dropped by
  :meth:`forget` when the bind fails, and expires ``assume_ttl`` seconds after its bind finished
  if the informer never shows it (a lost watch event must not leak capacity forever);
- per-node aggregates (requested cpu/memory, non-zero requests, pods per controller, image set)
  are maintained incrementally, so no plugin walks every pod of every node per cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler.podinfo import PodInfo, milli_cpu, normalize_image, whole_value

ASSUME_TTL_SECONDS = 30.0


@dataclass(slots=True)
class NodeInfo:
    """A node and the pods on it (bound or assumed), with running totals."""

    name: str
    obj: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    unschedulable: bool = False
    alloc_cpu: int = 0
    alloc_memory: int = 0
    alloc_pods: int = 0
    images: dict[str, int] = field(default_factory=dict)
    pods: dict[str, PodInfo] = field(default_factory=dict)
    requested_cpu: int = 0
    requested_memory: int = 0
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    controller_counts: dict[str, int] = field(default_factory=dict)

    @property
    def hard_taints(self) -> list[dict[str, Any]]:
        return [t for t in self.taints if t.get("effect") in ("NoSchedule", "NoExecute")]

    def set_node(self, obj: dict[str, Any]) -> None:
        """Take labels, taints, allocatable and images from a Node object."""
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.obj = obj
        self.labels = dict((obj.get("metadata") or {}).get("labels") or {})
        self.taints = list(spec.get("taints") or [])
        self.unschedulable = bool(spec.get("unschedulable"))
        self.alloc_cpu = milli_cpu(alloc.get("cpu"))
        self.alloc_memory = whole_value(alloc.get("memory"))
        self.alloc_pods = whole_value(alloc.get("pods")) if "pods" in alloc else 110
        images: dict[str, int] = {}
        for image in status.get("images") or []:
            for name in image.get("names") or []:
                images[normalize_image(str(name))] = int(image.get("sizeBytes") or 0)
        self.images = images

    def add_pod(self, pod: PodInfo) -> None:
        self.pods[pod.key] = pod
        self.requested_cpu += pod.cpu
        self.requested_memory += pod.memory
        self.nonzero_cpu += pod.nonzero_cpu
        self.nonzero_memory += pod.nonzero_memory
        if pod.controller_uid:
            self.controller_counts[pod.controller_uid] = self.controller_counts.get(pod.controller_uid, 0) + 1

    def remove_pod(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        self.requested_cpu -= pod.cpu
        self.requested_memory -= pod.memory
        self.nonzero_cpu -= pod.nonzero_cpu
        self.nonzero_memory -= pod.nonzero_memory
        if pod.controller_uid:
            left = self.controller_counts.get(pod.controller_uid, 0) - 1
            if left > 0:
                self.controller_counts[pod.controller_uid] = left
            else:
                self.controller_counts.pop(pod.controller_uid, None)
        return pod


@dataclass(slots=True)
class _PodState:
    pod: PodInfo
    node: str
    assumed: bool
    deadline: float | None = None  # set when an assumed pod's bind finished


class SchedulerCache:
    """Nodes and placed pods. ``clock`` is injectable (monotonic seconds)."""

    def __init__(self, *, assume_ttl: float = ASSUME_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.node_order: list[str] = []
        self.anti_affinity_pods: dict[str, PodInfo] = {}
        self.image_nodes: dict[str, int] = {}
        self._pods: dict[str, _PodState] = {}
        self._assume_ttl = assume_ttl
        self._clock = clock

    # -- nodes -----------------------------------------------------------------------------
    def set_node(self, obj: dict[str, Any]) -> NodeInfo:
        """Add or update a node; pods already placed on it (seen before the node) are kept."""
        name = str((obj.get("metadata") or {}).get("name") or "")
        info = self.nodes.get(name)
        if info is None:
            info = NodeInfo(name)
            self.nodes[name] = info
            self.node_order.append(name)
        else:
            self._count_images(info, -1)
        info.set_node(obj)
        self._count_images(info, +1)
        return info

    def remove_node(self, name: str) -> None:
        info = self.nodes.pop(name, None)
        if info is None:
            return
        self._count_images(info, -1)
        self.node_order.remove(name)

    def _count_images(self, info: NodeInfo, delta: int) -> None:
        for image in info.images:
            count = self.image_nodes.get(image, 0) + delta
            if count > 0:
                self.image_nodes[image] = count
            else:
                self.image_nodes.pop(image, None)

    def node_list(self) -> list[NodeInfo]:
        """Nodes in a stable order (the filter loop rotates its starting point over it)."""
        return [self.nodes[name] for name in self.node_order if self.nodes[name].obj]

    # -- pods ------------------------------------------------------------------------------
    def _place(self, pod: PodInfo, node: str, *, assumed: bool) -> None:
        self._pods[pod.key] = _PodState(pod, node, assumed)
        info = self.nodes.get(node)
        if info is None:  # a pod seen before its node: keep a placeholder until the node arrives
            info = NodeInfo(node)
            self.nodes[node] = info
            self.node_order.append(node)
        info.add_pod(pod)
        if pod.has_required_anti_affinity:
            self.anti_affinity_pods[pod.key] = pod

    def _unplace(self, key: str) -> _PodState | None:
        state = self._pods.pop(key, None)
        if state is None:
            return None
        info = self.nodes.get(state.node)
        if info is not None:
            info.remove_pod(key)
        self.anti_affinity_pods.pop(key, None)
        return state

    def assume(self, pod: PodInfo, node: str) -> None:
        """Count ``pod`` on ``node`` now, before binding."""
        self._unplace(pod.key)
        self._place(pod, node, assumed=True)

    def finish_binding(self, key: str) -> None:
        """The bind call returned: start the expiry clock of an assumed pod."""
        state = self._pods.get(key)
        if state is not None and state.assumed:
            state.deadline = self._clock() + self._assume_ttl

    def forget(self, key: str) -> None:
        """The bind failed: the assumed pod no longer takes space."""
        state = self._pods.get(key)
        if state is not None and state.assumed:
            self._unplace(key)

    def is_assumed(self, key: str) -> bool:
        state = self._pods.get(key)
        return state is not None and state.assumed

    def has_pod(self, key: str) -> bool:
        return key in self._pods

    def add_pod(self, pod: PodInfo) -> None:
        """An assigned pod from the informer (confirms an assumed one; replaces an older version)."""
        self._unplace(pod.key)
        self._place(pod, pod.node_name, assumed=False)

    def remove_pod(self, key: str) -> None:
        self._unplace(key)

    def cleanup_expired(self) -> list[str]:
        """Drop assumed pods whose deadline passed; returns their keys."""
        now = self._clock()
        expired = [k for k, s in self._pods.items() if s.assumed and s.deadline is not None and s.deadline <= now]
        for key in expired:
            self._unplace(key)
        return expired

    def pod_node(self, key: str) -> str | None:
        state = self._pods.get(key)
        return state.node if state else None
