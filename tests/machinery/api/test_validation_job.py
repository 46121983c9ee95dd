"""Validation of a Job's per-index backoff, success policy and pod replacement policy, with
Kubernetes' field paths and messages; the index-list parser behind ``succeededIndexes``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from machinery import api
from machinery.api.defaults_workloads import generate_job_selector
from machinery.api.validation_job import count_indexes
from machinery.errors import InvalidError

Obj = dict[str, Any]

TEMPLATE: Obj = {"metadata": {"labels": {"app": "x"}},
                 "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
INDEXED: Obj = {"completionMode": "Indexed", "completions": 3, "parallelism": 3}
FAIL_INDEX = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]}


def _job(**spec: Any) -> Obj:
    body = {"metadata": {"name": "j", "namespace": "default"}, "spec": {"template": copy.deepcopy(TEMPLATE), **spec}}
    obj, _ = api.prepare(body, api_version="batch/v1", kind="Job")
    obj["metadata"]["uid"] = "0f4e2a9c-0000-4000-8000-000000000001"
    generate_job_selector(obj)
    return obj


def _errors(obj: Obj, old: Obj | None = None) -> str:
    try:
        api.validate(obj, old=old)
    except InvalidError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param({"backoffLimitPerIndex": 1}, "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed "
                 "completion mode", id="per-index-nonindexed"),
    pytest.param({"backoffLimitPerIndex": 1, "maxFailedIndexes": 1}, "spec.maxFailedIndexes: Invalid value: 1: "
                 "requires indexed completion mode", id="max-failed-nonindexed"),
    pytest.param({**INDEXED, "maxFailedIndexes": 1}, "spec.backoffLimitPerIndex: Required value: when "
                 "maxFailedIndexes is specified", id="max-failed-without-per-index"),
    pytest.param({**INDEXED, "backoffLimitPerIndex": 1, "maxFailedIndexes": 4}, "spec.maxFailedIndexes: Invalid "
                 "value: 4: must be less than or equal to completions", id="max-failed-above-completions"),
    pytest.param({**INDEXED, "backoffLimitPerIndex": -1}, "spec.backoffLimitPerIndex: Invalid value: -1: must be "
                 "greater than or equal to 0", id="per-index-negative"),
    pytest.param({**INDEXED, "podFailurePolicy": FAIL_INDEX}, 'spec.podFailurePolicy.rules[0].action: Invalid '
                 'value: "FailIndex": requires the backoffLimitPerIndex to be set', id="fail-index-without-per-index"),
    pytest.param({"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [
        {"type": "DisruptionTarget"}]}]}, "podReplacementPolicy": "TerminatingOrFailed"},
        'spec.podReplacementPolicy: Unsupported value: "TerminatingOrFailed": supported values: "Failed"',
        id="replacement-with-failure-policy"),
    pytest.param({"podReplacementPolicy": "Never"}, 'spec.podReplacementPolicy: Unsupported value: "Never": '
                 'supported values: "Failed", "TerminatingOrFailed"', id="replacement-unknown"),
    pytest.param({"successPolicy": {"rules": [{"succeededCount": 1}]}}, "spec.successPolicy: Invalid value: "
                 '{"rules":[{"succeededCount":1}]}: requires indexed completion mode', id="success-nonindexed"),
    pytest.param({**INDEXED, "successPolicy": {"rules": []}}, "spec.successPolicy.rules: Required value: at least "
                 "one rules must be specified when the successPolicy is specified", id="success-no-rules"),
    pytest.param({**INDEXED, "successPolicy": {"rules": [{}]}}, "spec.successPolicy.rules[0]: Required value: at "
                 "least one of succeededCount or succeededIndexes must be specified", id="success-empty-rule"),
    pytest.param({**INDEXED, "successPolicy": {"rules": [{"succeededIndexes": "2-1"}]}},
                 'spec.successPolicy.rules[0].succeededIndexes: Invalid value: "2-1": error parsing '
                 "succeededIndexes: non-increasing order, previous: 2, current: 1", id="success-indexes-order"),
    pytest.param({**INDEXED, "successPolicy": {"rules": [{"succeededIndexes": "0,7"}]}},
                 'error parsing succeededIndexes: too large index: "7"', id="success-index-too-large"),
    pytest.param({**INDEXED, "successPolicy": {"rules": [{"succeededCount": 4}]}},
                 "spec.successPolicy.rules[0].succeededCount: Invalid value: 4: must be less than or equal to 3 "
                 "(the number of specified completions)", id="success-count-above-completions"),
    pytest.param({**INDEXED, "successPolicy": {"rules": [{"succeededIndexes": "0-1", "succeededCount": 3}]}},
                 "spec.successPolicy.rules[0].succeededCount: Invalid value: 3: must be less than or equal to 2 "
                 "(the number of indexes in the specified succeededIndexes field)", id="success-count-above-indexes"),
])
def test_invalid_job_policies_get_kubernetes_messages(spec: Obj, message: str) -> None:
    assert message in _errors(_job(**spec))


def test_valid_job_policies_pass() -> None:
    spec = {**INDEXED, "backoffLimitPerIndex": 1, "maxFailedIndexes": 1, "podFailurePolicy": FAIL_INDEX,
            "successPolicy": {"rules": [{"succeededIndexes": "0,2", "succeededCount": 1}, {"succeededCount": 3}]}}
    job = _job(**spec)
    assert _errors(job) == ""
    assert job["spec"]["podReplacementPolicy"] == "Failed", "defaulted to Failed with a pod failure policy"
    assert job["spec"]["backoffLimit"] == 2**31 - 1, "no global limit by default with a per-index one"
    assert _errors(_job(podReplacementPolicy="Failed")) == ""


def test_success_policy_is_immutable() -> None:
    old = _job(**INDEXED, successPolicy={"rules": [{"succeededCount": 1}]})
    new = copy.deepcopy(old)
    new["spec"]["successPolicy"] = {"rules": [{"succeededCount": 2}]}
    assert "spec.successPolicy: Invalid value" in _errors(new, old) and "field is immutable" in _errors(new, old)


@pytest.mark.parametrize(("text", "total", "error"), [
    pytest.param("", 0, None, id="empty"),
    pytest.param("0,2-4", 4, None, id="single-and-range"),
    pytest.param("1-2-3", 0, "at most two parts separated by '-'", id="three-parts"),
    pytest.param("a", 0, 'cannot convert string to integer for index: "a"', id="not-a-number"),
    pytest.param("3,1", 0, "non-increasing order, previous: 3, current: 1", id="unordered"),
    pytest.param("0-5", 0, 'too large index: "5"', id="too-large"),
])
def test_count_indexes(text: str, total: int, error: str | None) -> None:
    if error is None:
        assert count_indexes(text, 5) == total
    else:
        with pytest.raises(ValueError, match=error):
            count_indexes(text, 5)
