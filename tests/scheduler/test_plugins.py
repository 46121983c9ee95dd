"""Filter and score plugins, one table per plugin."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.framework import Code, CycleState, FilterPlugin, PreFilterPlugin
from scheduler.plugins.basic import NodeName, NodeUnschedulable, TaintToleration, tolerates
from scheduler.plugins.interpod import InterPodAffinity
from scheduler.plugins.node_affinity import NodeAffinity
from scheduler.plugins.resources import BalancedAllocation, ImageLocality, LeastAllocated, NodeResourcesFit
from scheduler.plugins.spreading import PodTopologySpread, SelectorSpread
from scheduler.podinfo import pod_info
from tests.scheduler.helpers import cache_with, info, node, pod


def run_filter(plugin: FilterPlugin, p: dict[str, Any], n: dict[str, Any],
               placed: list[dict[str, Any]] | None = None) -> tuple[str, ...] | None:
    cache = cache_with(n, pods=placed)
    state = CycleState()
    if isinstance(plugin, PreFilterPlugin):
        status = plugin.pre_filter(state, info(p), cache.node_list())
        if status is not None and status.is_skip:
            return None
    result = plugin.filter(state, info(p), cache.nodes[n["metadata"]["name"]])
    return None if result is None else result.reasons


@pytest.mark.parametrize(("toleration", "taint", "expected"), [
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"}, {"key": "k", "value": "v", "effect": "NoSchedule"},
                 True, id="equal"),
    pytest.param({"key": "k", "value": "x"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False,
                 id="value-differs"),
    pytest.param({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True,
                 id="exists-any-effect"),
    pytest.param({"operator": "Exists"}, {"key": "any", "effect": "NoSchedule"}, True, id="exists-everything"),
    pytest.param({"key": "k", "operator": "Exists", "effect": "NoExecute"}, {"key": "k", "effect": "NoSchedule"},
                 False, id="effect-differs"),
])
def test_tolerates(toleration: dict[str, Any], taint: dict[str, Any], expected: bool) -> None:
    assert tolerates(toleration, taint) is expected


@pytest.mark.parametrize(("plugin", "p", "n", "expected"), [
    pytest.param(NodeName(), pod("p", node_name="x"), node("y"),
                 ("node(s) didn't match the requested node name",), id="nodename-mismatch"),
    pytest.param(NodeName(), pod("p"), node("y"), None, id="nodename-unset"),
    pytest.param(NodeUnschedulable(), pod("p"), node("y", unschedulable=True), ("node(s) were unschedulable",),
                 id="cordoned"),
    pytest.param(NodeUnschedulable(),
                 pod("p", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]),
                 node("y", unschedulable=True), None, id="cordoned-tolerated"),
    pytest.param(TaintToleration(), pod("p"), node("y", taints=[{"key": "a", "value": "b", "effect": "NoExecute"}]),
                 ("node(s) had untolerated taint {a: b}",), id="untolerated-noexecute"),
    pytest.param(TaintToleration(), pod("p"), node("y", taints=[{"key": "a", "effect": "PreferNoSchedule"}]),
                 None, id="prefer-does-not-filter"),
    pytest.param(NodeResourcesFit(), pod("p", cpu="3", memory="9Gi"), node("y", cpu="2"),
                 ("Insufficient cpu", "Insufficient memory"), id="cpu-and-memory"),
    pytest.param(NodeResourcesFit(), pod("p", cpu="500m"), node("y", cpu="1"), None, id="fits"),
    pytest.param(NodeResourcesFit(), pod("p"), node("y", pods="0"), ("Too many pods",), id="pod-slots"),
    pytest.param(NodeAffinity(), pod("p", nodeSelector={"zone": "a"}), node("y", labels={"zone": "b"}),
                 ("node(s) didn't match Pod's node affinity/selector",), id="selector-mismatch"),
    pytest.param(NodeAffinity(), pod("p", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]},
                              {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["y"]}]}]}}}),
                 node("y", labels={"cores": "4"}), None, id="terms-ored"),
    pytest.param(NodeAffinity(), pod("p", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}]}}}),
                 node("y", labels={"cores": "4"}), ("node(s) didn't match Pod's node affinity/selector",),
                 id="gt-fails"),
])
def test_filters(plugin: FilterPlugin, p: dict[str, Any], n: dict[str, Any], expected: tuple[str, ...] | None) -> None:
    assert run_filter(plugin, p, n) == expected


def test_init_containers_use_the_max_rule() -> None:
    obj = pod("p", cpu="100m", initContainers=[{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}])
    obj["spec"]["containers"].append({"name": "d", "resources": {"requests": {"cpu": "200m"}}})
    p = pod_info(obj)
    assert (p.cpu, p.memory) == (1000, 1024**3)


def _spread_pod(name: str, mode: str = "DoNotSchedule") -> dict[str, Any]:
    return pod(name, labels={"app": "w"}, topologySpreadConstraints=[
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": mode,
         "labelSelector": {"matchLabels": {"app": "w"}}}])


@pytest.mark.parametrize(("target", "expected"), [
    pytest.param("a1", "node(s) didn't match pod topology spread constraints", id="skew-too-big"),
    pytest.param("b1", None, id="emptier-zone"),
    pytest.param("nolabel", "node(s) didn't match pod topology spread constraints (missing required label)",
                 id="missing-label"),
])
def test_topology_spread_filter(target: str, expected: str | None) -> None:
    cache = cache_with(node("a1", labels={"zone": "a"}), node("b1", labels={"zone": "b"}), node("nolabel"),
                       pods=[pod("w1", labels={"app": "w"}, node_name="a1")])
    plugin = PodTopologySpread(cache)
    state = CycleState()
    assert plugin.pre_filter(state, info(_spread_pod("new")), cache.node_list()) is None
    status = plugin.filter(state, info(_spread_pod("new")), cache.nodes[target])
    assert (status.reasons[0] if status else None) == expected


def test_topology_spread_score_prefers_empty_zone() -> None:
    cache = cache_with(node("a1", labels={"zone": "a"}), node("b1", labels={"zone": "b"}),
                       pods=[pod("w1", labels={"app": "w"}, node_name="a1")])
    plugin = PodTopologySpread(cache)
    state = CycleState()
    p = info(_spread_pod("new", "ScheduleAnyway"))
    assert plugin.pre_score(state, p, cache.node_list()) is None
    assert plugin.score(state, p, cache.node_list()) == [0, 100]


ANTI = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}
AFFINITY = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}]}}


@pytest.mark.parametrize(("incoming", "placed", "expected"), [
    pytest.param(pod("new", labels={"app": "db"}, affinity=ANTI), [pod("old", labels={"app": "db"}, node_name="x")],
                 ("node(s) didn't match pod anti-affinity rules", None), id="own-anti-affinity"),
    pytest.param(pod("new", labels={"app": "db"}), [pod("old", labels={"app": "db"}, affinity=ANTI, node_name="x")],
                 ("node(s) didn't satisfy existing pods anti-affinity rules", None), id="existing-anti-affinity"),
    pytest.param(pod("new", affinity=AFFINITY), [pod("c", labels={"app": "cache"}, node_name="x")],
                 (None, "node(s) didn't match pod affinity rules"), id="affinity"),
    pytest.param(pod("new", labels={"app": "cache"}, affinity=AFFINITY), [], (None, None),
                 id="first-of-group-selects-itself"),
])
def test_inter_pod_affinity(incoming: dict[str, Any], placed: list[dict[str, Any]],
                            expected: tuple[str | None, str | None]) -> None:
    cache = cache_with(node("x"), node("y"), pods=placed)
    plugin = InterPodAffinity(cache)
    state = CycleState()
    assert plugin.pre_filter(state, info(incoming), cache.node_list()) is None
    got = []
    for name in ("x", "y"):
        status = plugin.filter(state, info(incoming), cache.nodes[name])
        got.append(status.reasons[0] if status else None)
    assert tuple(got) == expected


def test_inter_pod_affinity_skips_plain_pods() -> None:
    cache = cache_with(node("x"))
    status = InterPodAffinity(cache).pre_filter(CycleState(), info(pod("p")), cache.node_list())
    assert status is not None and status.code is Code.SKIP


@pytest.mark.parametrize(("plugin_name", "expected"), [
    pytest.param("least", [75, 50], id="least-allocated"),
    pytest.param("balanced", [100, 75], id="balanced"),
])
def test_resource_scores(plugin_name: str, expected: list[int]) -> None:
    cache = cache_with(node("empty", cpu="4", memory="4Gi"), node("busy", cpu="4", memory="4Gi"),
                       pods=[pod("hog", cpu="2", memory="0", node_name="busy")])
    p = info(pod("p", cpu="1", memory="1Gi"))
    plugin = LeastAllocated() if plugin_name == "least" else BalancedAllocation()
    # busy: cpu 3/4 used, memory 1Gi+0/4Gi -> least (25+75)/2=50; balanced |0.75-0.25|/2 -> 75
    assert plugin.score(CycleState(), p, cache.node_list()) == expected


def test_image_locality_prefers_node_with_image() -> None:
    big = [{"names": ["busybox:latest"], "sizeBytes": 800 * 1024 * 1024}]
    cache = cache_with(node("has", images=big), node("hasnt"))
    plugin = ImageLocality(cache)
    p = info(pod("p"))
    assert plugin.pre_score(CycleState(), p, cache.node_list()) is None
    scores = plugin.score(CycleState(), p, cache.node_list())
    assert scores[0] > scores[1] == 0


def test_selector_spread_counts_controller_pods() -> None:
    owned = {"ownerReferences": [{"uid": "rs-1", "controller": True, "kind": "ReplicaSet", "name": "rs"}]}
    placed = pod("a", node_name="x")
    placed["metadata"].update(owned)
    cache = cache_with(node("x"), node("y"), pods=[placed])
    new = pod("b")
    new["metadata"].update(owned)
    assert SelectorSpread().score(CycleState(), info(new), cache.node_list()) == [0, 100]


def test_taint_score_prefers_untainted() -> None:
    cache = cache_with(node("x", taints=[{"key": "a", "effect": "PreferNoSchedule"}]), node("y"))
    plugin, state, p = TaintToleration(), CycleState(), info(pod("p"))
    assert plugin.pre_score(state, p, cache.node_list()) is None
    assert plugin.score(state, p, cache.node_list()) == [0, 100]
