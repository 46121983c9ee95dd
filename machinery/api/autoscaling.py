"""autoscaling/v2 and autoscaling/v1 HorizontalPodAutoscaler.

Registered as kinds in ``machinery.api``; OpenAPI names under ``io.k8s.api.autoscaling.v2`` and
``io.k8s.api.autoscaling.v1``. v2 is the storage version; v1 objects are converted by
:mod:`machinery.api.autoscaling_conversion`. The HPA controller reads objects as plain dicts;
these models only check and clean input. Defaults and field rules live in
:mod:`machinery.api.defaults_autoscaling`.
"""

from typing import ClassVar

from pydantic import Field

from machinery.api.base import Int32, Int64, K8sModel, Quantity, Time, merge_key
from machinery.api.meta import LabelSelector, ObjectMeta


class AutoscalingModel(K8sModel):
    """Base of the autoscaling/v2 types."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.autoscaling.v2"


class AutoscalingV1Model(K8sModel):
    """Base of the autoscaling/v1 types (class names end in ``V1``; definitions do not)."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.autoscaling.v1"


class CrossVersionObjectReference(AutoscalingModel):
    """The scaled object: kind, name and apiVersion in the HPA's namespace."""

    k8s_required: ClassVar[tuple[str, ...]] = ("kind", "name")
    kind: str | None = None
    name: str | None = None
    apiVersion: str | None = None


class MetricTarget(AutoscalingModel):
    """The wanted value: ``Utilization`` (percent of requests), ``Value`` or ``AverageValue``."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type",)
    type: str | None = None
    value: Quantity | None = None
    averageValue: Quantity | None = None
    averageUtilization: Int32 | None = None


class MetricValueStatus(AutoscalingModel):
    """The current value of a metric."""

    value: Quantity | None = None
    averageValue: Quantity | None = None
    averageUtilization: Int32 | None = None


class MetricIdentifier(AutoscalingModel):
    """A custom or external metric by name (and selector)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name",)
    name: str | None = None
    selector: LabelSelector | None = None


class ResourceMetricSource(AutoscalingModel):
    """A resource (cpu, memory) of the target's pods, averaged over them."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name", "target")
    name: str | None = None
    target: MetricTarget | None = None


class ContainerResourceMetricSource(AutoscalingModel):
    """A resource of one named container in each of the target's pods."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name", "target", "container")
    name: str | None = None
    target: MetricTarget | None = None
    container: str | None = None


class PodsMetricSource(AutoscalingModel):
    """A custom metric of each pod, averaged."""

    k8s_required: ClassVar[tuple[str, ...]] = ("metric", "target")
    metric: MetricIdentifier | None = None
    target: MetricTarget | None = None


class ObjectMetricSource(AutoscalingModel):
    """A custom metric of one object in the namespace."""

    k8s_required: ClassVar[tuple[str, ...]] = ("describedObject", "target", "metric")
    describedObject: CrossVersionObjectReference | None = None
    target: MetricTarget | None = None
    metric: MetricIdentifier | None = None


class ExternalMetricSource(AutoscalingModel):
    """A metric from outside the cluster."""

    k8s_required: ClassVar[tuple[str, ...]] = ("metric", "target")
    metric: MetricIdentifier | None = None
    target: MetricTarget | None = None


class MetricSpec(AutoscalingModel):
    """One metric to scale on; ``type`` names the source that is set."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type",)
    type: str | None = None
    object: ObjectMetricSource | None = None
    pods: PodsMetricSource | None = None
    resource: ResourceMetricSource | None = None
    containerResource: ContainerResourceMetricSource | None = None
    external: ExternalMetricSource | None = None


class HPAScalingPolicy(AutoscalingModel):
    """At most ``value`` pods (``Pods``) or percent (``Percent``) per ``periodSeconds``."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "value", "periodSeconds")
    type: str | None = None
    value: Int32 | None = None
    periodSeconds: Int32 | None = None


class HPAScalingRules(AutoscalingModel):
    """Policies and stabilization window of one direction."""

    stabilizationWindowSeconds: Int32 | None = None
    selectPolicy: str | None = None
    policies: list[HPAScalingPolicy] | None = Field(None, json_schema_extra=merge_key(None, "atomic"))
    tolerance: Quantity | None = None


class HorizontalPodAutoscalerBehavior(AutoscalingModel):
    """How fast to scale up and down."""

    scaleUp: HPAScalingRules | None = None
    scaleDown: HPAScalingRules | None = None


class HorizontalPodAutoscalerSpec(AutoscalingModel):
    """The target, the replica bounds, the metrics and the behavior."""

    k8s_required: ClassVar[tuple[str, ...]] = ("scaleTargetRef", "maxReplicas")
    scaleTargetRef: CrossVersionObjectReference | None = None
    minReplicas: Int32 | None = None
    maxReplicas: Int32 | None = None
    metrics: list[MetricSpec] | None = Field(None, json_schema_extra=merge_key(None, "atomic"))
    behavior: HorizontalPodAutoscalerBehavior | None = None


class ResourceMetricStatus(AutoscalingModel):
    """The current value of a resource metric."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name", "current")
    name: str | None = None
    current: MetricValueStatus | None = None


class ContainerResourceMetricStatus(AutoscalingModel):
    """The current value of a container resource metric."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name", "current", "container")
    name: str | None = None
    current: MetricValueStatus | None = None
    container: str | None = None


class PodsMetricStatus(AutoscalingModel):
    """The current value of a pods metric."""

    k8s_required: ClassVar[tuple[str, ...]] = ("metric", "current")
    metric: MetricIdentifier | None = None
    current: MetricValueStatus | None = None


class ObjectMetricStatus(AutoscalingModel):
    """The current value of an object metric."""

    k8s_required: ClassVar[tuple[str, ...]] = ("metric", "current", "describedObject")
    metric: MetricIdentifier | None = None
    current: MetricValueStatus | None = None
    describedObject: CrossVersionObjectReference | None = None


class ExternalMetricStatus(AutoscalingModel):
    """The current value of an external metric."""

    k8s_required: ClassVar[tuple[str, ...]] = ("metric", "current")
    metric: MetricIdentifier | None = None
    current: MetricValueStatus | None = None


class MetricStatus(AutoscalingModel):
    """The last read value of one metric."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type",)
    type: str | None = None
    object: ObjectMetricStatus | None = None
    pods: PodsMetricStatus | None = None
    resource: ResourceMetricStatus | None = None
    containerResource: ContainerResourceMetricStatus | None = None
    external: ExternalMetricStatus | None = None


class HorizontalPodAutoscalerCondition(AutoscalingModel):
    """AbleToScale, ScalingActive or ScalingLimited."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class HorizontalPodAutoscalerStatus(AutoscalingModel):
    """What the autoscaler last saw and did."""

    k8s_required: ClassVar[tuple[str, ...]] = ("desiredReplicas",)
    observedGeneration: Int64 | None = None
    lastScaleTime: Time | None = None
    currentReplicas: Int32 | None = None
    desiredReplicas: Int32 | None = None
    currentMetrics: list[MetricStatus] | None = Field(None, json_schema_extra=merge_key(None, "atomic"))
    conditions: list[HorizontalPodAutoscalerCondition] | None = Field(
        None, json_schema_extra=merge_key("type"))


class HorizontalPodAutoscaler(AutoscalingModel):
    """Scales a workload's replicas to keep its metrics at their targets."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("autoscaling", "v2", "HorizontalPodAutoscaler")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: HorizontalPodAutoscalerSpec | None = None
    status: HorizontalPodAutoscalerStatus | None = None


class CrossVersionObjectReferenceV1(AutoscalingV1Model):
    """The scaled object (autoscaling/v1)."""

    k8s_definition: ClassVar[str] = "CrossVersionObjectReference"
    k8s_required: ClassVar[tuple[str, ...]] = ("kind", "name")
    kind: str | None = None
    name: str | None = None
    apiVersion: str | None = None


class HorizontalPodAutoscalerSpecV1(AutoscalingV1Model):
    """The target, the replica bounds and the CPU target (autoscaling/v1)."""

    k8s_definition: ClassVar[str] = "HorizontalPodAutoscalerSpec"
    k8s_required: ClassVar[tuple[str, ...]] = ("scaleTargetRef", "maxReplicas")
    scaleTargetRef: CrossVersionObjectReferenceV1 | None = None
    minReplicas: Int32 | None = None
    maxReplicas: Int32 | None = None
    targetCPUUtilizationPercentage: Int32 | None = None


class HorizontalPodAutoscalerStatusV1(AutoscalingV1Model):
    """What the autoscaler last saw and did (autoscaling/v1)."""

    k8s_definition: ClassVar[str] = "HorizontalPodAutoscalerStatus"
    k8s_required: ClassVar[tuple[str, ...]] = ("currentReplicas", "desiredReplicas")
    observedGeneration: Int64 | None = None
    lastScaleTime: Time | None = None
    currentReplicas: Int32 | None = None
    desiredReplicas: Int32 | None = None
    currentCPUUtilizationPercentage: Int32 | None = None


class HorizontalPodAutoscalerV1(AutoscalingV1Model):
    """Scales a workload on its CPU utilization (autoscaling/v1)."""

    k8s_definition: ClassVar[str] = "HorizontalPodAutoscaler"
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("autoscaling", "v1", "HorizontalPodAutoscaler")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: HorizontalPodAutoscalerSpecV1 | None = None
    status: HorizontalPodAutoscalerStatusV1 | None = None
