"""core/v1 ResourceQuota, LimitRange and PodTemplate: the namespace policy kinds.

Registered as kinds in ``machinery.api``; OpenAPI names under ``io.k8s.api.core.v1``. The models
check and clean input; the LimitRanger and ResourceQuota admission plugins (``apiserver``) and the
resource-quota controller read the objects as plain dicts through :mod:`machinery.quota`. Field
rules live in :mod:`machinery.api.validation_quota`.
"""

from typing import ClassVar

from machinery.api.base import K8sModel, Quantity
from machinery.api.meta import ObjectMeta
from machinery.api.pod import PodTemplateSpec


class ScopedResourceSelectorRequirement(K8sModel):
    """A scope name, an operator and values that a quota's objects must match."""

    k8s_required: ClassVar[tuple[str, ...]] = ("scopeName", "operator")
    scopeName: str | None = None
    operator: str | None = None
    values: list[str] | None = None


class ScopeSelector(K8sModel):
    """ANDed scope requirements of a quota."""

    matchExpressions: list[ScopedResourceSelectorRequirement] | None = None


class ResourceQuotaSpec(K8sModel):
    """The hard limits of a quota and the scopes of the objects it tracks."""

    hard: dict[str, Quantity] | None = None
    scopes: list[str] | None = None
    scopeSelector: ScopeSelector | None = None


class ResourceQuotaStatus(K8sModel):
    """The enforced hard limits and the observed usage in the namespace."""

    hard: dict[str, Quantity] | None = None
    used: dict[str, Quantity] | None = None


class ResourceQuota(K8sModel):
    """Aggregate limits on the resources the objects of one namespace consume."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "ResourceQuota")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: ResourceQuotaSpec | None = None
    status: ResourceQuotaStatus | None = None


class LimitRangeItem(K8sModel):
    """Min, max, defaults and the largest limit/request ratio for one kind of object."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type",)
    type: str | None = None
    max: dict[str, Quantity] | None = None
    min: dict[str, Quantity] | None = None
    default: dict[str, Quantity] | None = None
    defaultRequest: dict[str, Quantity] | None = None
    maxLimitRequestRatio: dict[str, Quantity] | None = None


class LimitRangeSpec(K8sModel):
    """The limits of a LimitRange."""

    k8s_required: ClassVar[tuple[str, ...]] = ("limits",)
    limits: list[LimitRangeItem] | None = None


class LimitRange(K8sModel):
    """Per-object resource constraints and defaults in one namespace."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "LimitRange")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: LimitRangeSpec | None = None


class PodTemplate(K8sModel):
    """A stored pod template (metadata and spec of pods to create)."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "PodTemplate")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    template: PodTemplateSpec | None = None


__all__ = ["LimitRange", "PodTemplate", "ResourceQuota"]
