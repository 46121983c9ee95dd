"""machinery.quota: what objects cost a quota (pods incl. init containers and sidecars, terminal
pods, services, claims, object counts), scopes, the must-specify rule, and LimitRange rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from machinery.quantity import Quantity
from machinery.quota import limitranges
from machinery.quota.evaluators import (
    missing_constraints,
    pod_resources,
    quota_matches,
    resources_for,
    scoped_names,
    usage,
)
from machinery.quota.resourcelists import dump_list, exceeded, parse_list, pretty

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def container(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
              **extra: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": name, "image": "busybox", "resources": resources, **extra}


def pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None, phase: str = "Pending",
        **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": list(containers), "initContainers": init or [], **spec},
            "status": {"phase": phase}}


def test_pod_requests_sum_containers_and_take_the_largest_init_container() -> None:
    p = pod(container("a", {"cpu": "100m"}), container("b", {"cpu": "200m"}),
            init=[container("big-init", {"cpu": "1"}), container("small-init", {"cpu": "50m"})])
    assert dump_list(pod_resources(p, "requests")) == {"cpu": "1"}


def test_sidecars_add_to_the_app_containers() -> None:
    p = pod(container("app", {"memory": "100Mi"}),
            init=[container("proxy", {"memory": "50Mi"}, restartPolicy="Always"),
                  container("setup", {"memory": "120Mi"})])
    assert dump_list(pod_resources(p, "requests")) == {"memory": "170Mi"}


def test_pod_usage_names() -> None:
    p = pod(container("a", {"cpu": "250m", "memory": "64Mi"}, {"cpu": "500m", "memory": "128Mi"}))
    assert dump_list(usage("pods", "", p, NOW)) == {
        "count/pods": "1", "cpu": "250m", "limits.cpu": "500m", "limits.memory": "128Mi", "memory": "64Mi",
        "pods": "1", "requests.cpu": "250m", "requests.memory": "64Mi"}


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_terminal_pods_only_count_as_objects(phase: str) -> None:
    p = pod(container("a", {"cpu": "1"}), phase=phase)
    assert dump_list(usage("pods", "", p, NOW)) == {"count/pods": "1"}


def test_pods_past_their_grace_period_stop_counting() -> None:
    p = pod(container("a"))
    p["metadata"].update(deletionTimestamp="2025-12-31T23:59:00Z", deletionGracePeriodSeconds=30)
    assert "pods" not in usage("pods", "", p, NOW)
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert "pods" in usage("pods", "", p, NOW)


@pytest.mark.parametrize(("spec", "expected"), [
    pytest.param({"type": "ClusterIP", "ports": [{"port": 80}]},
                 {"services.nodeports": "0", "services.loadbalancers": "0"}, id="cluster-ip"),
    pytest.param({"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]},
                 {"services.nodeports": "2", "services.loadbalancers": "0"}, id="node-port"),
    pytest.param({"type": "LoadBalancer", "ports": [{"port": 80}]},
                 {"services.nodeports": "1", "services.loadbalancers": "1"}, id="load-balancer"),
    pytest.param({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]},
                 {"services.nodeports": "0", "services.loadbalancers": "1"}, id="lb-without-node-ports"),
])
def test_service_usage(spec: dict[str, Any], expected: dict[str, str]) -> None:
    got = dump_list(usage("services", "", {"spec": spec}, NOW))
    assert got == {"services": "1", "count/services": "1", **expected}


def test_claim_usage_per_storage_class() -> None:
    claim = {"spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "5Gi"}}}}
    assert dump_list(usage("persistentvolumeclaims", "", claim, NOW)) == {
        "count/persistentvolumeclaims": "1", "gold.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
        "gold.storageclass.storage.k8s.io/requests.storage": "5Gi", "persistentvolumeclaims": "1",
        "requests.storage": "5Gi"}


@pytest.mark.parametrize(("plural", "group", "expected"), [
    pytest.param("configmaps", "", {"configmaps": "1", "count/configmaps": "1"}, id="legacy-name"),
    pytest.param("deployments", "apps", {"count/deployments.apps": "1"}, id="grouped"),
    pytest.param("events", "", {"count/events": "1"}, id="count-only"),
])
def test_object_counts(plural: str, group: str, expected: dict[str, str]) -> None:
    assert dump_list(usage(plural, group, {}, NOW)) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("requests.memory", ("", "pods")), ("limits.cpu", ("", "pods")), ("pods", ("", "pods")),
    ("requests.storage", ("", "persistentvolumeclaims")), ("services.nodeports", ("", "services")),
    ("count/deployments.apps", ("apps", "deployments")), ("configmaps", ("", "configmaps")),
    ("gold.storageclass.storage.k8s.io/requests.storage", ("", "persistentvolumeclaims")),
])
def test_resources_for(name: str, expected: tuple[str, str]) -> None:
    assert resources_for(name) == expected


@pytest.mark.parametrize(("quota_spec", "pod_spec", "matches"), [
    pytest.param({}, {}, True, id="no-scope"),
    pytest.param({"scopes": ["Terminating"]}, {"activeDeadlineSeconds": 10}, True, id="terminating"),
    pytest.param({"scopes": ["Terminating"]}, {}, False, id="not-terminating-pod"),
    pytest.param({"scopes": ["BestEffort"]}, {}, True, id="best-effort"),
    pytest.param({"scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}},
        {"priorityClassName": "high"}, True, id="priority-in"),
    pytest.param({"scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}},
        {"priorityClassName": "low"}, False, id="priority-other"),
])
def test_scopes(quota_spec: dict[str, Any], pod_spec: dict[str, Any], matches: bool) -> None:
    quota = {"spec": {"hard": {"pods": "1"}, **quota_spec}}
    assert quota_matches(quota, "pods", "", pod(container("a"), **pod_spec)) is matches


def test_scoped_quotas_track_only_pods() -> None:
    quota = {"spec": {"hard": {"pods": "1", "requests.cpu": "1"}, "scopes": ["BestEffort"]}}
    assert not quota_matches(quota, "services", "", {})
    assert scoped_names(quota, ["pods", "requests.cpu"]) == ["pods"]


def test_missing_constraints_lists_every_container() -> None:
    p = pod(container("a", {"cpu": "1"}, {"cpu": "1"}), container("b"))
    assert missing_constraints(p, ["limits.cpu", "requests.memory", "pods"]) == \
        "must specify limits.cpu for: b; requests.memory for: a,b"
    assert missing_constraints(p, ["pods"]) is None


def test_exceeded_and_pretty() -> None:
    used = parse_list({"pods": "3", "requests.cpu": "500m"})
    hard = parse_list({"pods": "2", "requests.cpu": "1"})
    assert exceeded(used, hard) == ["pods"]
    assert pretty({"b": Quantity.from_value(2), "a": Quantity.from_milli(500)}) == "a=500m,b=2"


def test_limit_range_item_defaults_follow_upstream_order() -> None:
    item: dict[str, Any] = {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "100Mi"}}
    limitranges.default_limit_range_item(item)
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "100Mi"}
    pod_item: dict[str, Any] = {"type": "Pod", "max": {"cpu": "2"}}
    limitranges.default_limit_range_item(pod_item)
    assert "default" not in pod_item


def test_defaults_do_not_override_and_are_annotated() -> None:
    ranges = [{"spec": {"limits": [{"type": "Container", "default": {"cpu": "1", "memory": "1Gi"},
                                    "defaultRequest": {"cpu": "500m", "memory": "512Mi"}}]}}]
    p = pod(container("a", {"cpu": "100m"}, {"cpu": "200m"}))
    assert limitranges.apply_container_defaults(p, ranges)
    assert p["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"},
                                                       "limits": {"cpu": "200m", "memory": "1Gi"}}
    assert p["metadata"]["annotations"][limitranges.ANNOTATION] == \
        "LimitRanger plugin set: memory request for container a; memory limit for container a"


@pytest.mark.parametrize(("item", "resources", "expected"), [
    pytest.param({"type": "Container", "max": {"memory": "1Gi"}}, {"requests": {"memory": "100Mi"}},
                 ["maximum memory usage per Container is 1Gi.  No limit is specified"], id="max-no-limit"),
    pytest.param({"type": "Container", "min": {"cpu": "200m"}}, {},
                 ["minimum cpu usage per Container is 200m.  No request is specified"], id="min-no-request"),
    pytest.param({"type": "Container", "maxLimitRequestRatio": {"memory": "2"}},
                 {"requests": {"memory": "100Mi"}, "limits": {"memory": "200Mi"}}, [], id="ratio-ok"),
])
def test_pod_violations(item: dict[str, Any], resources: dict[str, Any], expected: list[str]) -> None:
    p = pod({"name": "a", "image": "busybox", "resources": resources})
    assert limitranges.pod_violations(p, [{"spec": {"limits": [item]}}]) == expected


def test_aggregate_wording() -> None:
    assert limitranges.aggregate(["one"]) == "one"
    assert limitranges.aggregate(["one", "two"]) == "[one, two]"
