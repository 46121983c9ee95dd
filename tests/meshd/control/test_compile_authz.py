"""AuthorizationPolicy compilation (scope, flattening, Istio's handling of bad values) and its validation."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.api.resources import INBOUND, AuthzClause, AuthzMatch, AuthzPolicy, AuthzRule, Inbound, decode
from meshd.control.compile.authz import compile_policy
from meshd.control.compile.proxy import compile_proxy
from meshd.control.compile.scope import ProxyNode
from meshd.control.istio_validation import validate
from meshd.control.model import MeshSnapshot
from tests.meshd.control.test_compile import BASE, istio

HTTPBIN = ProxyNode(namespace="foo", pod="httpbin-1", labels={"app": "httpbin", "version": "v1"})


def ap(name: str, spec: dict[str, Any], ns: str = "foo", created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return istio("AuthorizationPolicy", name, spec, ns, created)


def inbound_of(node: ProxyNode, *policies: dict[str, Any]) -> Inbound:
    config = compile_proxy(MeshSnapshot.build(**BASE, authorization_policies=list(policies)), node)
    return decode(Inbound, config.resources[INBOUND][0])


@pytest.mark.parametrize(("policy", "applies"), [
    pytest.param(ap("ns-wide", {}), True, id="namespace-wide"),
    pytest.param(ap("mine", {"selector": {"matchLabels": {"app": "httpbin"}}}), True, id="selector-matches"),
    pytest.param(ap("theirs", {"selector": {"matchLabels": {"app": "reviews"}}}), False, id="selector-misses"),
    pytest.param(ap("mesh", {}, ns="istio-system"), True, id="root-namespace-mesh-wide"),
    pytest.param(ap("mesh-sel", {"selector": {"matchLabels": {"version": "v1"}}}, ns="istio-system"), True,
                 id="root-namespace-selector-any-namespace"),
    pytest.param(ap("elsewhere", {}, ns="bar"), False, id="other-namespace"),
    pytest.param(ap("waypoint", {"targetRefs": [{"kind": "Service", "name": "httpbin"}]}), False,
                 id="targetRefs-not-for-sidecars"),
])
def test_scope(policy: dict[str, Any], applies: bool) -> None:
    names = [p.name for p in inbound_of(HTTPBIN, policy).authz]
    key = f"ns[{policy['metadata']['namespace']}]-policy[{policy['metadata']['name']}]"
    assert names == ([key] if applies else [])


def test_root_namespace_policies_come_first_each_oldest_first() -> None:
    policies = [ap("b-new", {}, created="2026-03-01T00:00:00Z"), ap("a-old", {}, created="2026-02-01T00:00:00Z"),
                ap("mesh", {}, ns="istio-system", created="2026-04-01T00:00:00Z")]
    assert [p.name for p in inbound_of(HTTPBIN, *policies).authz] == [
        "ns[istio-system]-policy[mesh]", "ns[foo]-policy[a-old]", "ns[foo]-policy[b-new]"]


def test_rule_flattening() -> None:
    compiled = compile_policy(ap("p", {"action": "DENY", "rules": [{
        "from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"], "notNamespaces": ["bar"]}},
                 {"source": {"serviceAccounts": ["sleep", "bar/curl"], "ipBlocks": ["10.0.0.0/8"]}}],
        "to": [{"operation": {"methods": ["GET"], "notPaths": ["/health*"], "ports": ["8080"]}}],
        "when": [{"key": "request.headers[X-Token]", "values": ["abc*"]}]}]}))
    assert compiled == AuthzPolicy(name="ns[foo]-policy[p]", action="DENY", rules=(AuthzRule(
        sources=(AuthzClause((AuthzMatch("source.principal", ("cluster.local/ns/foo/sa/sleep",)),
                              AuthzMatch("source.namespace", (), ("bar",)))),
                 AuthzClause((AuthzMatch("source.serviceaccount", ("foo/sleep", "bar/curl")),
                              AuthzMatch("source.ip", ("10.0.0.0/8",))))),
        operations=(AuthzClause((AuthzMatch("destination.port", ("8080",)), AuthzMatch("request.method", ("GET",)),
                                 AuthzMatch("request.path", (), ("/health*",)))),),
        when=(AuthzMatch("request.headers[x-token]", ("abc*",)),)),))


@pytest.mark.parametrize(("spec", "rules"), [
    pytest.param({}, (), id="empty-spec-allows-nothing"),
    pytest.param({"rules": [{}]}, (AuthzRule(),), id="empty-rule-matches-all"),
    pytest.param({"rules": [{"from": [{"source": {"ipBlocks": ["not-an-ip"]}}]}, {}]}, (AuthzRule(),),
                 id="allow-drops-a-rule-with-a-bad-value"),
    pytest.param({"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["bad", "10.1.0.0/16"]}}]}]},
                 (AuthzRule(sources=(AuthzClause((AuthzMatch("source.ip", ("10.1.0.0/16",)),)),)),),
                 id="deny-drops-only-the-bad-value"),
])
def test_rules_and_bad_values(spec: dict[str, Any], rules: tuple[AuthzRule, ...]) -> None:
    assert compile_policy(ap("p", spec)).rules == rules


def test_actions() -> None:
    assert compile_policy(ap("p", {})).action == "ALLOW"
    assert compile_policy(ap("p", {"action": "AUDIT", "rules": [{}]})).action == "AUDIT"
    assert compile_policy(ap("p", {"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]})).action == "CUSTOM"


# --- validation ----------------------------------------------------------------------------------

def _errors(spec: dict[str, Any]) -> list[str]:
    return validate("AuthorizationPolicy", ap("p", spec))[0]


def _warnings(spec: dict[str, Any]) -> list[str]:
    return validate("AuthorizationPolicy", ap("p", spec))[1]


@pytest.mark.parametrize("spec", [
    pytest.param({}, id="deny-all"),
    pytest.param({"rules": [{}]}, id="allow-all"),
    pytest.param({"selector": {"matchLabels": {"app": "httpbin"}}, "action": "ALLOW", "rules": [{
        "from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"], "notIpBlocks": ["10.0.0.1"]}}],
        "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"], "ports": ["8000"], "notHosts": ["x*"]}}],
        "when": [{"key": "request.headers[version]", "values": ["v1"]},
                 {"key": "source.ip", "notValues": ["10.0.0.0/8"]}]}]}, id="implemented-fields"),
    pytest.param({"action": "DENY", "rules": [{"to": [{"operation": {"ports": ["8000"], "methods": ["POST"]}}]}]},
                 id="deny-scoped-by-port"),
])
def test_valid_policies_pass_without_warnings(spec: dict[str, Any]) -> None:
    assert validate("AuthorizationPolicy", ap("p", spec)) == ([], [])


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param({"action": "DENY"}, "DENY action without `rules` is meaningless", id="deny-without-rules"),
    pytest.param({"action": "BLOCK", "rules": [{}]}, "spec.action: unknown value 'BLOCK'", id="unknown-action"),
    pytest.param({"action": "CUSTOM", "rules": [{}]}, "`provider.name` must not be empty", id="custom-no-provider"),
    pytest.param({"provider": {"name": "x"}, "rules": [{}]}, "`provider` must not be with non CUSTOM action",
                 id="provider-with-allow"),
    pytest.param({"selector": {"matchLabels": {"a": "b"}}, "targetRefs": [{"kind": "Service", "name": "x"}]},
                 "only one of targetRefs or workloadSelector can be set", id="selector-and-targetRefs"),
    pytest.param({"rules": [{"from": [{"source": {}}]}]}, "`from.source` must not be empty, found at rule 0",
                 id="empty-source"),
    pytest.param({"rules": [{"to": [{"operation": {}}]}]}, "`to.operation` must not be empty, found at rule 0",
                 id="empty-operation"),
    pytest.param({"rules": [{"from": [{"source": {"ipBlocks": ["1.2.3.300"]}}]}]},
                 "invalid IP address or CIDR range: 1.2.3.300", id="bad-ip"),
    pytest.param({"rules": [{"to": [{"operation": {"ports": ["70000"]}}]}]}, "invalid port 70000", id="bad-port"),
    pytest.param({"rules": [{"from": [{"source": {"principals": ["a"], "serviceAccounts": ["b"]}}]}]},
                 "cannot set serviceAccounts with namespaces or principals", id="sa-with-principals"),
    pytest.param({"rules": [{"when": [{"key": "source.color", "values": ["red"]}]}]},
                 "invalid `value` for `key` source.color: unknown attribute", id="unknown-key"),
    pytest.param({"rules": [{"when": [{"key": "source.ip"}]}]},
                 "at least one of `values` or `notValues` must be set for key source.ip", id="no-values"),
])
def test_refused_as_istio_refuses(spec: dict[str, Any], message: str) -> None:
    errors = _errors(spec)
    assert any(message in e for e in errors), errors
    assert all(e.startswith("invalid policy p.foo: ") for e in errors)


@pytest.mark.parametrize(("spec", "fragment"), [
    pytest.param({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]},
                 "CUSTOM needs an external authorizer", id="custom"),
    pytest.param({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}, "requestPrincipals need a "
                 "verified JWT", id="request-principals"),
    pytest.param({"rules": [{"when": [{"key": "request.auth.claims[iss]", "values": ["x"]}]}]},
                 "request.auth.claims[iss] is accepted but not implemented", id="jwt-claims"),
    pytest.param({"rules": [{"when": [{"key": "connection.sni", "values": ["x"]}]}]},
                 "connection.sni is accepted but not implemented", id="sni"),
    pytest.param({"targetRefs": [{"kind": "Service", "name": "x"}]}, "targetRef(s) is accepted but not implemented",
                 id="targetRefs"),
    pytest.param({"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]},
                 "will deny all traffic to TCP ports under its scope", id="deny-http-only"),
    pytest.param({"rules": [{"from": [{"source": {"principals": ["a"], "trustDomains": ["td"]}}]}]},
                 "spec.rules[0].from[0].source.trustDomains is accepted but not implemented", id="unknown-field"),
])
def test_warnings_for_what_kubelab_does_not_do(spec: dict[str, Any], fragment: str) -> None:
    warnings = _warnings(spec)
    assert any(fragment in w for w in warnings), warnings
