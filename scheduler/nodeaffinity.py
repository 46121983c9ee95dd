"""Required node affinity matching: ``nodeSelector`` and NodeSelectorTerms against one node.

Node selector terms are ORed; inside a term, ``matchExpressions`` and ``matchFields``
(``metadata.name`` only, as in Kubernetes) are ANDed. Operators: In, NotIn, Exists, DoesNotExist,
Gt, Lt. Shared by the NodeAffinity plugin (filter and preferred-term score) and PodTopologySpread
(which nodes count as domains), as Kubernetes shares its component-helpers ``nodeaffinity``
package, so that scheduler plugins stay independent of each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from machinery import nodeselector
from scheduler.cache import NodeInfo
from scheduler.podinfo import PodInfo


def term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    """One NodeSelectorTerm; a term with no requirements matches nothing (as in Kubernetes)."""
    return nodeselector.term_matches(term, node.name, node.labels)


def required_terms(pod: PodInfo) -> list[dict[str, Any]] | None:
    node_affinity = pod.affinity.get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def node_matches_pod(pod: PodInfo, node: NodeInfo) -> bool:
    """nodeSelector and required node affinity both hold on ``node``."""
    labels = node.labels
    for key, value in pod.node_selector.items():
        if labels.get(key) != value:
            return False
    terms = required_terms(pod)
    return terms is None or any(term_matches(t, node) for t in terms)
