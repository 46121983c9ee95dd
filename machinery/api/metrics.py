"""metrics.k8s.io/v1beta1 NodeMetrics and PodMetrics, as metrics-server serves them.

Registered as kinds in ``machinery.api`` (for OpenAPI and ``kubectl explain``); the apiserver's
metrics API (``apiserver.metrics_api``) builds the objects from kubelet statistics and never
stores them. OpenAPI names under ``io.k8s.metrics.pkg.apis.metrics.v1beta1``.
"""

from typing import ClassVar

from machinery.api.base import K8sModel, Quantity, Time
from machinery.api.meta import ObjectMeta


class MetricsModel(K8sModel):
    """Base of the metrics.k8s.io/v1beta1 types."""

    k8s_prefix: ClassVar[str] = "io.k8s.metrics.pkg.apis.metrics.v1beta1"


class ContainerMetrics(MetricsModel):
    """The resource usage of one container: ``cpu`` in cores, ``memory`` (working set) in bytes."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name", "usage")
    name: str | None = None
    usage: dict[str, Quantity] | None = None


class NodeMetrics(MetricsModel):
    """The resource usage of a node over ``window``, sampled at ``timestamp``."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("metrics.k8s.io", "v1beta1", "NodeMetrics")
    k8s_required: ClassVar[tuple[str, ...]] = ("timestamp", "window", "usage")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    timestamp: Time | None = None
    window: str | None = None
    usage: dict[str, Quantity] | None = None


class PodMetrics(MetricsModel):
    """The resource usage of a pod's containers over ``window``, sampled at ``timestamp``."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("metrics.k8s.io", "v1beta1", "PodMetrics")
    k8s_required: ClassVar[tuple[str, ...]] = ("timestamp", "window", "containers")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    timestamp: Time | None = None
    window: str | None = None
    containers: list[ContainerMetrics] | None = None
