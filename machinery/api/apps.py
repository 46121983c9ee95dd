"""apps/v1 Deployment and ReplicaSet (spec, strategy, status with conditions).

Registered as kinds in ``machinery.api``; OpenAPI names under ``io.k8s.api.apps.v1``.
"""

from typing import ClassVar

from pydantic import Field

from machinery.api.base import Int32, Int64, IntOrString, K8sModel, Time, merge_key
from machinery.api.meta import LabelSelector, ObjectMeta
from machinery.api.pod import PodTemplateSpec


class AppsModel(K8sModel):
    """Base of the apps/v1 types."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.apps.v1"


class RollingUpdateDeployment(AppsModel):
    """How many pods may be unavailable or extra during a rolling update."""

    maxUnavailable: IntOrString | None = None
    maxSurge: IntOrString | None = None


class DeploymentStrategy(AppsModel):
    """How old pods are replaced: Recreate or RollingUpdate."""

    type: str | None = None
    rollingUpdate: RollingUpdateDeployment | None = None


class DeploymentSpec(AppsModel):
    """The desired state of a deployment."""

    k8s_required: ClassVar[tuple[str, ...]] = ("selector", "template")
    replicas: Int32 | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec | None = None
    strategy: DeploymentStrategy | None = Field(None, json_schema_extra={"x-kubernetes-patch-strategy": "retainKeys"})
    minReadySeconds: Int32 | None = None
    revisionHistoryLimit: Int32 | None = None
    paused: bool | None = None
    progressDeadlineSeconds: Int32 | None = None


class DeploymentCondition(AppsModel):
    """A condition of a deployment (Available, Progressing, ReplicaFailure)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastUpdateTime: Time | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class DeploymentStatus(AppsModel):
    """The observed state of a deployment."""

    observedGeneration: Int64 | None = None
    replicas: Int32 | None = None
    updatedReplicas: Int32 | None = None
    readyReplicas: Int32 | None = None
    availableReplicas: Int32 | None = None
    unavailableReplicas: Int32 | None = None
    terminatingReplicas: Int32 | None = None
    conditions: list[DeploymentCondition] | None = Field(None, json_schema_extra=merge_key("type"))
    collisionCount: Int32 | None = None


class Deployment(AppsModel):
    """Declarative updates for pods through ReplicaSets."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("apps", "v1", "Deployment")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: DeploymentSpec | None = None
    status: DeploymentStatus | None = None


class ReplicaSetSpec(AppsModel):
    """The desired number of pods and their template."""

    k8s_required: ClassVar[tuple[str, ...]] = ("selector",)
    replicas: Int32 | None = None
    minReadySeconds: Int32 | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec | None = None


class ReplicaSetCondition(AppsModel):
    """A condition of a replica set (ReplicaFailure)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class ReplicaSetStatus(AppsModel):
    """The observed state of a replica set."""

    replicas: Int32 | None = None
    fullyLabeledReplicas: Int32 | None = None
    readyReplicas: Int32 | None = None
    availableReplicas: Int32 | None = None
    terminatingReplicas: Int32 | None = None
    observedGeneration: Int64 | None = None
    conditions: list[ReplicaSetCondition] | None = Field(None, json_schema_extra=merge_key("type"))


class ReplicaSet(AppsModel):
    """Keeps a number of identical pods running."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("apps", "v1", "ReplicaSet")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: ReplicaSetSpec | None = None
    status: ReplicaSetStatus | None = None
