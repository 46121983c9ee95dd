"""Kinds of small groups: coordination.k8s.io/v1 Lease, autoscaling/v1 Scale, policy/v1 Eviction.

Registered as kinds in ``machinery.api``.
"""

from typing import ClassVar

from machinery.api.base import Int32, K8sModel, MicroTime
from machinery.api.meta import DeleteOptions, ObjectMeta


class LeaseSpec(K8sModel):
    """Who holds the lease and until when."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.coordination.v1"
    holderIdentity: str | None = None
    leaseDurationSeconds: Int32 | None = None
    acquireTime: MicroTime | None = None
    renewTime: MicroTime | None = None
    leaseTransitions: Int32 | None = None
    strategy: str | None = None
    preferredHolder: str | None = None


class Lease(K8sModel):
    """A lock used for leader election and node heartbeats."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.coordination.v1"
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("coordination.k8s.io", "v1", "Lease")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: LeaseSpec | None = None


class ScaleSpec(K8sModel):
    """The desired replica count."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.autoscaling.v1"
    replicas: Int32 | None = None


class ScaleStatus(K8sModel):
    """The current replica count and the pod selector as a string."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.autoscaling.v1"
    k8s_required: ClassVar[tuple[str, ...]] = ("replicas",)
    replicas: Int32 | None = None
    selector: str | None = None


class Scale(K8sModel):
    """The scale subresource of deployments and replica sets."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.autoscaling.v1"
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("autoscaling", "v1", "Scale")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: ScaleSpec | None = None
    status: ScaleStatus | None = None


class Eviction(K8sModel):
    """Asks to evict a pod, honouring disruption budgets."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.policy.v1"
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("policy", "v1", "Eviction")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    deleteOptions: DeleteOptions | None = None
