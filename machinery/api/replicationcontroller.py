"""core/v1 ReplicationController: the ReplicaSet's predecessor, with an equality-only selector.

Registered as a kind in ``machinery.api``; OpenAPI name ``io.k8s.api.core.v1.ReplicationController``.
"""

from typing import ClassVar

from pydantic import Field

from machinery.api.base import Int32, Int64, K8sModel, Time, merge_key
from machinery.api.meta import ObjectMeta
from machinery.api.pod import PodTemplateSpec


class ReplicationControllerSpec(K8sModel):
    """The desired number of pods, their selector (a label map) and template."""

    replicas: Int32 | None = None
    minReadySeconds: Int32 | None = None
    selector: dict[str, str] | None = None
    template: PodTemplateSpec | None = None


class ReplicationControllerCondition(K8sModel):
    """A condition of a replication controller (ReplicaFailure)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class ReplicationControllerStatus(K8sModel):
    """The observed state of a replication controller."""

    k8s_required: ClassVar[tuple[str, ...]] = ("replicas",)
    replicas: Int32 | None = None
    fullyLabeledReplicas: Int32 | None = None
    readyReplicas: Int32 | None = None
    availableReplicas: Int32 | None = None
    observedGeneration: Int64 | None = None
    conditions: list[ReplicationControllerCondition] | None = Field(None, json_schema_extra=merge_key("type"))


class ReplicationController(K8sModel):
    """Keeps a number of identical pods running (core/v1)."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "ReplicationController")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: ReplicationControllerSpec | None = None
    status: ReplicationControllerStatus | None = None
