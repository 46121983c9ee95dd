"""Resource plugins: NodeResourcesFit (filter), LeastAllocated, BalancedAllocation, ImageLocality.

Per-node totals come from :class:`scheduler.cache.NodeInfo` (kept incrementally), so each call is a
few integer operations. Scoring uses the *non-zero* requests (100m / 200Mi for a container that
requests nothing), as kube-scheduler does, so best-effort pods still spread.
"""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.cache import NodeInfo, SchedulerCache
from scheduler.framework import MAX_NODE_SCORE, SKIP, CycleState, Status, unschedulable
from scheduler.podinfo import PodInfo

MB = 1024 * 1024
IMAGE_MIN_THRESHOLD = 23 * MB
IMAGE_MAX_THRESHOLD = 1000 * MB


class NodeResourcesFit:
    """The pod's cpu/memory requests must fit in allocatable minus what is requested; one pod slot."""

    name = "NodeResourcesFit"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        reasons: list[str] = []
        if len(node.pods) + 1 > node.alloc_pods:
            reasons.append("Too many pods")
        if pod.cpu and node.alloc_cpu - node.requested_cpu < pod.cpu:
            reasons.append("Insufficient cpu")
        if pod.memory and node.alloc_memory - node.requested_memory < pod.memory:
            reasons.append("Insufficient memory")
        return unschedulable(self.name, *reasons) if reasons else None


def _least(requested: int, capacity: int) -> float:
    if capacity <= 0 or requested > capacity:
        return 0.0
    return (capacity - requested) * MAX_NODE_SCORE / capacity


class LeastAllocated:
    """Prefer nodes with the most free cpu and memory (equal weights), after adding the pod."""

    name = "NodeResourcesLeastAllocated"

    def score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        cpu, mem = pod.nonzero_cpu, pod.nonzero_memory
        return [int((_least(n.nonzero_cpu + cpu, n.alloc_cpu) + _least(n.nonzero_memory + mem, n.alloc_memory)) / 2)
                for n in nodes]


class BalancedAllocation:
    """Prefer nodes whose cpu and memory fractions stay close: ``(1 - std) * 100``."""

    name = "NodeResourcesBalancedAllocation"

    def score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        cpu, mem = pod.nonzero_cpu, pod.nonzero_memory
        out: list[int] = []
        for n in nodes:
            fc = min(1.0, (n.nonzero_cpu + cpu) / n.alloc_cpu) if n.alloc_cpu else 1.0
            fm = min(1.0, (n.nonzero_memory + mem) / n.alloc_memory) if n.alloc_memory else 1.0
            out.append(int((1 - abs(fc - fm) / 2) * MAX_NODE_SCORE))
        return out


class ImageLocality:
    """Prefer nodes that already hold the pod's images, weighted by how widely each is spread."""

    name = "ImageLocality"

    def __init__(self, cache: SchedulerCache) -> None:
        self._cache = cache

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if not pod.images or not any(i in self._cache.image_nodes for i in pod.images):
            return SKIP
        return None

    def score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        total = max(len(self._cache.nodes), 1)
        low, high = IMAGE_MIN_THRESHOLD, IMAGE_MAX_THRESHOLD * max(len(pod.images), 1)
        out: list[int] = []
        for n in nodes:
            raw = sum(n.images[i] * self._cache.image_nodes.get(i, 0) / total for i in pod.images if i in n.images)
            raw = min(max(raw, low), high)
            out.append(int(MAX_NODE_SCORE * (raw - low) / (high - low)))
        return out
