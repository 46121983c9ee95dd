"""Kinds of authorization.k8s.io/v1: the access reviews (create-only, answered by the apiserver).

Registered as kinds in ``machinery.api`` for OpenAPI (``kubectl explain subjectaccessreview``);
the apiserver answers them in ``apiserver.rbac.reviews`` without storing them.
"""

from typing import ClassVar

from machinery.api.base import K8sModel
from machinery.api.meta import ObjectMeta

AUTHZ_PREFIX = "io.k8s.api.authorization.v1"
GROUP = "authorization.k8s.io"


class ResourceAttributes(K8sModel):
    """A resource request: verb, group, version, resource, subresource, namespace, name."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    namespace: str | None = None
    verb: str | None = None
    group: str | None = None
    version: str | None = None
    resource: str | None = None
    subresource: str | None = None
    name: str | None = None


class NonResourceAttributes(K8sModel):
    """A non-resource request: a path and a verb."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    path: str | None = None
    verb: str | None = None


class SubjectAccessReviewSpec(K8sModel):
    """The request to check, and for whom."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    resourceAttributes: ResourceAttributes | None = None
    nonResourceAttributes: NonResourceAttributes | None = None
    user: str | None = None
    groups: list[str] | None = None
    extra: dict[str, list[str]] | None = None
    uid: str | None = None


class SelfSubjectAccessReviewSpec(K8sModel):
    """The request to check for the caller."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    resourceAttributes: ResourceAttributes | None = None
    nonResourceAttributes: NonResourceAttributes | None = None


class SubjectAccessReviewStatus(K8sModel):
    """Whether the request would be allowed, and why."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("allowed",)
    allowed: bool | None = None
    denied: bool | None = None
    reason: str | None = None
    evaluationError: str | None = None


class ResourceRule(K8sModel):
    """Verbs allowed on resources (a rules review's answer)."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    verbs: list[str] | None = None
    apiGroups: list[str] | None = None
    resources: list[str] | None = None
    resourceNames: list[str] | None = None


class NonResourceRule(K8sModel):
    """Verbs allowed on non-resource URLs (a rules review's answer)."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    verbs: list[str] | None = None
    nonResourceURLs: list[str] | None = None


class SelfSubjectRulesReviewSpec(K8sModel):
    """The namespace whose rules to list."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    namespace: str | None = None


class SubjectRulesReviewStatus(K8sModel):
    """What the caller may do in the namespace."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    resourceRules: list[ResourceRule] | None = None
    nonResourceRules: list[NonResourceRule] | None = None
    incomplete: bool | None = None
    evaluationError: str | None = None


class SubjectAccessReview(K8sModel):
    """May this user do that? (cluster-wide)."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1", "SubjectAccessReview")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: SubjectAccessReviewSpec | None = None
    status: SubjectAccessReviewStatus | None = None


class LocalSubjectAccessReview(K8sModel):
    """May this user do that in this namespace?"""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1", "LocalSubjectAccessReview")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: SubjectAccessReviewSpec | None = None
    status: SubjectAccessReviewStatus | None = None


class SelfSubjectAccessReview(K8sModel):
    """May I do that? (``kubectl auth can-i``)."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1", "SelfSubjectAccessReview")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: SelfSubjectAccessReviewSpec | None = None
    status: SubjectAccessReviewStatus | None = None


class SelfSubjectRulesReview(K8sModel):
    """What may I do in this namespace? (``kubectl auth can-i --list``)."""

    k8s_prefix: ClassVar[str] = AUTHZ_PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1", "SelfSubjectRulesReview")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: SelfSubjectRulesReviewSpec | None = None
    status: SubjectRulesReviewStatus | None = None
