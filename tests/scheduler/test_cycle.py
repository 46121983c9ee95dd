"""The scheduling cycle: node sampling, selection, FailedScheduling wording, profiles."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from scheduler.cycle import Cycle, FitError, num_feasible_nodes_to_find
from scheduler.framework import Code, Handle, Status
from scheduler.profile import Profile, build_framework, load_profile
from scheduler.scheduler import scheduled_message
from tests.scheduler.helpers import cache_with, info, node, pod


@pytest.mark.parametrize(("nodes", "pct", "expected"), [
    pytest.param(50, None, 50, id="small-cluster-all"),
    pytest.param(1000, None, 420, id="adaptive-1000"),
    pytest.param(5000, None, 500, id="adaptive-5000"),
    pytest.param(1000, 5, 100, id="floor-100"),
    pytest.param(1000, 100, 1000, id="all"),
])
def test_num_feasible_nodes(nodes: int, pct: int | None, expected: int) -> None:
    assert num_feasible_nodes_to_find(nodes, pct) == expected


def test_fit_error_message_matches_kubernetes() -> None:
    err = FitError(info(pod("p")), 5, {
        "a": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",)),
        "b": Status(Code.UNSCHEDULABLE, ("Insufficient cpu", "Insufficient memory")),
        "c": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",)),
        "d": Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: gpu}",)),
        "e": Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: gpu}",)),
    })
    assert err.message() == (
        "0/5 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint {dedicated: gpu}, "
        "3 Insufficient cpu. preemption: 0/5 nodes are available: 2 Preemption is not helpful for scheduling, "
        "3 No preemption victims found for incoming pod.")


def test_fit_error_preemption_never() -> None:
    never = info(pod("p", preemptionPolicy="Never"))
    err = FitError(never, 1, {"a": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",))})
    assert err.message() == ("0/1 nodes are available: 1 Insufficient cpu. "
                             "preemption: not eligible due to preemptionPolicy=Never.")


def test_cycle_picks_best_and_reports_runners_up() -> None:
    cache = cache_with(node("small", cpu="2"), node("large", cpu="16", memory="32Gi"), node("mid", cpu="8"))
    cycle = Cycle(build_framework(Profile(), Handle(cache)), cache, rng=random.Random(1))
    result = cycle.schedule(info(pod("p", cpu="1", memory="1Gi")))
    assert result.node == "large"
    assert [name for name, _ in result.runners_up] == ["mid", "small"]
    assert result.score >= result.runners_up[0][1] >= result.runners_up[1][1]
    assert scheduled_message(info(pod("p")), result).startswith(
        f"Successfully assigned default/p to large (score {result.score}; runners-up mid ")


def test_cycle_rotates_and_samples_big_clusters() -> None:
    cache = cache_with(*[node(f"n{i}") for i in range(1000)])
    cycle = Cycle(build_framework(Profile(), Handle(cache)), cache)
    first = cycle.schedule(info(pod("a")))
    second = cycle.schedule(info(pod("b")))
    assert first.evaluated == second.evaluated == 420
    assert cycle._next_start == 840


def test_cycle_raises_fit_error_over_all_nodes() -> None:
    cache = cache_with(*[node(f"n{i}", cpu="1") for i in range(200)])
    cycle = Cycle(build_framework(Profile(), Handle(cache)), cache)
    with pytest.raises(FitError) as err:
        cycle.schedule(info(pod("p", cpu="2")))
    assert err.value.message().startswith("0/200 nodes are available: 200 Insufficient cpu.")


def test_assumed_pod_takes_space() -> None:
    cache = cache_with(node("only", cpu="1"))
    cycle = Cycle(build_framework(Profile(), Handle(cache)), cache)
    first = info(pod("a", cpu="600m"))
    cache.assume(first, cycle.schedule(first).node)
    with pytest.raises(FitError):
        cycle.schedule(info(pod("b", cpu="600m")))


def test_profile_from_file(tmp_path: Path) -> None:
    path = tmp_path / "sched.yaml"
    path.write_text("percentageOfNodesToScore: 30\nprofiles:\n- schedulerName: custom\n  plugins:\n"
                    "    filter: {disabled: [{name: PodTopologySpread}]}\n"
                    "    score: {disabled: [{name: '*'}], enabled: [{name: ImageLocality, weight: 4}]}\n")
    profile = load_profile(path)
    assert profile.scheduler_name == "custom"
    assert profile.percentage_of_nodes_to_score == 30
    assert "PodTopologySpread" not in profile.filters and "NodeResourcesFit" in profile.filters
    assert profile.scores == [("ImageLocality", 4)]


def test_profile_rejects_unknown_plugin() -> None:
    with pytest.raises(ValueError, match="unknown scheduler plugin"):
        build_framework(Profile(filters=["Nope"]), Handle(cache_with()))
