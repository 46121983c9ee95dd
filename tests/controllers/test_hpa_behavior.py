"""HPA normalization: stabilization windows, scaling policies, min/max and the conditions they set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controllers.hpa_behavior import ScalingHistory

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
KEY = "default/web"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_default_scale_down_waits_for_the_window() -> None:
    history = ScalingHistory(downscale_stabilization=300)
    history.record_initial(KEY, 5, at(0))
    held = history.normalize(KEY, current=5, desired=2, min_replicas=1, max_replicas=10, now=at(60))
    assert held.replicas == 5
    assert held.able_to_scale[0] == "ScaleDownStabilized"
    assert (held.limited, held.limit[0]) == (False, "DesiredWithinRange")
    moved = history.normalize(KEY, current=5, desired=2, min_replicas=1, max_replicas=10, now=at(361))
    assert moved.replicas == 2
    assert moved.able_to_scale[0] == "ReadyForNewScale"


def test_default_scale_up_is_capped_at_twice_or_four() -> None:
    history = ScalingHistory()
    result = history.normalize(KEY, current=1, desired=10, min_replicas=1, max_replicas=10, now=at(0))
    assert (result.replicas, result.limited, result.limit[0]) == (4, True, "ScaleUpLimit")
    result = history.normalize(KEY, current=4, desired=10, min_replicas=1, max_replicas=6, now=at(15))
    assert (result.replicas, result.limit[0]) == (6, "TooManyReplicas")


def test_min_replicas_floor() -> None:
    result = ScalingHistory(downscale_stabilization=0).normalize(KEY, current=3, desired=1, min_replicas=2,
                                                                 max_replicas=5, now=at(0))
    assert (result.replicas, result.limited, result.limit[0]) == (2, True, "TooFewReplicas")


def up(*policies: tuple[str, int, int], select: str = "Max", window: int = 0) -> dict[str, Any]:
    return {"scaleUp": {"stabilizationWindowSeconds": window, "selectPolicy": select,
                        "policies": [{"type": t, "value": v, "periodSeconds": p} for t, v, p in policies]}}


def down(*policies: tuple[str, int, int], select: str = "Max", window: int = 0) -> dict[str, Any]:
    return {"scaleDown": {"stabilizationWindowSeconds": window, "selectPolicy": select,
                          "policies": [{"type": t, "value": v, "periodSeconds": p} for t, v, p in policies]}}


@pytest.mark.parametrize(("behavior", "current", "desired", "expected", "reason"), [
    pytest.param(up(("Pods", 4, 15), ("Percent", 100, 15)), 2, 10, 6, "ScaleUpLimit", id="up-max-of-policies"),
    pytest.param(up(("Pods", 4, 15), ("Percent", 100, 15), select="Min"), 2, 10, 4, "ScaleUpLimit",
                 id="up-min-of-policies"),
    pytest.param(up(("Pods", 4, 15), select="Disabled"), 2, 10, 2, "ScaleUpLimit", id="up-disabled"),
    pytest.param(up(("Percent", 900, 15)), 2, 10, 10, "DesiredWithinRange", id="up-within-rate"),
    pytest.param(up(("Percent", 900, 15)), 2, 30, 20, "TooManyReplicas", id="up-max-replicas"),
    pytest.param(down(("Percent", 50, 60)), 10, 1, 5, "ScaleDownLimit", id="down-percent"),
    pytest.param(down(("Pods", 1, 60), ("Percent", 50, 60), select="Min"), 10, 1, 9, "ScaleDownLimit",
                 id="down-min-picks-the-smaller-change"),
    pytest.param(down(("Pods", 1, 60), ("Percent", 50, 60)), 10, 1, 5, "ScaleDownLimit",
                 id="down-max-picks-the-larger-change"),
    pytest.param(down(("Pods", 1, 60), select="Disabled"), 5, 2, 5, "ScaleDownLimit", id="down-disabled"),
    pytest.param(down(("Percent", 100, 15)), 5, 1, 2, "TooFewReplicas", id="down-min-replicas"),
])
def test_policies(behavior: dict[str, Any], current: int, desired: int, expected: int, reason: str) -> None:
    result = ScalingHistory().normalize_with_behavior(KEY, behavior, current=current, desired=desired,
                                                      min_replicas=2, max_replicas=20, now=at(0))
    assert (result.replicas, result.limit[0]) == (expected, reason)
    assert result.limited is (expected != desired)


def test_rate_counts_replicas_added_within_the_period() -> None:
    history = ScalingHistory()
    behavior = up(("Pods", 1, 60))
    first = history.normalize_with_behavior(KEY, behavior, current=2, desired=5, min_replicas=1, max_replicas=10,
                                            now=at(0))
    assert first.replicas == 3
    history.store_scale_event(KEY, behavior, 2, 3, at(0))
    held = history.normalize_with_behavior(KEY, behavior, current=3, desired=5, min_replicas=1, max_replicas=10,
                                           now=at(30))
    assert (held.replicas, held.limit[0]) == (3, "ScaleUpLimit")
    later = history.normalize_with_behavior(KEY, behavior, current=3, desired=5, min_replicas=1, max_replicas=10,
                                            now=at(61))
    assert later.replicas == 4


def test_scale_up_window_applies_the_lowest_recent_recommendation() -> None:
    history = ScalingHistory()
    behavior = up(("Percent", 100, 15), window=60)
    history.record_initial(KEY, 3, at(0))
    held = history.normalize_with_behavior(KEY, behavior, current=3, desired=6, min_replicas=1, max_replicas=10,
                                           now=at(30))
    assert held.replicas == 3
    assert held.able_to_scale[0] == "ScaleUpStabilized"
    moved = history.normalize_with_behavior(KEY, behavior, current=3, desired=6, min_replicas=1, max_replicas=10,
                                            now=at(95))
    assert moved.replicas == 6


def test_unset_scale_down_window_uses_the_controller_default() -> None:
    history = ScalingHistory(downscale_stabilization=120)
    behavior = {"scaleDown": {"policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}
    history.record_initial(KEY, 4, at(0))
    held = history.normalize_with_behavior(KEY, behavior, current=4, desired=1, min_replicas=1, max_replicas=10,
                                           now=at(60))
    assert (held.replicas, held.able_to_scale[0]) == (4, "ScaleDownStabilized")
    moved = history.normalize_with_behavior(KEY, behavior, current=4, desired=1, min_replicas=1, max_replicas=10,
                                            now=at(181))
    assert moved.replicas == 1
