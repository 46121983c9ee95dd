"""Kinds of rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

Registered as kinds in ``machinery.api``; validated by :mod:`machinery.api.validation_rbac`. Rules
and subjects are atomic lists (no strategic-merge key), as in Kubernetes.
"""

from typing import ClassVar

from machinery.api.base import K8sModel
from machinery.api.meta import LabelSelector, ObjectMeta

RBAC_PREFIX = "io.k8s.api.rbac.v1"


class PolicyRule(K8sModel):
    """Verbs allowed on resources (by group, resource and name) or on non-resource URLs."""

    k8s_prefix: ClassVar[str] = RBAC_PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("verbs",)
    verbs: list[str] | None = None
    apiGroups: list[str] | None = None
    resources: list[str] | None = None
    resourceNames: list[str] | None = None
    nonResourceURLs: list[str] | None = None


class AggregationRule(K8sModel):
    """Selects the ClusterRoles whose rules a ClusterRole aggregates."""

    k8s_prefix: ClassVar[str] = RBAC_PREFIX
    clusterRoleSelectors: list[LabelSelector] | None = None


class Subject(K8sModel):
    """Whom a binding grants: a User, a Group or a ServiceAccount."""

    k8s_prefix: ClassVar[str] = RBAC_PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("kind", "name")
    kind: str | None = None
    apiGroup: str | None = None
    name: str | None = None
    namespace: str | None = None


class RoleRef(K8sModel):
    """The Role or ClusterRole a binding grants."""

    k8s_prefix: ClassVar[str] = RBAC_PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("apiGroup", "kind", "name")
    apiGroup: str | None = None
    kind: str | None = None
    name: str | None = None


class Role(K8sModel):
    """Rules that apply within one namespace."""

    k8s_prefix: ClassVar[str] = RBAC_PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("rbac.authorization.k8s.io", "v1", "Role")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    rules: list[PolicyRule] | None = None


class ClusterRole(K8sModel):
    """Rules usable cluster-wide or, through a RoleBinding, in one namespace."""

    k8s_prefix: ClassVar[str] = RBAC_PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("rbac.authorization.k8s.io", "v1", "ClusterRole")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    rules: list[PolicyRule] | None = None
    aggregationRule: AggregationRule | None = None


class RoleBinding(K8sModel):
    """Grants a Role or ClusterRole to subjects within the binding's namespace."""

    k8s_prefix: ClassVar[str] = RBAC_PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("roleRef",)
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("rbac.authorization.k8s.io", "v1", "RoleBinding")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    subjects: list[Subject] | None = None
    roleRef: RoleRef | None = None


class ClusterRoleBinding(K8sModel):
    """Grants a ClusterRole to subjects in every namespace."""

    k8s_prefix: ClassVar[str] = RBAC_PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("roleRef",)
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    subjects: list[Subject] | None = None
    roleRef: RoleRef | None = None
