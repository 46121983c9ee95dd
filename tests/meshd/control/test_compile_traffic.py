"""The compiler's traffic inputs: EndpointSlices, DestinationRule outlierDetection, VirtualService mirrors."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.api.resources import OutlierDetection
from tests.meshd.control.test_compile import (
    DR_REVIEWS,
    REVIEWS_PODS,
    clusters,
    compiled,
    endpoint,
    endpoint_slice,
    istio,
    pod,
    routes,
    service,
)

Obj = dict[str, Any]
DEFAULT = "outbound|9080||reviews.default.svc.cluster.local"
V1, V2 = REVIEWS_PODS
V3 = pod("reviews-v3", labels={"app": "reviews", "version": "v3"}, ip="10.244.0.13")


def _addresses(slices: list[Obj], *, svc: Obj | None = None, cluster: str = DEFAULT) -> list[tuple[str, int]]:
    config = compiled(services=[svc or service("reviews")], endpoint_slices=slices, pods=[*REVIEWS_PODS, V3])
    return [(e.address, e.port) for e in clusters(config)[cluster].endpoints]


def test_endpoints_come_from_every_slice_of_the_service_with_each_slice_s_port() -> None:
    slices = [endpoint_slice("reviews", [endpoint(V1)], port=9080, suffix="a"),
              endpoint_slice("reviews", [endpoint(V2), endpoint(V3)], port=8080, suffix="b"),
              endpoint_slice("ratings", [endpoint(V3)], port=7000, suffix="c")]
    svc = service("reviews", ports=[{"name": "http", "port": 9080, "targetPort": "web", "protocol": "TCP"}])
    assert _addresses(slices, svc=svc) == [("10.244.0.11", 9080), ("10.244.0.12", 8080), ("10.244.0.13", 8080)]
    found = clusters(compiled(services=[svc], endpoint_slices=slices, pods=[*REVIEWS_PODS, V3]))
    assert found[DEFAULT].endpoints[0].identity == "spiffe://cluster.local/ns/default/sa/reviews"
    assert found[DEFAULT].endpoints[1].workload == "reviews-v2"


@pytest.mark.parametrize(("endpoints", "expected"), [
    pytest.param([endpoint(V1), endpoint(V2, ready=False, serving=False)], ["10.244.0.11"], id="not-ready-left-out"),
    pytest.param([endpoint(V1, ready=None), endpoint(V2)], ["10.244.0.11", "10.244.0.12"], id="unset-ready-is-ready"),
    pytest.param([endpoint(V1), endpoint(V2, ready=False, serving=True, terminating=True)], ["10.244.0.11"],
                 id="terminating-unused-while-one-is-ready"),
    pytest.param([endpoint(V1, ready=False, serving=True, terminating=True),
                  endpoint(V2, ready=False, serving=False, terminating=True)], ["10.244.0.11"],
                 id="none-ready-serving-terminating-ones-drain"),
    pytest.param([endpoint(V1, ready=False, serving=False)], [], id="none"),
])
def test_endpoint_conditions(endpoints: list[Obj], expected: list[str]) -> None:
    assert [a for a, _ in _addresses([endpoint_slice("reviews", endpoints)])] == expected


def test_slices_without_the_service_label_other_ports_fqdn_or_duplicates_are_ignored() -> None:
    unlabelled = endpoint_slice("reviews", [endpoint(V2)], suffix="x")
    unlabelled["metadata"]["labels"] = {}
    other_port = endpoint_slice("reviews", [endpoint(V3)], port_name="metrics", port=9090, suffix="y")
    named = {"addresses": ["reviews.default.svc.cluster.local"], "conditions": {"ready": True}}
    fqdn = endpoint_slice("reviews", [named], suffix="z", address_type="FQDN")
    twice = [endpoint_slice("reviews", [endpoint(V1)], suffix=s) for s in ("a", "b")]
    assert _addresses([unlabelled, other_port, fqdn, *twice]) == [("10.244.0.11", 9080)]


def test_unnamed_single_port_matches_the_unnamed_slice_port() -> None:
    svc = service("reviews", ports=[{"port": 9080, "targetPort": 8000, "protocol": "TCP"}])
    assert _addresses([endpoint_slice("reviews", [endpoint(V1)], port_name="", port=8000)], svc=svc) == \
        [("10.244.0.11", 8000)]


def _dr(spec: Obj) -> Obj:
    return istio("DestinationRule", "reviews", {"host": "reviews", **spec})


OUTLIER = {"consecutive5xxErrors": 3, "consecutiveGatewayErrors": 2, "interval": "1s", "baseEjectionTime": "2s",
           "maxEjectionPercent": 100, "minHealthPercent": 50}


@pytest.mark.parametrize(("spec", "default", "v1"), [
    pytest.param({}, None, None, id="none"),
    pytest.param({"trafficPolicy": {"outlierDetection": OUTLIER}},
                 OutlierDetection(3, 2, 1000, 2000, 300_000, 100.0, 50.0), "same", id="host-level"),
    pytest.param({"trafficPolicy": {"outlierDetection": {}}}, OutlierDetection(), "same", id="istio-defaults"),
    pytest.param({"trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 0, "baseEjectionTime": "10m",
                                                         "maxEjectionPercent": 0}}},
                 OutlierDetection(consecutive_5xx=0, base_ejection_time_ms=600_000, max_ejection_time_ms=600_000),
                 "same", id="zero-disables-long-base-raises-max"),
    pytest.param({"trafficPolicy": {"outlierDetection": OUTLIER, "portLevelSettings": [
        {"port": {"number": 9080}, "outlierDetection": {"consecutive5xxErrors": 7}}]}},
        OutlierDetection(consecutive_5xx=7), "same", id="port-level-replaces-whole"),
    pytest.param({"trafficPolicy": {"outlierDetection": OUTLIER},
                  "subsets": [{"name": "v1", "labels": {"version": "v1"},
                               "trafficPolicy": {"outlierDetection": {"consecutiveGatewayErrors": 4}}}]},
                 OutlierDetection(3, 2, 1000, 2000, 300_000, 100.0, 50.0),
                 OutlierDetection(consecutive_gateway_errors=4), id="subset-replaces-whole"),
])
def test_outlier_detection_compiles_onto_clusters(spec: Obj, default: OutlierDetection | None,
                                                  v1: OutlierDetection | str | None) -> None:
    spec.setdefault("subsets", DR_REVIEWS["spec"]["subsets"])
    found = clusters(compiled(destination_rules=[_dr(spec)]))
    assert found[DEFAULT].outlier_detection == default
    assert found["outbound|9080|v1|reviews.default.svc.cluster.local"].outlier_detection == \
        (default if v1 == "same" else v1)


def _vs(rule: Obj) -> Obj:
    return istio("VirtualService", "reviews", {"hosts": ["reviews"], "http": [
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}], **rule}]})


@pytest.mark.parametrize(("rule", "expected"), [
    pytest.param({"mirror": {"host": "reviews", "subset": "v2"}}, [("v2", 100.0)], id="mirror-all-by-default"),
    pytest.param({"mirror": {"host": "reviews", "subset": "v2"}, "mirrorPercentage": {"value": 12.5}},
                 [("v2", 12.5)], id="mirror-percentage"),
    pytest.param({"mirror": {"host": "reviews", "subset": "v2"}, "mirrorPercentage": {"value": 0}}, [],
                 id="zero-mirrors-nothing"),
    pytest.param({"mirror": {"host": "reviews", "subset": "v2"}, "mirrorPercent": 30}, [("v2", 30.0)],
                 id="deprecated-mirror-percent"),
    pytest.param({"mirrors": [{"destination": {"host": "reviews", "subset": "v2"}, "percentage": {"value": 50}},
                              {"destination": {"host": "reviews"}}]},
                 [("v2", 50.0), ("", 100.0)], id="mirrors"),
])
def test_mirrors_compile_onto_the_route(rule: Obj, expected: list[tuple[str, float]]) -> None:
    config = compiled(virtual_services=[_vs(rule)], destination_rules=[DR_REVIEWS])
    (route,) = routes(config)["9080"].virtual_hosts[0].routes
    assert [(m.cluster, m.percentage) for m in route.mirrors] == \
        [(f"outbound|9080|{subset}|reviews.default.svc.cluster.local", share) for subset, share in expected]
    assert config.errors == ()


def test_a_mirror_to_a_missing_subset_is_reported() -> None:
    config = compiled(virtual_services=[_vs({"mirror": {"host": "reviews", "subset": "v9"}})],
                      destination_rules=[DR_REVIEWS])
    (error,) = config.errors
    assert "reviews.default.svc.cluster.local+v9" in error.message and "http[0] mirror" in error.message


def test_an_endpoint_without_target_ref_belongs_to_the_running_pod_not_a_finished_one_with_its_old_ip() -> None:
    finished = pod("migrate-once", labels={"app": "migrate"}, ip=V2["status"]["podIP"], account="migrate")
    finished["status"]["phase"] = "Succeeded"  # its node has given the address to reviews-v2 since
    bare = {k: v for k, v in endpoint(V2).items() if k != "targetRef"}
    config = compiled(services=[service("reviews")], endpoint_slices=[endpoint_slice("reviews", [bare])],
                      pods=[V2, finished])
    [found] = clusters(config)[DEFAULT].endpoints
    assert (found.workload, found.labels) == ("reviews-v2", V2["metadata"]["labels"])
