"""The scheduling framework: ``Status``, ``CycleState``, plugin protocols, registry and profile.

Plugins (``scheduler.plugins``) implement one or more of :class:`PreFilterPlugin`,
:class:`FilterPlugin` and :class:`ScorePlugin`; :mod:`scheduler.cycle` runs them for one pod.
The shape follows kube-scheduler's framework, with two Python-minded simplifications:

- a successful ``filter`` returns ``None`` (no object per node on the hot path);
- ``score`` is called once with every feasible node and returns their final 0-100 scores, so the
  plugin normalises its own batch (Kubernetes' Score + NormalizeScore in one call);
  :func:`normalize` is the shared helper.

A ``pre_filter``/``pre_score`` returning ``Status(Code.SKIP)`` turns that plugin off for this pod
(a pod without tolerations-relevant, affinity or spread fields pays nothing for those plugins).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from scheduler.cache import NodeInfo, SchedulerCache
    from scheduler.podinfo import PodInfo

MAX_NODE_SCORE = 100


class Code(IntEnum):
    """A plugin result, as in Kubernetes."""

    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    SKIP = 4


@dataclass(frozen=True, slots=True)
class Status:
    """A non-success outcome with the reasons shown to users (``Insufficient cpu``)."""

    code: Code
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def is_skip(self) -> bool:
        return self.code is Code.SKIP

    @property
    def is_rejection(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)


SKIP = Status(Code.SKIP)


def unschedulable(plugin: str, *reasons: str, resolvable: bool = True) -> Status:
    """A filter rejection; ``resolvable=False`` means preemption would not help."""
    code = Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    return Status(code, reasons, plugin)


class CycleState(dict[str, Any]):
    """Per-pod scratch space shared by a plugin's pre_filter, filter and score calls in one cycle."""


@runtime_checkable
class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        """Precompute for ``filter``; ``SKIP`` disables this plugin's filter for the pod."""


@runtime_checkable
class FilterPlugin(Protocol):
    name: str

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        """``None`` when the pod may run on ``node``, else a rejection with reasons."""


@runtime_checkable
class PreScorePlugin(Protocol):
    name: str

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        """Precompute for ``score``; ``SKIP`` disables this plugin's score for the pod."""


@runtime_checkable
class ScorePlugin(Protocol):
    name: str

    def score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """Final 0..100 scores for ``nodes`` (same order)."""


def normalize(raw: Sequence[float], *, reverse: bool = False) -> list[int]:
    """Scale ``raw`` so the highest becomes 100 (``reverse``: the highest becomes 0), like
    Kubernetes' DefaultNormalizeScore; all-zero input gives 0s (100s when reversed)."""
    top = max(raw, default=0)
    if top <= 0:
        return [MAX_NODE_SCORE if reverse else 0 for _ in raw]
    if reverse:
        return [int(MAX_NODE_SCORE - MAX_NODE_SCORE * v / top) for v in raw]
    return [int(MAX_NODE_SCORE * v / top) for v in raw]


@dataclass(frozen=True)
class Handle:
    """What a plugin factory may use: the cache (all nodes and placed pods)."""

    cache: SchedulerCache


PluginFactory = Callable[[dict[str, Any], Handle], object]


class Registry:
    """Plugin name -> factory(args, handle)."""

    def __init__(self) -> None:
        self._factories: dict[str, PluginFactory] = {}

    def register(self, name: str, factory: PluginFactory) -> None:
        if name in self._factories:
            raise ValueError(f"plugin {name!r} registered twice")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return list(self._factories)

    def build(self, name: str, args: dict[str, Any], handle: Handle) -> object:
        try:
            factory = self._factories[name]
        except KeyError:
            raise ValueError(f"unknown scheduler plugin {name!r}") from None
        return factory(args, handle)


@dataclass
class Framework:
    """The plugins of one profile, built and ordered, ready for :mod:`scheduler.cycle`."""

    scheduler_name: str
    pre_filters: list[PreFilterPlugin]
    filters: list[FilterPlugin]
    pre_scores: list[PreScorePlugin]
    scores: list[tuple[ScorePlugin, int]]

    @property
    def total_weight(self) -> int:
        return sum(weight for _, weight in self.scores) or 1
