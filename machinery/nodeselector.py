"""Node selector terms (``NodeSelectorTerm``) matched against one node: the one implementation.

Used by the scheduler's NodeAffinity and PodTopologySpread helpers (``scheduler.nodeaffinity``),
the DaemonSet controller (which nodes should run a daemon pod) and volume binding (which nodes
reach a volume with node affinity), as Kubernetes shares its component-helpers ``nodeaffinity``.

Terms are ORed by callers; inside a term ``matchExpressions`` (node labels) and ``matchFields``
(``metadata.name`` only, as in Kubernetes) are ANDed. Operators: In, NotIn, Exists, DoesNotExist,
Gt, Lt (integer comparison; a value that is not an integer does not match). A term with no
requirements matches nothing. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["requirement_matches", "term_matches"]


def requirement_matches(requirement: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    """One ``NodeSelectorRequirement`` against ``values`` (node labels, or the node's fields)."""
    key = str(requirement.get("key", ""))
    operator = requirement.get("operator")
    wanted = [str(v) for v in requirement.get("values") or []]
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            actual, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return actual > bound if operator == "Gt" else actual < bound
    return False


def term_matches(term: Mapping[str, Any], node_name: str, node_labels: Mapping[str, str]) -> bool:
    """One ``NodeSelectorTerm`` against the node named ``node_name`` with ``node_labels``."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    if not all(requirement_matches(e, node_labels) for e in exprs):
        return False
    return all(requirement_matches(f, {"metadata.name": node_name}) for f in fields)
