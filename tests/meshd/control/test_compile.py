"""The per-proxy compiler, table-driven: canary weights, matches and faults, scoping, mTLS resolution, protocols."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.api.resources import (
    CLUSTERS,
    INBOUND,
    LISTENERS,
    ROUTES,
    Cluster,
    Inbound,
    Listener,
    RouteConfig,
    decode,
)
from meshd.control.compile.proxy import ProxyCompiler, ProxyConfig, compile_proxy
from meshd.control.compile.scope import ProxyNode
from meshd.control.model import MeshSnapshot

Obj = dict[str, Any]


def service(name: str, ns: str = "default", *, ports: list[Obj] | None = None, ip: str = "10.96.0.10",
            selector: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
            "spec": {"clusterIP": ip, "selector": selector or {"app": name},
                     "ports": ports or [{"name": "http", "port": 9080, "targetPort": 9080, "protocol": "TCP"}]}}


def pod(name: str, ns: str = "default", *, labels: dict[str, str], ip: str, sidecar: bool = True,
        account: str = "default") -> Obj:
    containers = [{"name": "app", "ports": [{"name": "http", "containerPort": 9080}]}]
    init = [{"name": "istio-proxy", "restartPolicy": "Always"}] if sidecar else []
    return {"metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"serviceAccountName": account, "containers": containers, "initContainers": init},
            "status": {"podIP": ip}}


def endpoint(p: Obj, *, ready: bool | None = True, serving: bool | None = None,
             terminating: bool | None = None) -> Obj:
    conditions = {k: v for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
                  if v is not None}
    return {"addresses": [p["status"]["podIP"]], "conditions": conditions,
            "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": p["metadata"]["namespace"]}}


def endpoint_slice(service_name: str, endpoints: list[Obj], ns: str = "default", port_name: str = "http",
                   port: int = 9080, *, suffix: str = "abcde", address_type: str = "IPv4") -> Obj:
    return {"metadata": {"name": f"{service_name}-{suffix}", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}


def endpoints(name: str, pods: list[Obj], ns: str = "default", port_name: str = "http", port: int = 9080) -> Obj:
    """One slice with every pod ready."""
    return endpoint_slice(name, [endpoint(p) for p in pods], ns, port_name, port)


def istio(kind: str, name: str, spec: Obj, ns: str = "default", created: str = "2026-01-01T00:00:00Z") -> Obj:
    return {"kind": kind, "metadata": {"name": name, "namespace": ns, "creationTimestamp": created,
                                       "generation": 1}, "spec": spec}


REVIEWS_PODS = [pod("reviews-v1", labels={"app": "reviews", "version": "v1"}, ip="10.244.0.11", account="reviews"),
                pod("reviews-v2", labels={"app": "reviews", "version": "v2"}, ip="10.244.0.12", sidecar=False)]
BASE: dict[str, Any] = dict(services=[service("reviews")], endpoint_slices=[endpoints("reviews", REVIEWS_PODS)],
                            pods=REVIEWS_PODS)
DR_REVIEWS = istio("DestinationRule", "reviews", {"host": "reviews", "subsets": [
    {"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]})
CANARY = istio("VirtualService", "reviews", {"hosts": ["reviews"], "http": [{"route": [
    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}]}]})
PRODUCTPAGE = ProxyNode(namespace="default", pod="productpage-1", labels={"app": "productpage"})


def compiled(node: ProxyNode = PRODUCTPAGE, **objects: Any) -> ProxyConfig:
    return compile_proxy(MeshSnapshot.build(**{**BASE, **objects}), node)


def routes(config: ProxyConfig) -> dict[str, RouteConfig]:
    return {r["name"]: decode(RouteConfig, r) for r in config.resources[ROUTES]}


def clusters(config: ProxyConfig) -> dict[str, Cluster]:
    return {c["name"]: decode(Cluster, c) for c in config.resources[CLUSTERS]}


def test_canary_90_10_routes_to_subset_clusters_with_their_endpoints() -> None:
    config = compiled(virtual_services=[CANARY], destination_rules=[DR_REVIEWS])
    host = routes(config)["9080"].virtual_hosts[0]
    assert host.name == "reviews.default.svc.cluster.local:9080"
    assert {"reviews", "reviews:9080", "reviews.default.svc.cluster.local", "10.96.0.10:9080"} <= set(host.domains)
    (route,) = host.routes
    assert [(d.cluster, d.weight) for d in route.destinations] == [
        ("outbound|9080|v1|reviews.default.svc.cluster.local", 90),
        ("outbound|9080|v2|reviews.default.svc.cluster.local", 10)]
    assert route.retries is not None and route.retries.attempts == 2  # Istio's implicit default
    found = clusters(config)
    v1, v2 = found["outbound|9080|v1|reviews.default.svc.cluster.local"], \
        found["outbound|9080|v2|reviews.default.svc.cluster.local"]
    assert [e.address for e in v1.endpoints] == ["10.244.0.11"]
    assert v1.endpoints[0].identity == "spiffe://cluster.local/ns/default/sa/reviews"
    assert [e.address for e in v2.endpoints] == ["10.244.0.12"] and v2.endpoints[0].identity == ""
    assert len(found["outbound|9080||reviews.default.svc.cluster.local"].endpoints) == 2
    assert config.errors == ()


def test_header_match_with_fault_then_default_route() -> None:
    vs = istio("VirtualService", "reviews", {"hosts": ["reviews"], "http": [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "fault": {"delay": {"fixedDelay": "2s", "percentage": {"value": 100}},
                   "abort": {"httpStatus": 500, "percentage": {"value": 50.0}}},
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"timeout": "0.5s", "retries": {"attempts": 3, "perTryTimeout": "100ms", "retryOn": "5xx,reset"},
         "route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]})
    first, second = routes(compiled(virtual_services=[vs], destination_rules=[DR_REVIEWS]))["9080"] \
        .virtual_hosts[0].routes
    assert first.matches[0].headers["end-user"].exact == "jason"
    assert first.fault is not None and first.fault.delay is not None and first.fault.abort is not None
    assert (first.fault.delay.fixed_delay_ms, first.fault.abort.http_status, first.fault.abort.percentage) == \
        (2000, 500, 50.0)
    assert first.retries is None and first.destinations[0].weight == 100
    assert second.timeout_ms == 500 and second.retries is not None
    assert (second.retries.attempts, second.retries.per_try_timeout_ms, second.retries.retry_on) == \
        (3, 100, ("5xx", "reset"))
    assert first.source == "VirtualService default/reviews http[0]"


@pytest.mark.parametrize(("match", "kept"), [
    pytest.param({"sourceLabels": {"app": "productpage"}}, True, id="source-labels-match"),
    pytest.param({"sourceLabels": {"app": "ratings"}}, False, id="source-labels-differ"),
    pytest.param({"sourceNamespace": "default"}, True, id="source-namespace-match"),
    pytest.param({"sourceNamespace": "other"}, False, id="source-namespace-differ"),
    pytest.param({"port": 9081}, False, id="other-port"),
])
def test_match_blocks_that_cannot_hold_for_this_proxy_are_dropped(match: Obj, kept: bool) -> None:
    vs = istio("VirtualService", "reviews", {"hosts": ["reviews"], "http": [
        {"match": [match], "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]})
    got = routes(compiled(virtual_services=[vs], destination_rules=[DR_REVIEWS]))["9080"].virtual_hosts[0].routes
    assert [r.source.rsplit(" ", 1)[-1] for r in got] == (["http[0]", "http[1]"] if kept else ["http[1]"])


def test_a_subset_without_destination_rule_is_an_error_and_an_empty_cluster() -> None:
    config = compiled(virtual_services=[CANARY])
    (error, *_) = config.errors
    assert (error.kind, error.name, error.code) == ("VirtualService", "reviews", "IST0101")
    assert "reviews.default.svc.cluster.local+v1" in error.message
    assert clusters(config)["outbound|9080|v1|reviews.default.svc.cluster.local"].endpoints == ()


@pytest.mark.parametrize(("export_to", "visible"), [
    pytest.param(None, True, id="default-everyone"),
    pytest.param(["*"], True, id="star"),
    pytest.param(["."], False, id="own-namespace-only"),
    pytest.param(["frontend"], True, id="named-namespace"),
    pytest.param(["~"], False, id="nobody"),
])
def test_export_to_on_virtual_services_and_services(export_to: list[str] | None, visible: bool) -> None:
    spec = {**CANARY["spec"], "hosts": ["reviews.default.svc.cluster.local"]}
    if export_to is not None:
        spec["exportTo"] = export_to
    vs = istio("VirtualService", "reviews", spec)
    frontend = ProxyNode(namespace="frontend", pod="web-1", labels={"app": "web"})
    got = routes(compiled(frontend, virtual_services=[vs], destination_rules=[DR_REVIEWS]))["9080"]
    assert (len(got.virtual_hosts[0].routes[0].destinations) == 2) is visible
    annotated = service("reviews", annotations={"networking.istio.io/exportTo": ",".join(export_to or ["*"])})
    hidden = compiled(frontend, services=[annotated])
    assert bool(hidden.resources[LISTENERS]) is visible


def test_sidecar_egress_limits_what_a_proxy_sees() -> None:
    other = service("ratings", ip="10.96.0.20")
    sidecar = istio("Sidecar", "default", {"egress": [{"hosts": ["./reviews.default.svc.cluster.local"]}]})
    config = compiled(services=[service("reviews"), other], sidecars=[sidecar])
    assert [decode(Listener, x).address for x in config.resources[LISTENERS]] == ["10.96.0.10"]
    assert compiled(services=[service("reviews"), other]).resources[LISTENERS].__len__() == 2


def pa(name: str, spec: Obj, ns: str = "default") -> Obj:
    return istio("PeerAuthentication", name, spec, ns)


@pytest.mark.parametrize(("policies", "default", "ports"), [
    pytest.param([], "PERMISSIVE", {}, id="nothing-permissive"),
    pytest.param([pa("mesh", {"mtls": {"mode": "STRICT"}}, "istio-system")], "STRICT", {}, id="root-namespace"),
    pytest.param([pa("mesh", {"mtls": {"mode": "STRICT"}}, "istio-system"), pa("ns", {"mtls": {"mode": "UNSET"}})],
                 "STRICT", {}, id="unset-inherits"),
    pytest.param([pa("mesh", {"mtls": {"mode": "STRICT"}}, "istio-system"),
                  pa("ns", {"mtls": {"mode": "PERMISSIVE"}})], "PERMISSIVE", {}, id="namespace-over-mesh"),
    pytest.param([pa("ns", {"mtls": {"mode": "STRICT"}}),
                  pa("wl", {"selector": {"matchLabels": {"app": "reviews"}}, "mtls": {"mode": "DISABLE"}})],
                 "DISABLE", {}, id="workload-over-namespace"),
    pytest.param([pa("wl", {"selector": {"matchLabels": {"app": "ratings"}}, "mtls": {"mode": "DISABLE"}})],
                 "PERMISSIVE", {}, id="other-workload-ignored"),
    pytest.param([pa("ns", {"mtls": {"mode": "STRICT"}}),
                  pa("wl", {"selector": {"matchLabels": {"app": "reviews"}},
                            "portLevelMtls": {"9080": {"mode": "PERMISSIVE"}, "9090": {"mode": "UNSET"}}})],
                 "STRICT", {9080: "PERMISSIVE"}, id="port-level"),
])
def test_peer_authentication_resolution(policies: list[Obj], default: str, ports: dict[int, str]) -> None:
    node = ProxyNode(namespace="default", pod="reviews-v1", labels={"app": "reviews", "version": "v1"})
    (raw,) = compiled(node, peer_authentications=policies).resources[INBOUND]
    inbound = decode(Inbound, raw)
    assert inbound.default_mtls_mode == default
    assert {p.port: p.mtls_mode for p in inbound.ports if p.mtls_mode != default} == ports
    assert {p.port: p.protocol for p in inbound.ports}.get(9080) == "http"
    assert (inbound.canonical_service, inbound.canonical_revision) == ("reviews", "v1")


@pytest.mark.parametrize(("port", "protocol"), [
    pytest.param({"name": "http-web", "port": 80}, "http", id="name-prefix"),
    pytest.param({"name": "grpc", "port": 81}, "grpc", id="grpc-name"),
    pytest.param({"name": "web", "port": 82, "appProtocol": "http2"}, "http2", id="app-protocol"),
    pytest.param({"name": "https", "port": 83}, "tls", id="https-is-tls"),
    pytest.param({"name": "mysql", "port": 3306}, "tcp", id="opaque"),
    pytest.param({"port": 84}, "tcp", id="unnamed"),
])
def test_protocol_selection(port: Obj, protocol: str) -> None:
    config = compiled(services=[service("db", ports=[{**port, "protocol": "TCP"}])], endpoint_slices=[], pods=[])
    (listener,) = [decode(Listener, x) for x in config.resources[LISTENERS]]
    assert listener.protocol == protocol
    assert bool(listener.route_config) is (protocol in ("http", "http2", "grpc"))


def test_destination_rule_policies_subset_over_port_over_host() -> None:
    dr = istio("DestinationRule", "reviews", {"host": "reviews", "trafficPolicy": {
        "loadBalancer": {"simple": "RANDOM"}, "tls": {"mode": "ISTIO_MUTUAL"},
        "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "LEAST_REQUEST"}}]},
        "subsets": [{"name": "v1", "labels": {"version": "v1"},
                     "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]})
    found = clusters(compiled(destination_rules=[dr]))
    default = found["outbound|9080||reviews.default.svc.cluster.local"]
    v1 = found["outbound|9080|v1|reviews.default.svc.cluster.local"]
    assert (default.lb_policy, default.tls_mode) == ("LEAST_REQUEST", "ISTIO_MUTUAL")
    assert (v1.lb_policy, v1.tls_mode) == ("LEAST_REQUEST", "DISABLE")


def test_versions_change_only_with_content_and_replicas_share_one_outbound_compile() -> None:
    snapshot = MeshSnapshot.build(**BASE, virtual_services=[CANARY], destination_rules=[DR_REVIEWS])
    compiler = ProxyCompiler(lambda: snapshot)
    a = compiler(ProxyNode(namespace="default", pod="p-1", labels={"app": "productpage"}))
    b = compiler(ProxyNode(namespace="default", pod="p-2", labels={"app": "productpage"}))
    assert compiler.compiles == 1 and a.versions[ROUTES] == b.versions[ROUTES]
    assert compile_proxy(snapshot, PRODUCTPAGE).versions == compile_proxy(snapshot, PRODUCTPAGE).versions
    changed = compile_proxy(MeshSnapshot.build(**BASE, destination_rules=[DR_REVIEWS]), PRODUCTPAGE)
    assert changed.versions[ROUTES] != a.versions[ROUTES] and changed.versions[CLUSTERS] == a.versions[CLUSTERS]


def test_every_compiled_resource_decodes_and_passes_the_proxy_checks() -> None:
    config = compiled(virtual_services=[CANARY], destination_rules=[DR_REVIEWS])
    for raw in config.resources[ROUTES]:
        decode(RouteConfig, raw).check()
    assert all(decode(Listener, x) for x in config.resources[LISTENERS])
