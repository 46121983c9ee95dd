"""meshd.api: the resource codec is strict and round-trips; identities parse; messages go over JSON."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.api.identity import SpiffeId
from meshd.api.protocol import DiscoveryRequest, ErrorDetail, Node, deserializer, serializer
from meshd.api.resources import (
    Abort,
    Cluster,
    Delay,
    Endpoint,
    Fault,
    Inbound,
    InboundPort,
    Mirror,
    OutlierDetection,
    ResourceError,
    Route,
    RouteConfig,
    RouteMatch,
    StringMatch,
    VirtualHost,
    WeightedCluster,
    cluster_name,
    decode,
    encode,
)

REVIEWS = "reviews.default.svc.cluster.local"


def _routes(regex: str = "^/api/.*") -> RouteConfig:
    v1, v2 = cluster_name(REVIEWS, 9080, "v1"), cluster_name(REVIEWS, 9080, "v2")
    return RouteConfig(name="9080", virtual_hosts=(VirtualHost(
        name=f"{REVIEWS}:9080", domains=("reviews", f"{REVIEWS}:9080"),
        routes=(
            Route(name="jason", matches=(RouteMatch(headers={"end-user": StringMatch(exact="jason")}),),
                  destinations=(WeightedCluster(v2),),
                  fault=Fault(delay=Delay(2000, 100.0), abort=Abort(500, 50.0))),
            Route(name="api", matches=(RouteMatch(uri=StringMatch(regex=regex)),),
                  destinations=(WeightedCluster(v1, 90), WeightedCluster(v2, 10)), timeout_ms=500,
                  mirrors=(Mirror(cluster_name(REVIEWS, 9080, "v3"), 25.0),)),
        )),))


def test_round_trip_of_every_resource_type() -> None:
    cluster = Cluster(name=cluster_name(REVIEWS, 9080, "v1"), service=REVIEWS, port=9080, protocol="http",
                      subset="v1", endpoints=(Endpoint("10.1.0.5", 9080, {"version": "v1"},
                                                       identity="spiffe://cluster.local/ns/default/sa/reviews"),),
                      outlier_detection=OutlierDetection(consecutive_5xx=3, base_ejection_time_ms=1000,
                                                         max_ejection_percent=100.0))
    inbound = Inbound(default_mtls_mode="STRICT", ports=(InboundPort(9080, "http", "PERMISSIVE"),))
    for resource in (cluster, _routes(), inbound):
        assert decode(type(resource), encode(resource)) == resource


@pytest.mark.parametrize(("mutate", "message"), [
    pytest.param(lambda d: d.update(extra=1), "RouteConfig: unknown field 'extra'", id="unknown-field"),
    pytest.param(lambda d: d.pop("name"), "RouteConfig.name: required", id="missing"),
    pytest.param(lambda d: d["virtual_hosts"][0]["routes"][1].update(timeout_ms="1s"),
                 "RouteConfig.virtual_hosts[0].routes[1].timeout_ms: expected int, got str", id="wrong-type"),
    pytest.param(lambda d: d["virtual_hosts"][0]["routes"][0]["fault"]["abort"].update(percentage=True),
                 "abort.percentage: expected a number, got bool", id="bool-is-not-a-number"),
])
def test_decode_names_the_bad_field(mutate: Any, message: str) -> None:
    data = encode(_routes())
    mutate(data)
    with pytest.raises(ResourceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode(RouteConfig, data)


def test_bad_enum_value_is_refused() -> None:
    with pytest.raises(ResourceError, match=r"Inbound.default_mtls_mode: unsupported value 'UNSET'"):
        decode(Inbound, {"default_mtls_mode": "UNSET"})


def test_check_refuses_an_invalid_regex_and_an_ambiguous_match() -> None:
    _routes().check()
    with pytest.raises(ResourceError, match=r"routes\[1\]\.matches\[0\]\.uri\.regex: invalid regular expression"):
        _routes(regex="(unclosed").check()
    with pytest.raises(ResourceError, match="exactly one of exact, prefix or regex"):
        StringMatch(exact="a", prefix="b").check("m")


@pytest.mark.parametrize(("uri", "parsed"), [
    pytest.param("spiffe://cluster.local/ns/default/sa/reviews", SpiffeId("default", "reviews"), id="workload"),
    pytest.param("spiffe://lab.example/ns/a/sa/b", SpiffeId("a", "b", "lab.example"), id="trust-domain"),
])
def test_spiffe_round_trip(uri: str, parsed: SpiffeId) -> None:
    assert SpiffeId.parse(uri) == parsed and parsed.uri == uri


@pytest.mark.parametrize("uri", ["http://x/ns/a/sa/b", "spiffe://td/ns/a", "spiffe://td/ns//sa/b", "spiffe:///ns/a/sa/b"])
def test_spiffe_refuses_other_forms(uri: str) -> None:
    with pytest.raises(ValueError):
        SpiffeId.parse(uri)


def test_messages_travel_as_json() -> None:
    nack = DiscoveryRequest(type_url="t", version_info="3", response_nonce="n4",
                            error_detail=ErrorDetail("bad regex"),
                            node=Node("sidecar~1~p.ns~ns", "ns", "p", "10.0.0.1"))
    assert deserializer(DiscoveryRequest)(serializer(nack)) == nack
    with pytest.raises(ResourceError, match="not JSON"):
        deserializer(DiscoveryRequest)(b"{")
