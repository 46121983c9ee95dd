"""The sidecar's policy evaluation without sockets: Istio's string matching, attributes, order and TCP semantics."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.api.resources import AuthzClause, AuthzMatch, AuthzPolicy, AuthzRule, ResourceError
from meshd.proxy.authz import Attributes, Authorizer, normalized_path
from meshd.proxy.config import ConfigStore

SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"


def request(**kw: Any) -> Attributes:
    values: dict[str, Any] = dict(http=True, principal=SLEEP, source_ip="10.244.0.7", destination_ip="10.244.0.9",
                                  destination_port=8080, method="GET", path="/api/v1/items?x=1", host="httpbin:8000",
                                  headers=[("x-version", "v1"), ("x-tags", "a,b"), ("x-tags", "c")])
    values.update(kw)
    return Attributes(**values)


def allow_if(key: str, values: tuple[str, ...] = (), not_values: tuple[str, ...] = ()) -> Authorizer:
    match = AuthzMatch(key, values, not_values)
    return Authorizer([AuthzPolicy("ns[d]-policy[p]", "ALLOW", (AuthzRule(when=(match,)),))])


@pytest.mark.parametrize(("key", "values", "not_values", "attrs", "allowed"), [
    pytest.param("source.principal", ("cluster.local/ns/default/sa/sleep",), (), {}, True, id="principal-exact"),
    pytest.param("source.principal", ("cluster.local/ns/default/*",), (), {}, True, id="principal-prefix"),
    pytest.param("source.principal", ("*/sa/sleep",), (), {}, True, id="principal-suffix"),
    pytest.param("source.principal", ("*",), (), {"principal": ""}, False, id="principal-presence-plaintext"),
    pytest.param("source.principal", (), ("*",), {"principal": ""}, True, id="not-principal-plaintext"),
    pytest.param("source.namespace", ("def*",), (), {}, True, id="namespace-glob"),
    pytest.param("source.namespace", ("prod",), (), {}, False, id="namespace-other"),
    pytest.param("source.serviceaccount", ("default/sleep",), (), {}, True, id="service-account"),
    pytest.param("source.ip", ("10.244.0.0/16",), (), {}, True, id="source-cidr"),
    pytest.param("source.ip", ("10.244.0.8",), (), {}, False, id="source-ip-other"),
    pytest.param("destination.port", ("8080",), (), {}, True, id="port"),
    pytest.param("request.host", ("HTTPBIN*",), (), {}, True, id="host-ignores-case"),
    pytest.param("request.method", ("get",), (), {}, False, id="method-keeps-case"),
    pytest.param("request.path", ("/api/v1/items",), (), {}, True, id="path-without-query"),
    pytest.param("request.path", ("/api/{*}/items",), (), {}, True, id="path-template-one-segment"),
    pytest.param("request.path", ("/api/{**}",), (), {}, True, id="path-template-rest"),
    pytest.param("request.path", ("/api/{*}",), (), {}, False, id="path-template-too-short"),
    pytest.param("request.headers[x-version]", ("v1",), (), {}, True, id="header"),
    pytest.param("request.headers[x-tags]", ("b",), (), {}, True, id="header-element"),
    pytest.param("request.headers[x-missing]", ("*",), (), {}, False, id="header-presence"),
    pytest.param("request.headers[x-missing]", (), ("*",), {}, True, id="not-header-presence"),
    pytest.param("request.auth.principal", ("*",), (), {}, False, id="no-request-principal"),
    pytest.param("connection.sni", ("*",), (), {}, False, id="no-sni"),
])
def test_attribute_matching(key: str, values: tuple[str, ...], not_values: tuple[str, ...], attrs: dict[str, Any],
                            allowed: bool) -> None:
    assert allow_if(key, values, not_values).check(request(**attrs)).allowed is allowed


@pytest.mark.parametrize(("path", "seen"), [
    ("/a/b?q=1", "/a/b"), ("/a/./b", "/a/b"), ("/a/../admin", "/admin"), ("/../x", "/x"), ("/a/b/..", "/a/"),
])
def test_path_normalization(path: str, seen: str) -> None:
    assert normalized_path(path) == seen


def test_order_and_ids() -> None:
    everything = (AuthzRule(),)
    posts = (AuthzRule(operations=(AuthzClause((AuthzMatch("request.method", ("POST",)),)),)),)
    authz = Authorizer([
        AuthzPolicy("ns[d]-policy[allow-all]", "ALLOW", everything),
        AuthzPolicy("ns[d]-policy[no-posts]", "DENY", posts),
        AuthzPolicy("ns[d]-policy[audit]", "AUDIT", everything),
    ])
    denied = authz.check(request(method="POST"))
    assert (denied.allowed, denied.details, denied.audited) == (
        False, "rbac_access_denied_matched_policy[ns[d]-policy[no-posts]-rule[0]]", "ns[d]-policy[audit]-rule[0]")
    assert authz.check(request()).allowed
    assert Authorizer([AuthzPolicy("ns[d]-policy[none]", "ALLOW")]).check(request()).policy == "none"
    assert Authorizer([AuthzPolicy("x", "AUDIT", everything)]).check(request()).allowed, "AUDIT alone denies nothing"
    custom = Authorizer([AuthzPolicy("ns[d]-policy[ext]", "CUSTOM", posts)])
    assert not custom.check(request(method="POST")).allowed, "CUSTOM fails closed on a match"
    assert custom.check(request()).allowed


def test_tcp_treats_http_only_fields_as_istio_does() -> None:
    http_only = (AuthzRule(operations=(AuthzClause((AuthzMatch("request.method", ("GET",)),)),)),)
    by_port = (AuthzRule(operations=(AuthzClause((AuthzMatch("destination.port", ("8080",)),
                                                  AuthzMatch("request.path", ("/admin",)))),)),)
    tcp = Attributes(http=False, principal=SLEEP, destination_port=8080)
    assert not Authorizer([AuthzPolicy("a", "ALLOW", http_only)]).check(tcp).allowed, "the ALLOW rule is unusable"
    assert not Authorizer([AuthzPolicy("d", "DENY", by_port)]).check(tcp).allowed, "the DENY rule ignores the path"
    assert Authorizer([AuthzPolicy("d", "DENY", by_port)]).check(
        Attributes(http=False, destination_port=9090)).allowed


def test_a_value_the_proxy_cannot_use_is_nacked() -> None:
    store = ConfigStore()
    bad = {"name": "inbound", "authz": [{"name": "p", "rules": [{"when": [{"key": "source.ip", "values": ["x/99"]}]}]}]}
    with pytest.raises(ResourceError, match=r"Inbound.authz\[0\].rules\[0\].when\[0\].values: invalid IP"):
        store.apply("type.kubelab.dev/mesh.Inbound", "v1", [bad])
    with pytest.raises(ResourceError, match="unsupported value 'MAYBE'"):
        store.apply("type.kubelab.dev/mesh.Inbound", "v1", [{"name": "inbound", "authz": [{"name": "p",
                                                                                          "action": "MAYBE"}]}])
    assert store.snapshot.authz.empty
