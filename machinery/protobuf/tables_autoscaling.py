"""Protobuf field tables for autoscaling/v2 and autoscaling/v1 HorizontalPodAutoscaler.

kubectl >= 1.32 sends ``kubectl autoscale`` as protobuf. Field numbers and names are Kubernetes'
own (api ``autoscaling/v2`` and ``autoscaling/v1`` ``generated.proto``); ``keep=True`` marks
pointer fields and fields without ``omitempty``. v1 messages carry a ``V1`` suffix where their
fields differ from v2's. Read by :mod:`machinery.protobuf.schema`.
"""

from __future__ import annotations

from machinery.protobuf.fields import MessageTable, i, msg, qty, s, time

_VALUE_STATUS = "MetricValueStatus"

AUTOSCALING_MESSAGES: dict[str, MessageTable] = {
    "HorizontalPodAutoscaler": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "HorizontalPodAutoscalerSpec"),
                                3: msg("status", "HorizontalPodAutoscalerStatus")},
    "HorizontalPodAutoscalerSpec": {1: msg("scaleTargetRef", "CrossVersionObjectReference"),
                                    2: i("minReplicas", keep=True), 3: i("maxReplicas", keep=True),
                                    4: msg("metrics", "MetricSpec", repeated=True),
                                    5: msg("behavior", "HorizontalPodAutoscalerBehavior")},
    "CrossVersionObjectReference": {1: s("kind", keep=True), 2: s("name", keep=True), 3: s("apiVersion")},
    "MetricSpec": {1: s("type", keep=True), 2: msg("object", "ObjectMetricSource"),
                   3: msg("pods", "PodsMetricSource"), 4: msg("resource", "ResourceMetricSource"),
                   5: msg("external", "ExternalMetricSource"),
                   7: msg("containerResource", "ContainerResourceMetricSource")},
    "MetricTarget": {1: s("type", keep=True), 2: qty("value"), 3: qty("averageValue"),
                     4: i("averageUtilization", keep=True)},
    "MetricIdentifier": {1: s("name", keep=True), 2: msg("selector", "LabelSelector")},
    "ResourceMetricSource": {1: s("name", keep=True), 2: msg("target", "MetricTarget")},
    "ContainerResourceMetricSource": {1: s("name", keep=True), 2: msg("target", "MetricTarget"),
                                      3: s("container", keep=True)},
    "PodsMetricSource": {1: msg("metric", "MetricIdentifier"), 2: msg("target", "MetricTarget")},
    "ObjectMetricSource": {1: msg("describedObject", "CrossVersionObjectReference"),
                           2: msg("target", "MetricTarget"), 3: msg("metric", "MetricIdentifier")},
    "ExternalMetricSource": {1: msg("metric", "MetricIdentifier"), 2: msg("target", "MetricTarget")},
    "HorizontalPodAutoscalerBehavior": {1: msg("scaleUp", "HPAScalingRules"), 2: msg("scaleDown", "HPAScalingRules")},
    "HPAScalingRules": {1: s("selectPolicy", keep=True), 2: msg("policies", "HPAScalingPolicy", repeated=True),
                        3: i("stabilizationWindowSeconds", keep=True), 4: qty("tolerance")},
    "HPAScalingPolicy": {1: s("type", keep=True), 2: i("value", keep=True), 3: i("periodSeconds", keep=True)},
    "HorizontalPodAutoscalerStatus": {1: i("observedGeneration", keep=True), 2: time("lastScaleTime"),
                                      3: i("currentReplicas"), 4: i("desiredReplicas", keep=True),
                                      5: msg("currentMetrics", "MetricStatus", repeated=True),
                                      6: msg("conditions", "HorizontalPodAutoscalerCondition", repeated=True)},
    "MetricStatus": {1: s("type", keep=True), 2: msg("object", "ObjectMetricStatus"),
                     3: msg("pods", "PodsMetricStatus"), 4: msg("resource", "ResourceMetricStatus"),
                     5: msg("external", "ExternalMetricStatus"),
                     7: msg("containerResource", "ContainerResourceMetricStatus")},
    _VALUE_STATUS: {1: qty("value"), 2: qty("averageValue"), 3: i("averageUtilization", keep=True)},
    "ResourceMetricStatus": {1: s("name", keep=True), 2: msg("current", _VALUE_STATUS)},
    "ContainerResourceMetricStatus": {1: s("name", keep=True), 2: msg("current", _VALUE_STATUS),
                                      3: s("container", keep=True)},
    "PodsMetricStatus": {1: msg("metric", "MetricIdentifier"), 2: msg("current", _VALUE_STATUS)},
    "ObjectMetricStatus": {1: msg("metric", "MetricIdentifier"), 2: msg("current", _VALUE_STATUS),
                           3: msg("describedObject", "CrossVersionObjectReference")},
    "ExternalMetricStatus": {1: msg("metric", "MetricIdentifier"), 2: msg("current", _VALUE_STATUS)},
    "HorizontalPodAutoscalerCondition": {1: s("type", keep=True), 2: s("status", keep=True),
                                         3: time("lastTransitionTime"), 4: s("reason"), 5: s("message")},
    # autoscaling/v1
    "HorizontalPodAutoscalerV1": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "HorizontalPodAutoscalerSpecV1"),
                                  3: msg("status", "HorizontalPodAutoscalerStatusV1")},
    "HorizontalPodAutoscalerSpecV1": {1: msg("scaleTargetRef", "CrossVersionObjectReference"),
                                      2: i("minReplicas", keep=True), 3: i("maxReplicas", keep=True),
                                      4: i("targetCPUUtilizationPercentage", keep=True)},
    "HorizontalPodAutoscalerStatusV1": {1: i("observedGeneration", keep=True), 2: time("lastScaleTime"),
                                        3: i("currentReplicas", keep=True), 4: i("desiredReplicas", keep=True),
                                        5: i("currentCPUUtilizationPercentage", keep=True)},
}
