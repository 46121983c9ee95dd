"""Rule matching and covering, table-driven from Kubernetes' RBAC semantics."""

from __future__ import annotations

import pytest

from apiserver.authz import Attributes
from apiserver.rbac.rules import PolicyRule, compact, compact_string, covers


def split(s: str) -> tuple[str, ...]:
    return tuple(s.split(",")) if s else ()


def r(verbs: str, groups: str = "", resources: str = "", names: str = "", urls: str = "") -> PolicyRule:
    return PolicyRule(split(verbs), tuple(groups.split(",")) if resources else (), split(resources), split(names),
                      split(urls))


@pytest.mark.parametrize(("rule", "attributes", "allowed"), [
    pytest.param(r("get", "", "pods"), Attributes("get", "pods", namespace="ns"), True, id="exact"),
    pytest.param(r("get", "", "pods"), Attributes("list", "pods"), False, id="other-verb"),
    pytest.param(r("*", "", "pods"), Attributes("delete", "pods"), True, id="verb-star"),
    pytest.param(r("get", "apps", "deployments"), Attributes("get", "deployments"), False, id="other-group"),
    pytest.param(r("get", "*", "deployments"), Attributes("get", "deployments", api_group="apps"), True,
                 id="group-star"),
    pytest.param(r("get", "", "*"), Attributes("get", "secrets"), True, id="resource-star"),
    pytest.param(r("get", "", "*"), Attributes("get", "pods", subresource="log"), True, id="star-covers-sub"),
    pytest.param(r("get", "", "pods"), Attributes("get", "pods", subresource="log"), False,
                 id="resource-not-subresource"),
    pytest.param(r("get", "", "pods/log"), Attributes("get", "pods", subresource="log"), True, id="subresource"),
    pytest.param(r("get", "", "*/log"), Attributes("get", "pods", subresource="log"), True, id="star-slash-sub"),
    pytest.param(r("get", "", "*/log"), Attributes("get", "pods"), False, id="star-slash-sub-not-main"),
    pytest.param(r("get", "", "pods/*"), Attributes("get", "pods", subresource="log"), False,
                 id="resource-slash-star-is-literal"),
    pytest.param(r("get", "", "pods", "a,b"), Attributes("get", "pods", name="b"), True, id="name-listed"),
    pytest.param(r("get", "", "pods", "a,b"), Attributes("get", "pods", name="c"), False, id="name-unlisted"),
    pytest.param(r("list", "", "pods", "a"), Attributes("list", "pods"), False, id="names-deny-collection"),
    pytest.param(r("get", urls="/healthz"), Attributes("get", path="/healthz"), True, id="url-exact"),
    pytest.param(r("get", urls="/healthz"), Attributes("get", path="/healthz/etcd"), False, id="url-not-prefix"),
    pytest.param(r("get", urls="/apis/*"), Attributes("get", path="/apis/apps/v1"), True, id="url-prefix-star"),
    pytest.param(r("get", urls="*"), Attributes("get", path="/metrics"), True, id="url-star"),
    pytest.param(r("get", urls="*"), Attributes("get", "pods"), False, id="url-rule-not-resources"),
    pytest.param(r("get", "", "pods"), Attributes("get", path="/api"), False, id="resource-rule-not-urls"),
])
def test_rule_allows(rule: PolicyRule, attributes: Attributes, allowed: bool) -> None:
    assert rule.allows(attributes) is allowed


@pytest.mark.parametrize(("owner", "servant", "ok"), [
    pytest.param([r("*", "*", "*")], [r("get,list", "apps", "deployments")], True, id="admin-covers"),
    pytest.param([r("get", "", "pods")], [r("get,list", "", "pods")], False, id="missing-verb"),
    pytest.param([r("get", "", "pods", "a")], [r("get", "", "pods")], False, id="named-owner-not-all"),
    pytest.param([r("get", "", "pods")], [r("get", "", "pods", "a")], True, id="unnamed-covers-named"),
    pytest.param([r("get", "", "*/status")], [r("get", "", "pods/status")], True, id="star-sub-covers"),
    pytest.param([r("get", "", "pods")], [r("get", "", "pods/status")], False, id="main-not-sub"),
    pytest.param([r("get", urls="/apis/*")], [r("get", urls="/apis/apps")], True, id="url-prefix-covers"),
    pytest.param([r("get", urls="/apis/apps")], [r("get", urls="/apis/*")], False, id="url-narrow"),
])
def test_covers(owner: list[PolicyRule], servant: list[PolicyRule], ok: bool) -> None:
    assert covers(owner, servant)[0] is ok


def test_missing_rights_are_listed_compactly_as_kubernetes() -> None:
    ok, missing = covers([r("get", "", "pods")], [r("get,list,watch", "", "pods"), r("get", "", "pods", "x")])
    assert not ok
    assert [compact_string(rule) for rule in compact(missing)] == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["list" "watch"]}']
    ok, missing = covers([], [r("get", urls="/metrics"), r("get", "", "secrets", "s")])
    assert sorted(compact_string(rule) for rule in compact(missing)) == [
        '{APIGroups:[""], Resources:["secrets"], ResourceNames:["s"], Verbs:["get"]}',
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}']


def test_rule_round_trips_through_json() -> None:
    rule = PolicyRule.from_api({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]})
    assert rule.to_api() == {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}
    assert PolicyRule.from_api({"verbs": "get"}).verbs == ()
