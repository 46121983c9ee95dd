"""Defaults and validation of webhook configurations, with Kubernetes' wording."""

from __future__ import annotations

from typing import Any

import pytest

from machinery import api
from machinery.errors import InvalidError

AV = "admissionregistration.k8s.io/v1"


def _hook(**overrides: Any) -> dict[str, Any]:
    hook: dict[str, Any] = {"name": "a.kubelab.test", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                            "clientConfig": {"url": "https://127.0.0.1:9443/x"},
                            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                       "resources": ["pods"]}]}
    hook.update(overrides)
    return hook


def _prepared(kind: str, *hooks: dict[str, Any]) -> dict[str, Any]:
    obj, _ = api.prepare({"metadata": {"name": "c"}, "webhooks": list(hooks)}, api_version=AV, kind=kind)
    return obj


def test_defaults() -> None:
    obj = _prepared("MutatingWebhookConfiguration",
                    _hook(clientConfig={"service": {"namespace": "ns", "name": "svc"}}))
    hook = obj["webhooks"][0]
    assert hook["failurePolicy"] == "Fail" and hook["matchPolicy"] == "Equivalent"
    assert hook["timeoutSeconds"] == 10 and hook["reinvocationPolicy"] == "Never"
    assert hook["namespaceSelector"] == {} and hook["objectSelector"] == {}
    assert hook["rules"][0]["scope"] == "*"
    assert hook["clientConfig"]["service"]["port"] == 443
    api.validate(obj)
    assert "reinvocationPolicy" not in _prepared("ValidatingWebhookConfiguration", _hook())["webhooks"][0]


@pytest.mark.parametrize(("hooks", "message"), [
    pytest.param([_hook(name="two.parts")], 'webhooks[0].name: Invalid value: "two.parts": should be a domain with '
                 "at least three segments separated by dots", id="name-segments"),
    pytest.param([_hook(), _hook()], 'webhooks[1].name: Duplicate value: "a.kubelab.test"', id="duplicate"),
    pytest.param([_hook(sideEffects=None)], "webhooks[0].sideEffects: Required value: must specify one of None, "
                 "NoneOnDryRun", id="side-effects-required"),
    pytest.param([_hook(sideEffects="Some")], 'webhooks[0].sideEffects: Unsupported value: "Some": supported '
                 'values: "None", "NoneOnDryRun"', id="side-effects-some"),
    pytest.param([_hook(admissionReviewVersions=["v1beta1"])], "webhooks[0].admissionReviewVersions: Invalid value: "
                 '[]string{"v1beta1"}: must include at least one of v1', id="review-versions"),
    pytest.param([_hook(admissionReviewVersions=None)], "webhooks[0].admissionReviewVersions: Required value: must "
                 "specify one of v1", id="review-versions-required"),
    pytest.param([_hook(clientConfig={})], "webhooks[0].clientConfig: Required value: exactly one of url or service "
                 "is required", id="client-none"),
    pytest.param([_hook(clientConfig={"url": "http://127.0.0.1/x"})], 'webhooks[0].clientConfig.url: Invalid value: '
                 "\"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]", id="http"),
    pytest.param([_hook(clientConfig={"url": "https://127.0.0.1/x?a=b"})], 'webhooks[0].clientConfig.url: Invalid '
                 'value: "a=b": query parameters are not permitted in the URL', id="query"),
    pytest.param([_hook(clientConfig={"service": {"namespace": "n", "name": "s", "path": "x"}})],
                 "webhooks[0].clientConfig.service.path: Invalid value: \"x\": must start with a '/'", id="path"),
    pytest.param([_hook(timeoutSeconds=31)], "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must "
                 "be between 1 and 30 seconds", id="timeout"),
    pytest.param([_hook(rules=[{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                                "resources": ["*/*", "pods"]}])],
                 'webhooks[0].rules[0].resources: Invalid value: []string{"*/*", "pods"}: if \'*/*\' is present, '
                 "must not specify other resources", id="double-wildcard"),
    pytest.param([_hook(matchConditions=[{"name": "c", "expression": "object.("}])],
                 "webhooks[0].matchConditions[0].expression: Invalid value", id="cel-compile"),
])
def test_invalid_configurations(hooks: list[dict[str, Any]], message: str) -> None:
    obj = _prepared("ValidatingWebhookConfiguration", *hooks)
    with pytest.raises(InvalidError) as info:
        api.validate(obj)
    assert message in info.value.message
