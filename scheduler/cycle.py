"""One scheduling cycle for one pod: pre-filter, filter (a rotating sample of nodes), score, select.

Called by :class:`scheduler.scheduler.Scheduler` for every pod it pops; pure and synchronous (it
reads the cache, writes nothing), so it is unit-tested without an apiserver. Guarantees:

- filtering stops after :func:`num_feasible_nodes_to_find` feasible nodes (Kubernetes'
  ``percentageOfNodesToScore``, adaptive by default), starting where the previous cycle stopped so
  every node gets its turn; when nothing fits, every node was examined and :class:`FitError` holds
  each node's rejection;
- the chosen node has the highest weighted score; ties are broken at random;
- :meth:`FitError.message` is kube-scheduler's FailedScheduling text, reasons counted and sorted
  as Kubernetes sorts them (as strings), followed by the preemption summary.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from scheduler.cache import NodeInfo, SchedulerCache
from scheduler.framework import MAX_NODE_SCORE, Code, CycleState, FilterPlugin, Framework, Status
from scheduler.podinfo import PodInfo

MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5
DEFAULT_PERCENTAGE_BASE = 50
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def num_feasible_nodes_to_find(num_nodes: int, percentage: int | None) -> int:
    """How many feasible nodes to look for: all below 100 nodes; else ``percentage`` of them
    (adaptive ``50 - nodes/125``, at least 5 %, when 0/None), never fewer than 100."""
    if num_nodes < MIN_FEASIBLE_NODES or (percentage is not None and percentage >= 100):
        return num_nodes
    pct = percentage or 0
    if pct <= 0:
        pct = max(DEFAULT_PERCENTAGE_BASE - num_nodes // 125, MIN_FEASIBLE_PERCENTAGE)
    return max(num_nodes * pct // 100, MIN_FEASIBLE_NODES)


def _histogram(reasons: Sequence[str]) -> str:
    return ", ".join(sorted(f"{count} {reason}" for reason, count in Counter(reasons).items()))


@dataclass
class FitError(Exception):
    """No node fits ``pod``: the per-node statuses behind the FailedScheduling message."""

    pod: PodInfo
    num_nodes: int
    statuses: dict[str, Status] = field(default_factory=dict)
    pre_filter_message: str = ""

    def message(self) -> str:
        text = f"0/{self.num_nodes} nodes are available:"
        if self.pre_filter_message:
            text += f" {self.pre_filter_message}."
        else:
            reasons = [r for s in self.statuses.values() for r in s.reasons]
            if reasons:
                text += f" {_histogram(reasons)}."
        return f"{text} {self.preemption_message()}"

    def preemption_message(self) -> str:
        """The PostFilter (preemption) part. kubelab never preempts, so it states why not."""
        if self.pod.preemption_never:
            return "preemption: not eligible due to preemptionPolicy=Never."
        outcomes = [NO_VICTIMS if s.code is Code.UNSCHEDULABLE else PREEMPTION_NOT_HELPFUL
                    for s in self.statuses.values()]
        if self.pre_filter_message or not outcomes:
            outcomes = [PREEMPTION_NOT_HELPFUL] * self.num_nodes
        return f"preemption: 0/{self.num_nodes} nodes are available: {_histogram(outcomes)}."

    def __str__(self) -> str:
        return self.message()


@dataclass(frozen=True)
class ScheduleResult:
    """The chosen node, its score (weighted mean, 0-100), and the next best (node, score) pairs."""

    node: str
    score: int
    runners_up: tuple[tuple[str, int], ...]
    evaluated: int
    feasible: int


class Cycle:
    """Runs the framework against the cache; keeps the rotating start index between pods."""

    def __init__(self, framework: Framework, cache: SchedulerCache, *, percentage: int | None = None,
                 rng: random.Random | None = None) -> None:
        self.framework = framework
        self.cache = cache
        self.percentage = percentage
        self._rng = rng or random.Random()
        self._next_start = 0

    def schedule(self, pod: PodInfo) -> ScheduleResult:
        """Pick a node for ``pod`` or raise :class:`FitError`."""
        nodes = self.cache.node_list()
        if not nodes:
            raise FitError(pod, 0)
        state = CycleState()
        skipped: set[str] = set()
        for plugin in self.framework.pre_filters:
            status = plugin.pre_filter(state, pod, nodes)
            if status is None:
                continue
            if status.is_skip:
                skipped.add(plugin.name)
            else:
                raise FitError(pod, len(nodes), {n.name: status for n in nodes}, "; ".join(status.reasons))
        filters = [p for p in self.framework.filters if p.name not in skipped]
        feasible, statuses = self._find_feasible(state, pod, nodes, filters)
        if not feasible:
            raise FitError(pod, len(nodes), statuses)
        return self._select(state, pod, feasible, len(feasible) + len(statuses))

    def _find_feasible(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                       filters: list[FilterPlugin]) -> tuple[list[NodeInfo], dict[str, Status]]:
        total = len(nodes)
        wanted = num_feasible_nodes_to_find(total, self.percentage)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        start = self._next_start % total
        checked = 0
        calls = [p.filter for p in filters]
        for i in range(total):
            node = nodes[(start + i) % total]
            checked += 1
            for call in calls:
                status = call(state, pod, node)
                if status is not None:
                    statuses[node.name] = status
                    break
            else:
                feasible.append(node)
                if len(feasible) >= wanted:
                    break
        self._next_start = (start + checked) % total
        return feasible, statuses

    def _select(self, state: CycleState, pod: PodInfo, feasible: list[NodeInfo], evaluated: int) -> ScheduleResult:
        count = len(feasible)
        totals = [0] * count
        if count > 1:
            skipped: set[str] = set()
            for pre in self.framework.pre_scores:
                status = pre.pre_score(state, pod, feasible)
                if status is not None and status.is_skip:
                    skipped.add(pre.name)
            for scorer, weight in self.framework.scores:
                if scorer.name in skipped:
                    continue
                for i, value in enumerate(scorer.score(state, pod, feasible)):
                    totals[i] += value * weight
        best = max(totals)
        winners = [i for i, t in enumerate(totals) if t == best]
        chosen = winners[0] if len(winners) == 1 else self._rng.choice(winners)
        weight = self.framework.total_weight
        others = heapq.nlargest(2, (i for i in range(count) if i != chosen), key=totals.__getitem__)
        runners = tuple((feasible[i].name, round(totals[i] / weight)) for i in others)
        score = round(totals[chosen] / weight) if count > 1 else MAX_NODE_SCORE
        return ScheduleResult(feasible[chosen].name, score, runners, evaluated, count)
