"""Spreading: PodTopologySpread (hard filter and soft score) and SelectorSpread (a controller's pods).

PodTopologySpread counts, per topology domain (the value of ``topologyKey`` on nodes that carry it
and pass the pod's nodeSelector/required affinity — Kubernetes' ``nodeAffinityPolicy: Honor``), the
pods in the pod's namespace matching the constraint's ``labelSelector``. A node is infeasible when
placing the pod there makes ``count + 1 - min > maxSkew``. The counting is done once per pod in
``pre_filter`` / ``pre_score``, never per node.

SelectorSpread scores nodes by how few pods of the pod's controller (same ``ownerReference``
controller uid) they hold, read from the per-node counters of :class:`scheduler.cache.NodeInfo`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from machinery.selectors import LabelSelector, from_label_selector
from scheduler.cache import NodeInfo, SchedulerCache
from scheduler.framework import MAX_NODE_SCORE, SKIP, CycleState, Status, unschedulable
from scheduler.nodeaffinity import node_matches_pod
from scheduler.podinfo import PodInfo

REASON_SKEW = "node(s) didn't match pod topology spread constraints"
REASON_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"


@dataclass
class _Constraint:
    key: str
    max_skew: int
    selector: LabelSelector
    self_match: int
    counts: dict[str, int]


def _constraints(pod: PodInfo, mode: str) -> list[_Constraint]:
    out: list[_Constraint] = []
    for c in pod.spread_constraints:
        if (c.get("whenUnsatisfiable") or "DoNotSchedule") != mode:
            continue
        selector = from_label_selector(c.get("labelSelector"))
        out.append(_Constraint(str(c.get("topologyKey", "")), int(c.get("maxSkew") or 1), selector,
                               1 if selector.matches(pod.labels) else 0, {}))
    return out


def _count(pod: PodInfo, constraints: list[_Constraint], nodes: Sequence[NodeInfo]) -> None:
    for node in nodes:
        if not node_matches_pod(pod, node):
            continue
        for c in constraints:
            value = node.labels.get(c.key)
            if value is None:
                continue
            matching = sum(1 for p in node.pods.values()
                           if p.namespace == pod.namespace and not p.deleting and c.selector.matches(p.labels))
            c.counts[value] = c.counts.get(value, 0) + matching


class PodTopologySpread:
    name = "PodTopologySpread"

    def __init__(self, cache: SchedulerCache) -> None:
        self._cache = cache

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        hard = _constraints(pod, "DoNotSchedule")
        if not hard:
            return SKIP
        _count(pod, hard, self._cache.node_list())
        state["PodTopologySpread.hard"] = hard
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for c in state["PodTopologySpread.hard"]:
            value = node.labels.get(c.key)
            if value is None:
                return unschedulable(self.name, REASON_LABEL, resolvable=False)
            minimum = min(c.counts.values(), default=0)
            if c.counts.get(value, 0) + c.self_match - minimum > c.max_skew:
                return unschedulable(self.name, REASON_SKEW)
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        soft = _constraints(pod, "ScheduleAnyway")
        if not soft:
            return SKIP
        _count(pod, soft, self._cache.node_list())
        state["PodTopologySpread.soft"] = soft
        return None

    def score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        soft: list[_Constraint] = state["PodTopologySpread.soft"]
        raw: list[int | None] = []
        for n in nodes:
            total: int | None = 0
            for c in soft:
                value = n.labels.get(c.key)
                if value is None:  # a node without the key gets the lowest score, as in Kubernetes
                    total = None
                    break
                total = (total or 0) + c.counts.get(value, 0) + c.self_match
            raw.append(total)
        known = [r for r in raw if r is not None]
        if not known:
            return [0 for _ in nodes]
        low, high = min(known), max(known)
        if high == low:
            return [0 if r is None else MAX_NODE_SCORE for r in raw]
        return [0 if r is None else int(MAX_NODE_SCORE * (high - r) / (high - low)) for r in raw]


class SelectorSpread:
    """Fewer pods of the same controller on a node scores higher (ReplicaSet pods spread out)."""

    name = "SelectorSpread"

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        return None if pod.controller_uid else SKIP

    def score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        uid = pod.controller_uid
        counts = [n.controller_counts.get(uid, 0) for n in nodes]
        top = max(counts, default=0)
        if top == 0:
            return [MAX_NODE_SCORE] * len(nodes)
        return [int(MAX_NODE_SCORE * (top - c) / top) for c in counts]
