"""NodeAffinity: ``nodeSelector`` and required node affinity (filter), preferred terms (score).

The matching rules live in :mod:`scheduler.nodeaffinity`, shared with PodTopologySpread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scheduler.cache import NodeInfo
from scheduler.framework import SKIP, CycleState, Status, normalize, unschedulable
from scheduler.nodeaffinity import node_matches_pod, required_terms, term_matches
from scheduler.podinfo import PodInfo

REASON = "node(s) didn't match Pod's node affinity/selector"


class NodeAffinity:
    name = "NodeAffinity"

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        return None if pod.node_selector or required_terms(pod) is not None else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None if node_matches_pod(pod, node) else unschedulable(self.name, REASON, resolvable=False)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        node_affinity = pod.affinity.get("nodeAffinity") or {}
        preferred = node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        if not preferred:
            return SKIP
        state["NodeAffinity.preferred"] = preferred
        return None

    def score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        preferred: list[dict[str, Any]] = state["NodeAffinity.preferred"]
        raw = [sum(int(p.get("weight") or 0) for p in preferred if term_matches(p.get("preference") or {}, n))
               for n in nodes]
        return normalize(raw)
