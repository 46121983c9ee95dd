"""InterPodAffinity (filter): required pod anti-affinity both ways, and required pod affinity.

``pre_filter`` turns terms into sets of forbidden / required ``(topologyKey, value)`` pairs once per
pod, walking only the nodes' pods (and, for existing pods' anti-affinity, only the pods that have it,
which the cache indexes); ``filter`` is then a few dict lookups per node. Namespaces: a term applies
to ``namespaces`` if given, else the pod's own namespace (``namespaceSelector`` is treated as "all
namespaces" when present and empty, and otherwise ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from machinery.selectors import LabelSelector, from_label_selector
from scheduler.cache import NodeInfo, SchedulerCache
from scheduler.framework import SKIP, CycleState, Status, unschedulable
from scheduler.podinfo import PodInfo

REASON_ANTI = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
REASON_AFFINITY = "node(s) didn't match pod affinity rules"


@dataclass(frozen=True)
class _Term:
    key: str
    selector: LabelSelector
    namespaces: frozenset[str] | None  # None: all namespaces

    def selects(self, pod: PodInfo) -> bool:
        return (self.namespaces is None or pod.namespace in self.namespaces) and self.selector.matches(pod.labels)


def _terms(owner: PodInfo, kind: str) -> list[_Term]:
    section = owner.affinity.get(kind) or {}
    out: list[_Term] = []
    for raw in section.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        namespaces: frozenset[str] | None = frozenset(raw.get("namespaces") or []) or frozenset({owner.namespace})
        if raw.get("namespaceSelector") == {}:
            namespaces = None
        out.append(_Term(str(raw.get("topologyKey", "")), from_label_selector(raw.get("labelSelector")), namespaces))
    return out


class InterPodAffinity:
    name = "InterPodAffinity"

    def __init__(self, cache: SchedulerCache) -> None:
        self._cache = cache

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        anti = _terms(pod, "podAntiAffinity")
        affinity = _terms(pod, "podAffinity")
        existing = [p for p in self._cache.anti_affinity_pods.values() if p.key != pod.key]
        if not anti and not affinity and not existing:
            return SKIP
        forbidden: set[tuple[str, str]] = set()
        existing_forbidden: set[tuple[str, str]] = set()
        for other in existing:
            node = self._cache.nodes.get(self._cache.pod_node(other.key) or "")
            if node is None:
                continue
            for term in _terms(other, "podAntiAffinity"):
                value = node.labels.get(term.key)
                if value is not None and term.selects(pod):
                    existing_forbidden.add((term.key, value))
        required: list[tuple[_Term, set[str]]] = [(t, set()) for t in affinity]
        if anti or affinity:
            for node in self._cache.node_list():
                if not node.pods:
                    continue
                for term in anti:
                    value = node.labels.get(term.key)
                    if value is not None and any(term.selects(p) for p in node.pods.values()):
                        forbidden.add((term.key, value))
                for term, values in required:
                    value = node.labels.get(term.key)
                    if value is not None and any(term.selects(p) for p in node.pods.values()):
                        values.add(value)
        # The first pod of a group that selects itself may go anywhere (Kubernetes' special case).
        if required and all(not values for _, values in required) and all(t.selects(pod) for t, _ in required):
            required = []
        state[self.name] = (forbidden, existing_forbidden, required)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        forbidden, existing_forbidden, required = state[self.name]
        labels = node.labels
        for term, values in required:
            if labels.get(term.key) not in values:
                return unschedulable(self.name, REASON_AFFINITY, resolvable=False)
        if forbidden and any((k, v) in forbidden for k, v in labels.items()):
            return unschedulable(self.name, REASON_ANTI)
        if existing_forbidden and any((k, v) in existing_forbidden for k, v in labels.items()):
            return unschedulable(self.name, REASON_EXISTING_ANTI)
        return None

