"""ClusterRole aggregation: the rules an aggregated ClusterRole gathers (shared by the apiserver's
bootstrap policy and the clusterrole-aggregation controller).

A ClusterRole with ``aggregationRule.clusterRoleSelectors`` holds the union of the rules of every
other ClusterRole whose labels match any selector, in selector order, then by role name, without
duplicates (Kubernetes' ``ClusterRoleAggregationController.syncClusterRole``). Aggregated roles
may themselves be aggregated (``view`` into ``edit`` into ``admin``): applying this to each role
until nothing changes converges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from machinery.selectors import from_label_selector


def aggregated_rules(role: Mapping[str, Any], cluster_roles: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rules ``role`` should hold given every ClusterRole there is (``role`` needs an aggregationRule)."""
    name = (role.get("metadata") or {}).get("name")
    selectors = ((role.get("aggregationRule") or {}).get("clusterRoleSelectors")) or []
    others = sorted((r for r in cluster_roles if (r.get("metadata") or {}).get("name") != name),
                    key=lambda r: str((r.get("metadata") or {}).get("name")))
    rules: list[dict[str, Any]] = []
    for selector in selectors:
        matches = from_label_selector(selector)
        for other in others:
            if not matches.matches((other.get("metadata") or {}).get("labels")):
                continue
            for rule in other.get("rules") or []:
                if rule not in rules:
                    rules.append(rule)
    return rules


def converge(cluster_roles: dict[str, dict[str, Any]], *, rounds: int = 5) -> set[str]:
    """Fill every aggregated role in ``cluster_roles`` (name -> role, changed in place) until stable.

    Returns the names of the roles whose rules changed.
    """
    changed: set[str] = set()
    for _ in range(rounds):
        progress = False
        for name, role in cluster_roles.items():
            if not role.get("aggregationRule"):
                continue
            rules = aggregated_rules(role, cluster_roles.values())
            if rules != (role.get("rules") or []):
                role["rules"] = rules
                changed.add(name)
                progress = True
        if not progress:
            break
    return changed
