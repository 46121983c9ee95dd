"""Node-level filters: NodeName, NodeUnschedulable, TaintToleration (filter and score).

Registered by :func:`scheduler.plugins.default_registry`. Messages are Kubernetes' own, since the
FailedScheduling event aggregates them (``2 node(s) had untolerated taint {dedicated: gpu}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scheduler.cache import NodeInfo
from scheduler.framework import SKIP, CycleState, Status, normalize, unschedulable
from scheduler.podinfo import PodInfo

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Kubernetes' ToleratesTaint: effect (empty = all), key (empty + Exists = all), operator/value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if operator != "Equal" or not key:
        return False
    return (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: Sequence[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


class NodeName:
    """``spec.nodeName`` set by the user restricts the pod to that node."""

    name = "NodeName"
    REASON = "node(s) didn't match the requested node name"

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        return None if pod.node_name else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.name == pod.node_name:
            return None
        return unschedulable(self.name, self.REASON, resolvable=False)


class NodeUnschedulable:
    """A cordoned node (``spec.unschedulable``) takes only pods tolerating its unschedulable taint."""

    name = "NodeUnschedulable"
    REASON = "node(s) were unschedulable"
    _TAINT = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.unschedulable or tolerated(pod.tolerations, self._TAINT):
            return None
        return unschedulable(self.name, self.REASON, resolvable=False)


class TaintToleration:
    """Filter: every NoSchedule/NoExecute taint must be tolerated. Score: fewer untolerated
    PreferNoSchedule taints is better."""

    name = "TaintToleration"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for taint in node.taints:
            if taint.get("effect") not in ("NoSchedule", "NoExecute"):
                continue
            if not tolerated(pod.tolerations, taint):
                reason = f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
                return unschedulable(self.name, reason, resolvable=False)
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if not any(t.get("effect") == "PreferNoSchedule" for n in nodes for t in n.taints):
            return SKIP
        state["TaintToleration.prefer"] = [
            t for t in pod.tolerations if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"]
        return None

    def score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        prefer: list[dict[str, Any]] = state.get("TaintToleration.prefer", [])
        raw = [sum(1 for t in n.taints if t.get("effect") == "PreferNoSchedule" and not tolerated(prefer, t))
               for n in nodes]
        return normalize(raw, reverse=True)
