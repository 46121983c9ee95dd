"""The registry of resource types kubelab serves: names, kinds, scope, verbs, subresources.

Discovery, routing, storage keys, OpenAPI and printing all read this one table, so a new
resource type is added here first. Entries follow Kubernetes' own discovery documents
(`kubectl api-resources` on a real cluster prints the same names, short names and kinds).

Besides the built-in table, resources can be registered and unregistered while the process
runs (:func:`register`, :func:`unregister`): the apiserver serves each version of a
CustomResourceDefinition this way. Every change bumps :func:`revision`, so readers that cache
documents built from the table (discovery, OpenAPI) key their caches on it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

ALL_VERBS: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS: tuple[str, ...] = ("get", "patch", "update")
# A connect subresource lists the verbs of the HTTP methods it accepts (GET get, POST create, PUT
# update, PATCH patch, DELETE delete; HEAD and OPTIONS have none), as kube-apiserver's discovery does.
PROXY_VERBS: tuple[str, ...] = ("create", "delete", "get", "patch", "update")


@dataclass(frozen=True)
class SubresourceInfo:
    """A subresource such as ``deployments/scale``; its kind may live in another group."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = ""


@dataclass(frozen=True)
class ResourceInfo:
    """One served resource type (``apps/v1 deployments``)."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[SubresourceInfo, ...] = field(default=())
    list_kind_name: str = ""
    """``listKind`` when it is not ``<kind>List`` (a CustomResourceDefinition may name it)."""
    storage_root: str = ""
    """The key root under ``/registry/`` when it is not the plural (see :attr:`key_root`)."""
    custom: object | None = field(default=None, compare=False, hash=False, repr=False)
    """For a version served from a CustomResourceDefinition: the apiserver's description of it
    (schema, columns, subresource paths). Opaque here; None for built-in kinds."""

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.list_kind_name or f"{self.kind}List"

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` (or ``pods``), as Kubernetes names resources in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def subresource(self, name: str) -> SubresourceInfo | None:
        return next((s for s in self.subresources if s.name == name), None)

    @property
    def key_root(self) -> str:
        """The key segment(s) under ``/registry/`` that hold this resource's objects, named as
        Kubernetes' storage factory names them: the plural (``deployments``, ``clusterroles``),
        except where ``storage_root`` says otherwise (``services/specs``, ``services/endpoints``,
        ``minions``; ``<group>/<plural>`` for CustomResourceDefinitions and custom resources)."""
        return self.storage_root or self.plural

    def storage_prefix(self, namespace: str | None = None) -> str:
        """``/registry/{root}/`` or ``/registry/{root}/{namespace}/``."""
        if namespace:
            return f"/registry/{self.key_root}/{namespace}/"
        return f"/registry/{self.key_root}/"

    def storage_key(self, namespace: str | None, name: str) -> str:
        """``/registry/{root}/{namespace}/{name}``, or ``/registry/{root}/{name}`` when cluster-scoped."""
        root = self.key_root
        if self.namespaced:
            return f"/registry/{root}/{namespace}/{name}"
        return f"/registry/{root}/{name}"


def _status(kind: str, group: str = "", version: str = "v1") -> SubresourceInfo:
    return SubresourceInfo("status", kind, STATUS_VERBS, group, version)


def _scale() -> SubresourceInfo:
    return SubresourceInfo("scale", "Scale", STATUS_VERBS, "autoscaling", "v1")


def _proxy(kind: str) -> SubresourceInfo:
    return SubresourceInfo("proxy", f"{kind}ProxyOptions", PROXY_VERBS)


RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                 subresources=(SubresourceInfo("finalize", "Namespace", ("update",)), _status("Namespace"))),
    ResourceInfo("", "v1", "Pod", "pods", "pod", True, ("po",), ("all",),
                 subresources=(
                     _status("Pod"),
                     SubresourceInfo("binding", "Binding", ("create",)),
                     SubresourceInfo("eviction", "Eviction", ("create",), "policy", "v1"),
                     SubresourceInfo("log", "Pod", ("get",)),
                     SubresourceInfo("attach", "PodAttachOptions", ("create", "get")),
                     SubresourceInfo("exec", "PodExecOptions", ("create", "get")),
                     SubresourceInfo("portforward", "PodPortForwardOptions", ("create", "get")),
                     _proxy("Pod"),
                     SubresourceInfo("ephemeralcontainers", "Pod", ("get", "patch", "update")),
                 )),
    ResourceInfo("", "v1", "Service", "services", "service", True, ("svc",), ("all",),
                 verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
                 subresources=(_proxy("Service"), _status("Service")), storage_root="services/specs"),
    ResourceInfo("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",), storage_root="services/endpoints"),
    ResourceInfo("", "v1", "Node", "nodes", "node", False, ("no",), subresources=(_proxy("Node"), _status("Node")),
                 storage_root="minions"),
    ResourceInfo("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    ResourceInfo("", "v1", "Secret", "secrets", "secret", True),
    ResourceInfo("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ("sa",),
                 subresources=(SubresourceInfo("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1"),)),
    ResourceInfo("", "v1", "Event", "events", "event", True, ("ev",)),
    ResourceInfo("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), ("all",),
                 subresources=(_scale(), _status("Deployment", "apps"))),
    ResourceInfo("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, ("rs",), ("all",),
                 subresources=(_scale(), _status("ReplicaSet", "apps"))),
    ResourceInfo("apps", "v1", "StatefulSet", "statefulsets", "statefulset", True, ("sts",), ("all",),
                 subresources=(_scale(), _status("StatefulSet", "apps"))),
    ResourceInfo("apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, ("ds",), ("all",),
                 subresources=(_status("DaemonSet", "apps"),)),
    ResourceInfo("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", True),
    ResourceInfo("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", True,
                 ("rc",), ("all",), subresources=(_scale(), _status("ReplicationController")),
                 storage_root="controllers"),
    ResourceInfo("batch", "v1", "Job", "jobs", "job", True, (), ("all",), subresources=(_status("Job", "batch"),)),
    ResourceInfo("batch", "v1", "CronJob", "cronjobs", "cronjob", True, ("cj",), ("all",),
                 subresources=(_status("CronJob", "batch"),)),
    # autoscaling/v2 is the storage version; v1 objects are converted (machinery.api.autoscaling_conversion).
    ResourceInfo("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
                 True, ("hpa",), ("all",), subresources=(_status("HorizontalPodAutoscaler", "autoscaling", "v2"),)),
    ResourceInfo("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
                 True, ("hpa",), ("all",), subresources=(_status("HorizontalPodAutoscaler", "autoscaling", "v1"),)),
    # Read-only, built from kubelet statistics (apiserver.metrics_api), never stored.
    ResourceInfo("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", "", False, verbs=("get", "list"),
                 storage_root="metrics.k8s.io/nodes"),
    ResourceInfo("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", "", True, verbs=("get", "list"),
                 storage_root="metrics.k8s.io/pods"),
    ResourceInfo("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    ResourceInfo("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", True,
                 ("netpol",)),
    ResourceInfo("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", True, ("ing",),
                 subresources=(_status("Ingress", "networking.k8s.io"),), storage_root="ingress"),
    ResourceInfo("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", False),
    ResourceInfo("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", False, ("pv",),
                 subresources=(_status("PersistentVolume"),)),
    ResourceInfo("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", True,
                 ("pvc",), subresources=(_status("PersistentVolumeClaim"),)),
    ResourceInfo("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", False, ("sc",)),
    ResourceInfo("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", True, ("quota",),
                 subresources=(_status("ResourceQuota"),)),
    ResourceInfo("", "v1", "LimitRange", "limitranges", "limitrange", True, ("limits",)),
    ResourceInfo("", "v1", "PodTemplate", "podtemplates", "podtemplate", True),
    ResourceInfo("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    ResourceInfo("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                 "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", False, ("mutatingwebhookconfigs",),
                 ("api-extensions",)),
    ResourceInfo("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
                 "validatingwebhookconfigurations", "validatingwebhookconfiguration", False,
                 ("validatingwebhookconfigs",), ("api-extensions",)),
    # Create-only reviews, answered by a handler and never stored (apiserver.virtual).
    ResourceInfo("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", False,
                 verbs=("create",)),
    ResourceInfo("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
                 False, verbs=("create",)),
    ResourceInfo("authentication.k8s.io", "v1beta1", "SelfSubjectReview", "selfsubjectreviews",
                 "selfsubjectreview", False, verbs=("create",)),
    ResourceInfo("authentication.k8s.io", "v1alpha1", "SelfSubjectReview", "selfsubjectreviews",
                 "selfsubjectreview", False, verbs=("create",)),
    ResourceInfo("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
                 "subjectaccessreview", False, verbs=("create",)),
    ResourceInfo("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                 "selfsubjectaccessreview", False, verbs=("create",)),
    ResourceInfo("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                 "selfsubjectrulesreview", False, verbs=("create",)),
    ResourceInfo("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
                 "localsubjectaccessreview", True, verbs=("create",)),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", False),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
                 "clusterrolebinding", False),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", True),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", True),
    ResourceInfo("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                 "customresourcedefinition", False, ("crd", "crds"), ("api-extensions",),
                 subresources=(_status("CustomResourceDefinition", "apiextensions.k8s.io"),),
                 storage_root="apiextensions.k8s.io/customresourcedefinitions"),
)

_BY_PATH: dict[tuple[str, str, str], ResourceInfo] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND: dict[tuple[str, str], ResourceInfo] = {(r.api_version, r.kind): r for r in RESOURCES}


class _Dynamic:
    """Resources registered at run time, in registration order per group (guarded by a lock:
    readers on other threads see either the old or the new table, never half of a change)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_path: dict[tuple[str, str, str], ResourceInfo] = {}
        self.by_kind: dict[tuple[str, str], ResourceInfo] = {}
        self.ordered: tuple[ResourceInfo, ...] = ()
        self.revision = 0


_DYNAMIC = _Dynamic()


def register(infos: list[ResourceInfo]) -> None:
    """Serve ``infos`` (every served version of one group/plural, preferred first), replacing
    whatever was registered for that group and plural before."""
    if not infos:
        return
    group, plural = infos[0].group, infos[0].plural
    with _DYNAMIC.lock:
        kept = [r for r in _DYNAMIC.ordered if (r.group, r.plural) != (group, plural)]
        _rebuild(kept + list(infos))


def unregister(group: str, plural: str) -> None:
    """Stop serving every version of ``plural`` in ``group`` (a no-op when none is registered)."""
    with _DYNAMIC.lock:
        kept = [r for r in _DYNAMIC.ordered if (r.group, r.plural) != (group, plural)]
        if len(kept) != len(_DYNAMIC.ordered):
            _rebuild(kept)


def _rebuild(ordered: list[ResourceInfo]) -> None:
    _DYNAMIC.ordered = tuple(ordered)
    _DYNAMIC.by_path = {(r.group, r.version, r.plural): r for r in ordered}
    _DYNAMIC.by_kind = {(r.api_version, r.kind): r for r in ordered}
    _DYNAMIC.revision += 1


def revision() -> int:
    """A number that changes whenever the set of served resources changes."""
    return _DYNAMIC.revision


def all_resources() -> tuple[ResourceInfo, ...]:
    """Built-in resources followed by those registered at run time."""
    return RESOURCES + _DYNAMIC.ordered


def dynamic_resources() -> tuple[ResourceInfo, ...]:
    """Only the resources registered at run time."""
    return _DYNAMIC.ordered


def lookup(group: str, version: str, plural: str) -> ResourceInfo | None:
    """The resource served at ``/apis/{group}/{version}/{plural}`` (group ``""`` is core)."""
    found = _BY_PATH.get((group, version, plural))
    return found if found is not None else _DYNAMIC.by_path.get((group, version, plural))


def lookup_kind(api_version: str, kind: str) -> ResourceInfo | None:
    """The resource whose objects have this ``apiVersion`` and ``kind``."""
    found = _BY_KIND.get((api_version, kind))
    return found if found is not None else _DYNAMIC.by_kind.get((api_version, kind))


def group_versions() -> list[tuple[str, str]]:
    """Every served (group, version), core first, in a stable order (a registered group's
    versions in the order they were registered: preferred first)."""
    seen: list[tuple[str, str]] = []
    for r in all_resources():
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


def _must(group: str, version: str, plural: str) -> ResourceInfo:
    found = lookup(group, version, plural)
    assert found is not None, plural
    return found


# The served resources by name, for components' code (``client.get(PODS, ...)``).
NAMESPACES = _must("", "v1", "namespaces")
PODS = _must("", "v1", "pods")
SERVICES = _must("", "v1", "services")
ENDPOINTS = _must("", "v1", "endpoints")
NODES = _must("", "v1", "nodes")
CONFIGMAPS = _must("", "v1", "configmaps")
SECRETS = _must("", "v1", "secrets")
SERVICEACCOUNTS = _must("", "v1", "serviceaccounts")
EVENTS = _must("", "v1", "events")
DEPLOYMENTS = _must("apps", "v1", "deployments")
REPLICASETS = _must("apps", "v1", "replicasets")
STATEFULSETS = _must("apps", "v1", "statefulsets")
DAEMONSETS = _must("apps", "v1", "daemonsets")
CONTROLLERREVISIONS = _must("apps", "v1", "controllerrevisions")
REPLICATIONCONTROLLERS = _must("", "v1", "replicationcontrollers")
JOBS = _must("batch", "v1", "jobs")
CRONJOBS = _must("batch", "v1", "cronjobs")
HORIZONTALPODAUTOSCALERS = _must("autoscaling", "v2", "horizontalpodautoscalers")
HORIZONTALPODAUTOSCALERS_V1 = _must("autoscaling", "v1", "horizontalpodautoscalers")
NODEMETRICS = _must("metrics.k8s.io", "v1beta1", "nodes")
PODMETRICS = _must("metrics.k8s.io", "v1beta1", "pods")
ENDPOINTSLICES = _must("discovery.k8s.io", "v1", "endpointslices")
NETWORKPOLICIES = _must("networking.k8s.io", "v1", "networkpolicies")
INGRESSES = _must("networking.k8s.io", "v1", "ingresses")
INGRESSCLASSES = _must("networking.k8s.io", "v1", "ingressclasses")
PERSISTENTVOLUMES = _must("", "v1", "persistentvolumes")
PERSISTENTVOLUMECLAIMS = _must("", "v1", "persistentvolumeclaims")
STORAGECLASSES = _must("storage.k8s.io", "v1", "storageclasses")
RESOURCEQUOTAS = _must("", "v1", "resourcequotas")
LIMITRANGES = _must("", "v1", "limitranges")
PODTEMPLATES = _must("", "v1", "podtemplates")
LEASES = _must("coordination.k8s.io", "v1", "leases")
MUTATINGWEBHOOKCONFIGURATIONS = _must("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")
VALIDATINGWEBHOOKCONFIGURATIONS = _must("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")
CUSTOMRESOURCEDEFINITIONS = _must("apiextensions.k8s.io", "v1", "customresourcedefinitions")
