"""meta/v1 types shared by every kind: ObjectMeta, OwnerReference, LabelSelector, DeleteOptions, Status.

Used as building blocks by the kind modules and directly by the apiserver (``DeleteOptions``
bodies, ``Status`` errors). OpenAPI names live under ``io.k8s.apimachinery.pkg.apis.meta.v1``.
"""

from typing import Any, ClassVar

from pydantic import Field

from machinery.api.base import Int32, Int64, K8sModel, Time, merge_key

_META = "io.k8s.apimachinery.pkg.apis.meta.v1"


class MetaModel(K8sModel):
    """Base of the meta/v1 types (their OpenAPI names live under apimachinery)."""

    k8s_prefix: ClassVar[str] = _META


class OwnerReference(MetaModel):
    """Points at the object that owns this one; the garbage collector deletes orphans."""

    k8s_required: ClassVar[tuple[str, ...]] = ("apiVersion", "kind", "name", "uid")
    apiVersion: str | None = None
    kind: str | None = None
    name: str | None = None
    uid: str | None = None
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ObjectMeta(MetaModel):
    """Metadata every persisted object carries: identity, labels, annotations, ownership."""

    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    selfLink: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    generation: Int64 | None = None
    creationTimestamp: Time | None = None
    deletionTimestamp: Time | None = None
    deletionGracePeriodSeconds: Int64 | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[OwnerReference] | None = Field(None, json_schema_extra=merge_key("uid"))
    finalizers: list[str] | None = Field(None, json_schema_extra=merge_key(None))
    managedFields: list[dict[str, Any]] | None = None


class ListMeta(MetaModel):
    """Metadata of list responses and Status objects."""

    selfLink: str | None = None
    resourceVersion: str | None = None
    continue_: str | None = Field(None, alias="continue")
    remainingItemCount: Int64 | None = None


class LabelSelectorRequirement(MetaModel):
    """One set-based label requirement: key, operator (In, NotIn, Exists, DoesNotExist), values."""

    k8s_required: ClassVar[tuple[str, ...]] = ("key", "operator")
    key: str | None = None
    operator: str | None = None
    values: list[str] | None = None


class LabelSelector(MetaModel):
    """Selects objects by labels; all matchLabels and matchExpressions must hold."""

    matchLabels: dict[str, str] | None = None
    matchExpressions: list[LabelSelectorRequirement] | None = None


class Condition(MetaModel):
    """A generic status condition (type, status True/False/Unknown, reason, message)."""

    type: str | None = None
    status: str | None = None
    observedGeneration: Int64 | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class Preconditions(MetaModel):
    """Conditions a delete must meet (uid and/or resourceVersion)."""

    uid: str | None = None
    resourceVersion: str | None = None


class DeleteOptions(MetaModel):
    """Options of a delete request: grace period, preconditions, propagation policy."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "DeleteOptions")
    apiVersion: str | None = None
    kind: str | None = None
    gracePeriodSeconds: Int64 | None = None
    preconditions: Preconditions | None = None
    orphanDependents: bool | None = None
    propagationPolicy: str | None = None
    dryRun: list[str] | None = None
    ignoreStoreReadErrorWithClusterBreakingPotential: bool | None = None


class StatusCause(MetaModel):
    """One reason an operation failed, usually naming a field."""

    reason: str | None = None
    message: str | None = None
    field: str | None = None


class StatusDetails(MetaModel):
    """The object an error is about and the field-level causes."""

    name: str | None = None
    group: str | None = None
    kind: str | None = None
    uid: str | None = None
    causes: list[StatusCause] | None = None
    retryAfterSeconds: Int32 | None = None


class Status(MetaModel):
    """The result of an operation that returns no object, and every error response."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Status")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ListMeta | None = None
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    details: StatusDetails | None = None
    code: Int32 | None = None
