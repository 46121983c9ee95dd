"""Maps (apiVersion, kind) to the pydantic model of that kind.

Read by ``prepare`` (decoding), ``model_for`` and the OpenAPI generator. Covers every kind in
:mod:`machinery.resources` plus the request/response kinds (Scale, Binding, Eviction,
DeleteOptions, Status).
"""

from machinery.api.admissionregistration import MutatingWebhookConfiguration, ValidatingWebhookConfiguration
from machinery.api.apps import Deployment, ReplicaSet
from machinery.api.apps_workloads import ControllerRevision, DaemonSet, StatefulSet
from machinery.api.authentication import (
    SelfSubjectReview,
    SelfSubjectReviewV1alpha1,
    SelfSubjectReviewV1beta1,
    TokenRequest,
    TokenReview,
)
from machinery.api.authorization import (
    LocalSubjectAccessReview,
    SelfSubjectAccessReview,
    SelfSubjectRulesReview,
    SubjectAccessReview,
)
from machinery.api.autoscaling import HorizontalPodAutoscaler, HorizontalPodAutoscalerV1
from machinery.api.base import K8sModel
from machinery.api.batch import CronJob, Job
from machinery.api.core import ConfigMap, Endpoints, Event, Namespace, Secret, Service, ServiceAccount
from machinery.api.meta import DeleteOptions, Status
from machinery.api.metrics import NodeMetrics, PodMetrics
from machinery.api.misc import Eviction, Lease, Scale
from machinery.api.networking import EndpointSlice, Ingress, IngressClass, NetworkPolicy
from machinery.api.node import Node
from machinery.api.pod import Binding, Pod
from machinery.api.rbac import ClusterRole, ClusterRoleBinding, Role, RoleBinding
from machinery.api.replicationcontroller import ReplicationController
from machinery.api.resourcepolicy import LimitRange, PodTemplate, ResourceQuota
from machinery.api.storage import PersistentVolume, PersistentVolumeClaim, StorageClass

TOP_LEVEL: tuple[type[K8sModel], ...] = (
    Namespace, Pod, Service, Endpoints, Node, ConfigMap, Secret, ServiceAccount, Event,
    Deployment, ReplicaSet, Lease, Scale, Binding, Eviction, DeleteOptions, Status,
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
)

TOP_LEVEL += (Role, ClusterRole, RoleBinding, ClusterRoleBinding)
TOP_LEVEL += (SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview)
TOP_LEVEL += (TokenReview, TokenRequest, SelfSubjectReview, SelfSubjectReviewV1beta1, SelfSubjectReviewV1alpha1)
TOP_LEVEL += (EndpointSlice, NetworkPolicy, Ingress, IngressClass)
TOP_LEVEL += (PersistentVolume, PersistentVolumeClaim, StorageClass)
TOP_LEVEL += (Job, CronJob, StatefulSet, DaemonSet, ControllerRevision, ReplicationController)
TOP_LEVEL += (HorizontalPodAutoscaler, HorizontalPodAutoscalerV1, NodeMetrics, PodMetrics)
TOP_LEVEL += (ResourceQuota, LimitRange, PodTemplate)


def _api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


KINDS: dict[tuple[str, str], type[K8sModel]] = {}
for _model in TOP_LEVEL:
    assert _model.k8s_gvk is not None
    _group, _version, _kind = _model.k8s_gvk
    KINDS[(_api_version(_group, _version), _kind)] = _model
# DeleteOptions is sent under several group versions; any served one is fine.
for _av in ("meta.k8s.io/v1", "apps/v1", "coordination.k8s.io/v1", "policy/v1", "autoscaling/v1",
            "rbac.authorization.k8s.io/v1", "admissionregistration.k8s.io/v1",
            "networking.k8s.io/v1", "discovery.k8s.io/v1", "batch/v1", "autoscaling/v2", "storage.k8s.io/v1"):
    KINDS[(_av, "DeleteOptions")] = DeleteOptions


def lookup(api_version: str, kind: str) -> type[K8sModel] | None:
    """The model for this apiVersion and kind, or None when kubelab does not serve it."""
    return KINDS.get((api_version, kind))
