"""How far and how fast an HPA may move: stabilization windows and scaling policies.

The normalization half of Kubernetes' ``pkg/controller/podautoscaler/horizontal.go``
(``normalizeDesiredReplicas``, ``normalizeDesiredReplicasWithBehaviors`` and their helpers),
called by :mod:`controllers.hpa` after the metrics proposed a count. :class:`ScalingHistory`
keeps, per HPA, the recent recommendations and scale events the rules need (in memory, as
upstream: a restarted controller starts with empty windows). Pure apart from that state; the
clock is an argument.

Without ``spec.behavior``: the highest recommendation of the last ``downscale_stabilization``
seconds (300) is applied, then at most ``max(2 * current, 4)`` replicas up, within min/max.
With ``spec.behavior`` (defaults filled by :func:`machinery.api.defaults_autoscaling.scale_up_rules`
and ``scale_down_rules``): the recommendation is held between the lowest of the scale-up window
and the highest of the scale-down window, then limited by the policies (``Pods`` / ``Percent`` per
``periodSeconds``, combined by ``selectPolicy`` ``Max``/``Min``, or ``Disabled``) counted from
the replicas at the start of each policy's period.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from machinery.api.defaults_autoscaling import scale_down_rules, scale_up_rules

Obj = dict[str, Any]
Condition = tuple[str, str]
"""(reason, message) of a condition the normalization sets."""

READY_FOR_NEW_SCALE: Condition = ("ReadyForNewScale", "recommended size matches current size")
SCALE_UP_STABILIZED: Condition = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation")
SCALE_DOWN_STABILIZED: Condition = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation")
TOO_FEW: Condition = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
TOO_MANY: Condition = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
SCALE_UP_LIMIT: Condition = (
    "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
SCALE_DOWN_LIMIT: Condition = (
    "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")
WITHIN_RANGE: Condition = ("DesiredWithinRange", "the desired count is within the acceptable range")


@dataclass
class _Recommendation:
    replicas: int
    at: datetime


@dataclass
class _ScaleEvent:
    change: int
    at: datetime
    outdated: bool = False


@dataclass
class Normalized:
    """The count to apply and the conditions that explain it."""

    replicas: int
    able_to_scale: Condition
    """The AbleToScale reason and message (``ReadyForNewScale`` or a ``…Stabilized``)."""
    limited: bool
    """ScalingLimited's status: True when min/max or a rate changed the stabilized count."""
    limit: Condition


@dataclass
class ScalingHistory:
    """Recommendations and scale events of every HPA, by ``namespace/name``."""

    downscale_stabilization: float = 300.0
    """Default scale-down window (seconds) when an HPA sets none (kube-controller-manager's
    ``--horizontal-pod-autoscaler-downscale-stabilization``)."""
    recommendations: dict[str, list[_Recommendation]] = field(default_factory=dict)
    up_events: dict[str, list[_ScaleEvent]] = field(default_factory=dict)
    down_events: dict[str, list[_ScaleEvent]] = field(default_factory=dict)

    def forget(self, key: str) -> None:
        """Drop the history of a deleted HPA."""
        for store in (self.recommendations, self.up_events, self.down_events):
            store.pop(key, None)

    def record_initial(self, key: str, current: int, now: datetime) -> None:
        """recordInitialRecommendation: the current count is the first recommendation."""
        self.recommendations.setdefault(key, [_Recommendation(current, now)])

    # ---- without behavior -------------------------------------------------------------------
    def normalize(self, key: str, *, current: int, desired: int, min_replicas: int, max_replicas: int,
                  now: datetime) -> Normalized:
        """normalizeDesiredReplicas: scale-down stabilization, then min/max and the scale-up cap."""
        stabilized = self._stabilize(key, desired, now)
        able = SCALE_DOWN_STABILIZED if stabilized != desired else READY_FOR_NEW_SCALE
        replicas, limit = _with_rules(current, stabilized, min_replicas, max_replicas)
        return Normalized(replicas, able, replicas != stabilized, limit)

    def _stabilize(self, key: str, desired: int, now: datetime) -> int:
        cutoff = now - timedelta(seconds=self.downscale_stabilization)
        history = self.recommendations.setdefault(key, [])
        result = desired
        reuse: int | None = None
        for i, rec in enumerate(history):
            if rec.at > cutoff:
                result = max(result, rec.replicas)
            else:
                reuse = i
        if reuse is None:
            history.append(_Recommendation(desired, now))
        else:
            history[reuse] = _Recommendation(desired, now)
        return result

    # ---- with behavior ----------------------------------------------------------------------
    def normalize_with_behavior(self, key: str, behavior: Obj, *, current: int, desired: int, min_replicas: int,
                                max_replicas: int, now: datetime) -> Normalized:
        """normalizeDesiredReplicasWithBehaviors: both windows, then the policies' rates."""
        up = scale_up_rules(behavior.get("scaleUp"))
        down = scale_down_rules(behavior.get("scaleDown"))
        if down.get("stabilizationWindowSeconds") is None:
            down["stabilizationWindowSeconds"] = int(self.downscale_stabilization)
        stabilized, moving = self._stabilize_with_windows(key, up, down, current, desired, now)
        able = moving if stabilized != desired else READY_FOR_NEW_SCALE
        replicas, limit = self._with_rates(key, up, down, current, stabilized, min_replicas, max_replicas, now)
        return Normalized(replicas, able, replicas != stabilized, limit)

    def _stabilize_with_windows(self, key: str, up: Obj, down: Obj, current: int, desired: int,
                                now: datetime) -> tuple[int, Condition]:
        up_cutoff = now - timedelta(seconds=int(up.get("stabilizationWindowSeconds") or 0))
        down_cutoff = now - timedelta(seconds=int(down.get("stabilizationWindowSeconds") or 0))
        up_rec = down_rec = desired
        history = self.recommendations.setdefault(key, [])
        reuse: int | None = None
        for i, rec in enumerate(history):
            if rec.at > up_cutoff:
                up_rec = min(rec.replicas, up_rec)
            if rec.at > down_cutoff:
                down_rec = max(rec.replicas, down_rec)
            if rec.at < up_cutoff and rec.at < down_cutoff:
                reuse = i
        recommendation = max(current, up_rec)
        recommendation = min(recommendation, down_rec)
        if reuse is None:
            history.append(_Recommendation(desired, now))
        else:
            history[reuse] = _Recommendation(desired, now)
        return recommendation, SCALE_UP_STABILIZED if desired >= current else SCALE_DOWN_STABILIZED

    def _with_rates(self, key: str, up: Obj, down: Obj, current: int, desired: int, min_replicas: int,
                    max_replicas: int, now: datetime) -> tuple[int, Condition]:
        if desired > current:
            limit = max(scale_up_limit(current, self.up_events.get(key, []), up, now), current)
            if max_replicas > limit:
                allowed, reason = limit, SCALE_UP_LIMIT
            else:
                allowed, reason = max_replicas, TOO_MANY
            if desired > allowed:
                return allowed, reason
        elif desired < current:
            limit = min(scale_down_limit(current, self.down_events.get(key, []), down, now), current)
            if min_replicas < limit:
                floor, reason = limit, SCALE_DOWN_LIMIT
            else:
                floor, reason = min_replicas, TOO_FEW
            if desired < floor:
                return floor, reason
        return desired, WITHIN_RANGE

    def store_scale_event(self, key: str, behavior: Obj | None, previous: int, new: int, now: datetime) -> None:
        """storeScaleEvent: remember a rescale for the policies' periods (only with a behavior)."""
        if behavior is None:
            return
        if new > previous:
            rules, events, change = scale_up_rules(behavior.get("scaleUp")), self.up_events, new - previous
        else:
            rules, events, change = scale_down_rules(behavior.get("scaleDown")), self.down_events, previous - new
        longest = max((int(p.get("periodSeconds") or 0) for p in rules.get("policies") or []), default=0)
        history = events.setdefault(key, [])
        cutoff = now - timedelta(seconds=longest)
        for i, event in enumerate(history):
            if event.at < cutoff or event.outdated:
                history[i] = _ScaleEvent(change, now)
                return
        history.append(_ScaleEvent(change, now))


def _replicas_changed(period_seconds: int, events: list[_ScaleEvent], now: datetime) -> int:
    """getReplicasChangePerPeriod: replicas added (or removed) within the last period."""
    cutoff = now - timedelta(seconds=period_seconds)
    return sum(e.change for e in events if e.at > cutoff and not e.outdated)


def scale_up_limit(current: int, events: list[_ScaleEvent], rules: Obj, now: datetime) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick: Callable[[int, int], int] = min if select == "Min" else max
    result: int | None = None
    for policy in rules.get("policies") or []:
        start = current - _replicas_changed(int(policy.get("periodSeconds") or 0), events, now)
        value = int(policy.get("value") or 0)
        proposed = start + value if policy.get("type") == "Pods" else math.ceil(start * (1 + value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(current: int, events: list[_ScaleEvent], rules: Obj, now: datetime) -> int:
    """calculateScaleDownLimitWithBehaviors (``Min`` picks the larger floor: the smaller change)."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick: Callable[[int, int], int] = max if select == "Min" else min
    result: int | None = None
    for policy in rules.get("policies") or []:
        start = current + _replicas_changed(int(policy.get("periodSeconds") or 0), events, now)
        value = int(policy.get("value") or 0)
        proposed = start - value if policy.get("type") == "Pods" else int(start * (1 - value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def _with_rules(current: int, desired: int, min_replicas: int, max_replicas: int) -> tuple[int, Condition]:
    """convertDesiredReplicasWithRules: min/max and the default cap of ``max(2 * current, 4)``."""
    up_cap = max(2 * current, 4)
    if max_replicas > up_cap:
        ceiling, ceiling_reason = up_cap, SCALE_UP_LIMIT
    else:
        ceiling, ceiling_reason = max_replicas, TOO_MANY
    floor = max(min_replicas, 1)
    if desired < floor:
        return floor, TOO_FEW
    if desired > ceiling:
        return ceiling, ceiling_reason
    return desired, WITHIN_RANGE
