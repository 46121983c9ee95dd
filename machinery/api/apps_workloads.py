"""apps/v1 StatefulSet, DaemonSet and ControllerRevision.

Registered as kinds in ``machinery.api``; OpenAPI names under ``io.k8s.api.apps.v1``. A
StatefulSet's ``volumeClaimTemplates`` are kept as plain objects (PersistentVolumeClaims) so this
module does not depend on the storage kinds.
"""

from typing import Any, ClassVar

from pydantic import Field

from machinery.api.apps import AppsModel
from machinery.api.base import Int32, Int64, IntOrString, Time, merge_key
from machinery.api.meta import LabelSelector, ObjectMeta
from machinery.api.pod import PodTemplateSpec


class RollingUpdateStatefulSetStrategy(AppsModel):
    """Ordinals below ``partition`` keep the old revision; at most ``maxUnavailable`` pods down."""

    partition: Int32 | None = None
    maxUnavailable: IntOrString | None = None


class StatefulSetUpdateStrategy(AppsModel):
    """RollingUpdate or OnDelete."""

    type: str | None = None
    rollingUpdate: RollingUpdateStatefulSetStrategy | None = None


class StatefulSetPersistentVolumeClaimRetentionPolicy(AppsModel):
    """Whether claims from the templates are deleted with the set or on scale-down."""

    whenDeleted: str | None = None
    whenScaled: str | None = None


class StatefulSetOrdinals(AppsModel):
    """The first ordinal of the set."""

    start: Int32 | None = None


class StatefulSetSpec(AppsModel):
    """The desired state of a stateful set."""

    k8s_required: ClassVar[tuple[str, ...]] = ("selector", "template")
    replicas: Int32 | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec | None = None
    volumeClaimTemplates: list[dict[str, Any]] | None = None
    serviceName: str | None = None
    podManagementPolicy: str | None = None
    updateStrategy: StatefulSetUpdateStrategy | None = None
    revisionHistoryLimit: Int32 | None = None
    minReadySeconds: Int32 | None = None
    persistentVolumeClaimRetentionPolicy: StatefulSetPersistentVolumeClaimRetentionPolicy | None = None
    ordinals: StatefulSetOrdinals | None = None


class StatefulSetCondition(AppsModel):
    """A condition of a stateful set."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class StatefulSetStatus(AppsModel):
    """The observed state of a stateful set."""

    observedGeneration: Int64 | None = None
    replicas: Int32 | None = None
    readyReplicas: Int32 | None = None
    currentReplicas: Int32 | None = None
    updatedReplicas: Int32 | None = None
    currentRevision: str | None = None
    updateRevision: str | None = None
    collisionCount: Int32 | None = None
    conditions: list[StatefulSetCondition] | None = Field(None, json_schema_extra=merge_key("type"))
    availableReplicas: Int32 | None = None


class StatefulSet(AppsModel):
    """Pods with stable names, ordinals and storage."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("apps", "v1", "StatefulSet")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: StatefulSetSpec | None = None
    status: StatefulSetStatus | None = None


class RollingUpdateDaemonSet(AppsModel):
    """How many nodes may lack a ready pod, or get a second one, during an update."""

    maxUnavailable: IntOrString | None = None
    maxSurge: IntOrString | None = None


class DaemonSetUpdateStrategy(AppsModel):
    """RollingUpdate or OnDelete."""

    type: str | None = None
    rollingUpdate: RollingUpdateDaemonSet | None = None


class DaemonSetSpec(AppsModel):
    """The desired state of a daemon set."""

    k8s_required: ClassVar[tuple[str, ...]] = ("selector", "template")
    selector: LabelSelector | None = None
    template: PodTemplateSpec | None = None
    updateStrategy: DaemonSetUpdateStrategy | None = None
    minReadySeconds: Int32 | None = None
    revisionHistoryLimit: Int32 | None = None


class DaemonSetCondition(AppsModel):
    """A condition of a daemon set."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class DaemonSetStatus(AppsModel):
    """The observed state of a daemon set."""

    k8s_required: ClassVar[tuple[str, ...]] = ("currentNumberScheduled", "numberMisscheduled",
                                               "desiredNumberScheduled", "numberReady")
    currentNumberScheduled: Int32 | None = None
    numberMisscheduled: Int32 | None = None
    desiredNumberScheduled: Int32 | None = None
    numberReady: Int32 | None = None
    observedGeneration: Int64 | None = None
    updatedNumberScheduled: Int32 | None = None
    numberAvailable: Int32 | None = None
    numberUnavailable: Int32 | None = None
    collisionCount: Int32 | None = None
    conditions: list[DaemonSetCondition] | None = Field(None, json_schema_extra=merge_key("type"))


class DaemonSet(AppsModel):
    """One pod on every eligible node."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("apps", "v1", "DaemonSet")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: DaemonSetSpec | None = None
    status: DaemonSetStatus | None = None


class ControllerRevision(AppsModel):
    """An immutable snapshot of a controller's pod template, numbered by revision."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("apps", "v1", "ControllerRevision")
    k8s_required: ClassVar[tuple[str, ...]] = ("revision",)
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    data: dict[str, Any] | None = None
    revision: Int64 | None = None
