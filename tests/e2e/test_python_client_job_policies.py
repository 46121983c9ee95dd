"""The official ``kubernetes`` Python client on the Job policies of Kubernetes 1.29-1.33: its
models carry ``backoffLimitPerIndex``, ``maxFailedIndexes``, ``successPolicy``,
``podReplacementPolicy``, the ``FailIndex`` action and ``status.failedIndexes``/``terminating``
to kubelab and back, and a bad policy answers 422 naming the field. Runs on both stores through
``module_cluster`` (an apiserver; no controllers are needed for these calls).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubelab.testing import RunningApiServer
from tests.e2e.pyclient import NS, client, new_client


@pytest.fixture
def batch(module_cluster: RunningApiServer) -> Iterator[Any]:
    api = new_client(module_cluster)
    yield client.BatchV1Api(api)
    api.close()


@pytest.fixture
def token() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def _job(name: str, token: str, **spec: Any) -> Any:
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": name}),
        spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(name="c", image="busybox")]))
    return client.V1Job(metadata=client.V1ObjectMeta(name=name, labels={"run": token}),
                        spec=client.V1JobSpec(template=template, **spec))


def test_indexed_job_policies_round_trip(batch: Any, token: str) -> None:
    codes = client.V1PodFailurePolicyOnExitCodesRequirement(operator="In", values=[42])
    rule = client.V1PodFailurePolicyRule(action="FailIndex", on_exit_codes=codes)
    body = _job(f"{token}-idx", token, completion_mode="Indexed", completions=4, parallelism=2,
                backoff_limit_per_index=1, max_failed_indexes=2,
                pod_failure_policy=client.V1PodFailurePolicy(rules=[rule]),
                success_policy=client.V1SuccessPolicy(rules=[
                    client.V1SuccessPolicyRule(succeeded_indexes="0-2", succeeded_count=2)]))
    created = batch.create_namespaced_job(NS, body)
    spec = created.spec
    assert (spec.backoff_limit_per_index, spec.max_failed_indexes, spec.pod_replacement_policy) == (1, 2, "Failed")
    assert spec.backoff_limit == 2**31 - 1, "no global backoff limit by default beside a per-index one"
    assert spec.pod_failure_policy.rules[0].action == "FailIndex"
    assert (spec.success_policy.rules[0].succeeded_indexes, spec.success_policy.rules[0].succeeded_count) == \
        ("0-2", 2)
    batch.patch_namespaced_job_status(f"{token}-idx", NS, {"status": {"failedIndexes": "1", "terminating": 1}})
    status = batch.read_namespaced_job_status(f"{token}-idx", NS).status
    assert (status.failed_indexes, status.terminating) == ("1", 1)


def test_pod_replacement_policy_is_served(batch: Any, token: str) -> None:
    created = batch.create_namespaced_job(NS, _job(f"{token}-rep", token, pod_replacement_policy="Failed"))
    assert created.spec.pod_replacement_policy == "Failed"
    default = batch.create_namespaced_job(NS, _job(f"{token}-def", token))
    assert default.spec.pod_replacement_policy == "TerminatingOrFailed"


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param({"backoff_limit_per_index": 1}, "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed "
                 "completion mode", id="per-index-nonindexed"),
    pytest.param({"completion_mode": "Indexed", "completions": 2, "backoff_limit_per_index": 1,
                  "max_failed_indexes": 3}, "spec.maxFailedIndexes: Invalid value: 3: must be less than or equal "
                 "to completions", id="max-failed-above-completions"),
    pytest.param({"success_policy": client.V1SuccessPolicy(rules=[client.V1SuccessPolicyRule(succeeded_count=1)])},
                 "spec.successPolicy: Invalid value", id="success-nonindexed"),
    pytest.param({"pod_replacement_policy": "TerminatingOrFailed", "pod_failure_policy": client.V1PodFailurePolicy(
        rules=[client.V1PodFailurePolicyRule(action="Ignore", on_pod_conditions=[
            client.V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")])])},
        'spec.podReplacementPolicy: Unsupported value: "TerminatingOrFailed": supported values: "Failed"',
        id="replacement-with-failure-policy"),
])
def test_bad_policies_are_refused_with_422(batch: Any, token: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(NS, _job(f"{token}-bad", token, **spec))
    assert err.value.status == 422
    assert message in str(json.loads(err.value.body or "{}").get("message", ""))
