"""HorizontalPodAutoscalers served at autoscaling/v2 (storage) and autoscaling/v1 (converted)."""

from __future__ import annotations

from typing import Any

import pytest

from machinery.api.autoscaling_conversion import to_v1, to_v2
from tests.apiserver.conftest import Api

V2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
V1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"


def hpa_v1(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "maxReplicas": 5, **spec}}


def hpa_v2(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "maxReplicas": 5, **spec}}


async def test_v1_create_reads_back_at_v2_with_the_cpu_metric(api: Api) -> None:
    code, created = await api.request("POST", V1, hpa_v1(targetCPUUtilizationPercentage=50))
    assert code == 201, created
    assert created["apiVersion"] == "autoscaling/v1"
    assert created["spec"] == {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                               "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}
    assert created["status"] == {"currentReplicas": 0, "desiredReplicas": 0}
    code, v2 = await api.request("GET", f"{V2}/web")
    assert code == 200
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
    assert "annotations" not in v2["metadata"]


async def test_v1_without_target_gets_the_default_80_percent(api: Api) -> None:
    code, created = await api.request("POST", V1, hpa_v1())
    assert code == 201, created
    assert created["spec"]["targetCPUUtilizationPercentage"] == 80


async def test_v2_behavior_is_defaulted_and_kept_through_v1(api: Api) -> None:
    body = hpa_v2(behavior={"scaleDown": {"stabilizationWindowSeconds": 30}}, metrics=[
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue",
                                                                       "averageValue": "100Mi"}}}])
    code, created = await api.request("POST", V2, body)
    assert code == 201, created
    behavior = created["spec"]["behavior"]
    assert behavior["scaleDown"] == {"stabilizationWindowSeconds": 30, "selectPolicy": "Max",
                                     "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert behavior["scaleUp"]["policies"][0] == {"type": "Pods", "value": 4, "periodSeconds": 15}
    code, v1 = await api.request("GET", f"{V1}/web")
    assert code == 200
    assert "targetCPUUtilizationPercentage" not in v1["spec"]
    annotations = v1["metadata"]["annotations"]
    assert "autoscaling.alpha.kubernetes.io/behavior" in annotations
    # A v1 update (a label) must not lose what only v2 can say.
    v1["metadata"].setdefault("labels", {})["team"] = "a"
    code, updated = await api.request("PUT", f"{V1}/web", v1)
    assert code == 200, updated
    code, again = await api.request("GET", f"{V2}/web")
    assert again["spec"]["behavior"] == behavior
    assert again["spec"]["metrics"] == created["spec"]["metrics"]
    assert again["metadata"]["labels"] == {"team": "a"}
    assert "annotations" not in again["metadata"]


async def test_status_is_kept_on_spec_update_and_reset_on_create(api: Api) -> None:
    code, created = await api.request("POST", V2, hpa_v2(status={"desiredReplicas": 3}))
    assert created["status"] == {"desiredReplicas": 0}
    created["status"] = {"currentReplicas": 2, "desiredReplicas": 3}
    code, written = await api.request("PUT", f"{V2}/web/status", created)
    assert code == 200, written
    written["spec"]["maxReplicas"] = 7
    written["status"] = {"desiredReplicas": 1}
    code, updated = await api.request("PUT", f"{V2}/web", written)
    assert code == 200
    assert updated["status"] == {"currentReplicas": 2, "desiredReplicas": 3}
    code, listed = await api.request("GET", V1)
    assert listed["items"][0]["status"]["desiredReplicas"] == 3
    assert listed["items"][0]["apiVersion"] == "autoscaling/v1"


@pytest.mark.parametrize(("spec", "field", "message"), [
    pytest.param({"minReplicas": 0}, "spec.minReplicas", "must be greater than or equal to 1", id="min-zero"),
    pytest.param({"minReplicas": 6}, "spec.maxReplicas", "must be greater than or equal to `minReplicas`",
                 id="max-below-min"),
    pytest.param({"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}},
                 "spec.behavior.scaleUp.policies[0].value", "must be greater than zero", id="policy-value"),
    pytest.param({"behavior": {"scaleDown": {"selectPolicy": "Sometimes"}}},
                 "spec.behavior.scaleDown.selectPolicy", "Unsupported value", id="select-policy"),
    pytest.param({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]},
                 "spec.metrics[0].resource.target.averageUtilization", "Required value", id="no-utilization"),
])
async def test_invalid_hpas_are_refused_with_kubernetes_fields(api: Api, spec: dict[str, Any], field: str,
                                                              message: str) -> None:
    code, status = await api.request("POST", V2, hpa_v2(**spec))
    assert code == 422, status
    causes = {c["field"]: c["message"] for c in status["details"]["causes"]}
    assert field in causes and message in causes[field]


async def test_table_shows_reference_and_targets(api: Api) -> None:
    await api.request("POST", V1, hpa_v1(targetCPUUtilizationPercentage=50))
    code, table = await api.request("GET", V2, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert code == 200
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
    assert table["rows"][0]["cells"][:6] == ["web", "Deployment/web", "cpu: <unknown>/50%", "1", 5, 0]


def test_round_trip_keeps_current_metrics_and_conditions() -> None:
    stored = hpa_v2(metrics=[
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
    ])
    stored["status"] = {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40, "averageValue": "40m"}}},
        {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "10Mi"}}},
    ], "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}
    v1 = to_v1(stored)
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert v1["status"]["currentCPUUtilizationPercentage"] == 40
    back = to_v2(v1)
    assert back["spec"]["metrics"] == stored["spec"]["metrics"]
    assert back["status"]["conditions"] == stored["status"]["conditions"]
    assert back["status"]["currentMetrics"][1] == stored["status"]["currentMetrics"][1]
