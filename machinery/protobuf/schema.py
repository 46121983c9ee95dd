"""The protobuf schema kubelab understands: every message table, and the kinds a body may carry.

Combines the ``tables_*`` modules into :data:`MESSAGES` and names the top-level kinds in
:data:`ROOT_KINDS` (kind -> message table and accepted apiVersions). Used by
:mod:`machinery.protobuf.decode`; :func:`dangling_references` lets tests prove every nested
message a table names is itself described.
"""

from __future__ import annotations

from dataclasses import dataclass

from machinery.protobuf.fields import FieldKind, MessageTable
from machinery.protobuf.tables_authn import AUTHN_MESSAGES
from machinery.protobuf.tables_autoscaling import AUTOSCALING_MESSAGES
from machinery.protobuf.tables_meta import META_MESSAGES
from machinery.protobuf.tables_networking import DISCOVERY_MESSAGES, NETWORKING_MESSAGES
from machinery.protobuf.tables_pod import POD_MESSAGES
from machinery.protobuf.tables_policy import POLICY_MESSAGES
from machinery.protobuf.tables_rbac import AUTHZ_MESSAGES, RBAC_MESSAGES
from machinery.protobuf.tables_workloads import WORKLOAD_MESSAGES

MESSAGES: dict[str, MessageTable] = {**META_MESSAGES, **POD_MESSAGES, **WORKLOAD_MESSAGES, **AUTHN_MESSAGES,
                                   **RBAC_MESSAGES, **AUTHZ_MESSAGES}
MESSAGES.update({**NETWORKING_MESSAGES, **DISCOVERY_MESSAGES})
MESSAGES.update(AUTOSCALING_MESSAGES)
MESSAGES.update(POLICY_MESSAGES)


@dataclass(frozen=True, slots=True)
class RootKind:
    """A kind that may be the object of a ``runtime.Unknown`` envelope."""

    message: str
    """Its table in :data:`MESSAGES`."""
    api_versions: frozenset[str] | None
    """The apiVersions it is served under; ``None`` accepts any (DeleteOptions is registered
    in every group version)."""


_CORE = frozenset({"v1"})
_APPS = frozenset({"apps/v1"})
_BATCH = frozenset({"batch/v1"})
_AUTHN = frozenset({"authentication.k8s.io/v1"})
_AUTHZ = frozenset({"authorization.k8s.io/v1"})
_RBAC = frozenset({"rbac.authorization.k8s.io/v1"})

ROOT_KINDS: dict[str, RootKind] = {
    "Namespace": RootKind("Namespace", _CORE),
    "ConfigMap": RootKind("ConfigMap", _CORE),
    "Secret": RootKind("Secret", _CORE),
    "ServiceAccount": RootKind("ServiceAccount", _CORE),
    "Service": RootKind("Service", _CORE),
    "Pod": RootKind("Pod", _CORE),
    "Deployment": RootKind("Deployment", _APPS),
    "ReplicaSet": RootKind("ReplicaSet", _APPS),
    "Job": RootKind("Job", _BATCH),
    "CronJob": RootKind("CronJob", _BATCH),
    "DeleteOptions": RootKind("DeleteOptions", None),
    "TokenRequest": RootKind("TokenRequest", _AUTHN),
    "TokenReview": RootKind("TokenReview", _AUTHN),
    "SelfSubjectReview": RootKind("SelfSubjectReview", frozenset({"authentication.k8s.io/v1",
                                                                 "authentication.k8s.io/v1beta1",
                                                                 "authentication.k8s.io/v1alpha1"})),
    **{kind: RootKind(kind, _RBAC) for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")},
    **{kind: RootKind(kind, _AUTHZ) for kind in ("SelfSubjectAccessReview", "SubjectAccessReview",
                                                 "SelfSubjectRulesReview")},
    "LocalSubjectAccessReview": RootKind("SubjectAccessReview", _AUTHZ),
}
ROOT_KINDS.update({kind: RootKind(kind, frozenset({"networking.k8s.io/v1"}))
                   for kind in ("Ingress", "IngressClass", "NetworkPolicy")})
ROOT_KINDS.update({kind: RootKind(kind, _CORE) for kind in ("ResourceQuota", "LimitRange", "PodTemplate")})
ROOT_KINDS["EndpointSlice"] = RootKind("EndpointSlice", frozenset({"discovery.k8s.io/v1"}))
ROOT_KINDS["HorizontalPodAutoscaler"] = RootKind("HorizontalPodAutoscaler", frozenset({"autoscaling/v2"}))
# A kind whose messages differ between versions is also listed as "<apiVersion>:<kind>" (looked up first).
ROOT_KINDS["autoscaling/v1:HorizontalPodAutoscaler"] = RootKind("HorizontalPodAutoscalerV1",
                                                                frozenset({"autoscaling/v1"}))


def dangling_references() -> list[str]:
    """Return ``"Message.field -> Missing"`` for each nested message no table describes."""
    missing = []
    for name, table in MESSAGES.items():
        for number, field in table.items():
            if field.kind in (FieldKind.MESSAGE, FieldKind.INLINE) and field.message not in MESSAGES:
                missing.append(f"{name}.{number} -> {field.message}")
    missing.extend(
        f"root {kind} -> {root.message}" for kind, root in ROOT_KINDS.items() if root.message not in MESSAGES
    )
    return missing
