"""Scheduling profile: which plugins run, in which order, with which score weights.

The default mirrors kube-scheduler's default profile (filter order and score weights). A config
file (YAML or JSON, KubeSchedulerConfiguration-shaped) may change it::

    profiles:
    - schedulerName: default-scheduler
      plugins:
        filter: {disabled: [{name: PodTopologySpread}]}
        score:
          disabled: [{name: "*"}]
          enabled: [{name: NodeResourcesBalancedAllocation, weight: 5}]
    percentageOfNodesToScore: 50

Called by :mod:`scheduler.scheduler` (``build_framework``); raises ``ValueError`` on a bad file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.framework import FilterPlugin, Framework, Handle, PreFilterPlugin, PreScorePlugin, Registry, ScorePlugin
from scheduler.plugins import default_registry

DEFAULT_FILTERS: tuple[str, ...] = (
    "NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "NodeResourcesFit",
    "PodTopologySpread", "InterPodAffinity", "VolumeBinding",
)
DEFAULT_SCORES: tuple[tuple[str, int], ...] = (
    ("TaintToleration", 3), ("NodeAffinity", 2), ("PodTopologySpread", 2),
    ("NodeResourcesLeastAllocated", 1), ("NodeResourcesBalancedAllocation", 1), ("ImageLocality", 1),
    ("SelectorSpread", 1),
)


@dataclass
class Profile:
    """Plugin names for each extension point, and the nodes-to-score percentage (0: adaptive)."""

    scheduler_name: str = "default-scheduler"
    filters: list[str] = field(default_factory=lambda: list(DEFAULT_FILTERS))
    scores: list[tuple[str, int]] = field(default_factory=lambda: list(DEFAULT_SCORES))
    percentage_of_nodes_to_score: int | None = None


def _names(section: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [e for e in (section.get(key) or []) if isinstance(e, dict) and e.get("name")]


def _apply(current: list[str], section: dict[str, Any]) -> list[str]:
    disabled = {str(e["name"]) for e in _names(section, "disabled")}
    kept = [] if "*" in disabled else [n for n in current if n not in disabled]
    return kept + [str(e["name"]) for e in _names(section, "enabled") if e["name"] not in kept]


def load_profile(path: Path | None) -> Profile:
    """The default profile, changed by the first profile in ``path`` when given."""
    profile = Profile()
    if path is None:
        return profile
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read scheduler config {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"scheduler config {path}: expected a mapping")
    if doc.get("percentageOfNodesToScore") is not None:
        profile.percentage_of_nodes_to_score = int(doc["percentageOfNodesToScore"])
    profiles = doc.get("profiles") or []
    if not profiles:
        return profile
    first = profiles[0] or {}
    profile.scheduler_name = str(first.get("schedulerName") or profile.scheduler_name)
    plugins = first.get("plugins") or {}
    profile.filters = _apply(profile.filters, plugins.get("filter") or {})
    score_section = plugins.get("score") or {}
    weights = dict(profile.scores)
    weights.update({str(e["name"]): int(e.get("weight") or 1) for e in _names(score_section, "enabled")})
    profile.scores = [(n, weights.get(n, 1)) for n in _apply([n for n, _ in profile.scores], score_section)]
    return profile


def build_framework(profile: Profile, handle: Handle, registry: Registry | None = None) -> Framework:
    """Instantiate each named plugin once and sort it into the extension points it implements."""
    registry = registry or default_registry()
    instances: dict[str, object] = {}

    def get(name: str) -> object:
        if name not in instances:
            instances[name] = registry.build(name, {}, handle)
        return instances[name]

    filters: list[FilterPlugin] = []
    pre_filters: list[PreFilterPlugin] = []
    for name in profile.filters:
        plugin = get(name)
        if not isinstance(plugin, FilterPlugin):
            raise ValueError(f"plugin {name!r} has no filter extension")
        filters.append(plugin)
        if isinstance(plugin, PreFilterPlugin):
            pre_filters.append(plugin)
    scores: list[tuple[ScorePlugin, int]] = []
    pre_scores: list[PreScorePlugin] = []
    for name, weight in profile.scores:
        plugin = get(name)
        if not isinstance(plugin, ScorePlugin):
            raise ValueError(f"plugin {name!r} has no score extension")
        scores.append((plugin, weight))
        if isinstance(plugin, PreScorePlugin):
            pre_scores.append(plugin)
    return Framework(profile.scheduler_name, pre_filters, filters, pre_scores, scores)
