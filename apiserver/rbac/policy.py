"""The default policy every cluster starts with: Kubernetes' bootstrap ClusterRoles and bindings.

Follows ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go``:

* ``cluster-admin`` (everything) bound to the group ``system:masters``;
* ``admin``, ``edit``, ``view``: aggregated ClusterRoles filled from every ClusterRole labelled
  ``rbac.authorization.k8s.io/aggregate-to-<role>: "true"`` (``system:aggregate-to-*`` carry the
  built-in rules; a CRD's ClusterRole joins with the same label). ``edit`` is aggregated into
  ``admin`` and ``view`` into ``edit``, so each includes the next;
* ``system:discovery`` and ``system:basic-user`` for every authenticated user,
  ``system:public-info-viewer`` for everyone (``/healthz``, ``/livez``, ``/readyz``, ``/version``);
* ``system:auth-delegator`` (TokenReview and SubjectAccessReview, for webhooks and proxies);
* one role per control-plane identity kubelab issues certificates for:
  ``system:kube-scheduler`` (user), ``system:kube-controller-manager`` (user: one identity for
  all controllers, where Kubernetes gives each controller a service account — so it holds the
  union of what the garbage collector, namespace, node-lifecycle, workload, endpoints,
  service-account and aggregation controllers need), and ``system:node`` bound to the group
  ``system:nodes``, paired (``--authorization-mode Node,RBAC``) with the Node authorizer
  (:mod:`apiserver.nodeauthz`), which limits a kubelet's secrets, configmaps, claims and tokens
  to those of its own pods. The node network agent (service proxy and cluster DNS) runs with the
  kubelet's identity, so ``system:node`` includes ``system:node-proxier``'s reads.

Objects are plain JSON dicts, reconciled by :mod:`apiserver.rbac.bootstrap`.
"""

from __future__ import annotations

from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"
AGGREGATE_LABEL = "rbac.authorization.k8s.io/aggregate-to-"
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
Rule = dict[str, Any]


def _as_list(value: tuple[str, ...] | str) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def rule(verbs: tuple[str, ...] | str, groups: tuple[str, ...] | str = ("",),
         resources: tuple[str, ...] | str = (), names: tuple[str, ...] = ()) -> Rule:
    out: Rule = {"verbs": _as_list(verbs), "apiGroups": _as_list(groups), "resources": _as_list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def urls(verbs: tuple[str, ...] | str, *paths: str) -> Rule:
    return {"verbs": [verbs] if isinstance(verbs, str) else list(verbs), "nonResourceURLs": list(paths)}


def cluster_role(name: str, rules: list[Rule], *, labels: dict[str, str] | None = None,
                 aggregate_from: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**BOOTSTRAP_LABELS, **(labels or {})},
                            "annotations": {AUTOUPDATE: "true"}}
    role: dict[str, Any] = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": meta,
                            "rules": rules}
    if aggregate_from:
        role["aggregationRule"] = {"clusterRoleSelectors": [
            {"matchLabels": {f"{AGGREGATE_LABEL}{aggregate_from}": "true"}}]}
        role["rules"] = []
    return role


def cluster_role_binding(name: str, role: str, subjects: list[dict[str, str]]) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": dict(BOOTSTRAP_LABELS), "annotations": {AUTOUPDATE: "true"}},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects}


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "apiGroup": RBAC_GROUP, "name": name}


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": RBAC_GROUP, "name": name}


def _aggregated(to: str) -> dict[str, str]:
    return {f"{AGGREGATE_LABEL}{to}": "true"}


_VIEW = [
    rule(READ, "", ("pods", "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status",
                    "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                    "services/status")),
    rule(READ, "", ("bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                    "replicationcontrollers/status", "resourcequotas", "resourcequotas/status")),
    rule(READ, "", "namespaces"),
    rule(READ, "discovery.k8s.io", "endpointslices"),
    rule(READ, "apps", ("controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                        "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
                        "statefulsets", "statefulsets/scale", "statefulsets/status")),
    rule(READ, "autoscaling", ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
    rule(READ, "batch", ("cronjobs", "cronjobs/status", "jobs", "jobs/status")),
    rule(READ, "policy", ("poddisruptionbudgets", "poddisruptionbudgets/status")),
    rule(READ, "networking.k8s.io", ("ingresses", "ingresses/status", "networkpolicies")),
    # what metrics-server's system:aggregated-metrics-reader adds to view (kubectl top)
    rule(READ, "metrics.k8s.io", ("pods", "nodes")),
]

_EDIT = [
    rule(("impersonate",), "", "serviceaccounts"),
    rule(WRITE, "", ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy")),
    rule(("create",), "", "pods/eviction"),
    rule(WRITE, "", ("configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                     "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy")),
    rule(("create",), "", "serviceaccounts/token"),
    rule(WRITE, "apps", ("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                         "replicasets/scale", "statefulsets", "statefulsets/scale")),
    rule(WRITE, "autoscaling", "horizontalpodautoscalers"),
    rule(WRITE, "batch", ("cronjobs", "jobs")),
    rule(WRITE, "policy", "poddisruptionbudgets"),
    rule(WRITE, "networking.k8s.io", ("ingresses", "networkpolicies")),
    rule(WRITE, "coordination.k8s.io", "leases"),
    # Kubernetes' edit reads secrets and pod side channels that view leaves out.
    rule(READ, "", ("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy")),
    rule(READ, "coordination.k8s.io", "leases"),
]

_ADMIN = [
    rule(("create",), "authorization.k8s.io", "localsubjectaccessreviews"),
    rule((*WRITE, *READ), RBAC_GROUP, ("rolebindings", "roles")),
]

_SCHEDULER = [
    rule(("create", "patch", "update"), ("", "events.k8s.io"), "events"),
    rule(("create",), "coordination.k8s.io", "leases"),
    rule(("get", "update"), "coordination.k8s.io", "leases", ("kube-scheduler",)),
    rule(READ, "", ("nodes", "namespaces", "services", "replicationcontrollers", "persistentvolumeclaims",
                    "persistentvolumes")),
    rule(("delete", *READ), "", "pods"),
    rule(("create",), "", ("bindings", "pods/binding")),
    rule(("patch", "update"), "", "pods/status"),
    rule(READ, "apps", ("replicasets", "statefulsets")),
    rule(READ, "policy", "poddisruptionbudgets"),
    # VolumeBinding: follows claims, volumes and classes; annotates claims with the selected node
    rule(("patch", "update"), "", "persistentvolumeclaims"),
    rule(READ, "storage.k8s.io", "storageclasses"),
    rule(("create",), "authentication.k8s.io", "tokenreviews"),
    rule(("create",), "authorization.k8s.io", "subjectaccessreviews"),
]

# The union of Kubernetes' per-controller roles for the controllers kubelab runs.
_CONTROLLER_MANAGER = [
    # garbage collector and namespace controller: every resource
    rule(("get", "list", "watch", "patch", "update", "delete", "deletecollection"), "*", "*"),
    rule(("update",), "", ("namespaces/finalize", "namespaces/status")),
    rule(("create",), "", ("pods", "events", "endpoints", "serviceaccounts", "configmaps")),
    rule(("update", "patch"), "", ("pods/status", "nodes/status")),
    rule(("create",), "", "pods/eviction"),
    rule(("create", "patch", "update"), "events.k8s.io", "events"),
    rule(("create",), "discovery.k8s.io", "endpointslices"),
    rule(("create",), "apps", ("replicasets", "controllerrevisions")),
    rule(("update", "patch"), "apps", ("deployments/status", "replicasets/status", "deployments/finalizers",
                                       "replicasets/finalizers")),
    rule(("create",), "batch", "jobs"),
    rule(("update", "patch"), "batch", ("jobs/status", "cronjobs/status", "jobs/finalizers")),
    # statefulset, daemonset and replication controllers
    rule(("update", "patch"), "apps", ("statefulsets/status", "daemonsets/status", "statefulsets/finalizers",
                                       "daemonsets/finalizers")),
    rule(("update", "patch"), "", ("replicationcontrollers/status", "replicationcontrollers/finalizers")),
    rule(("create",), "", "persistentvolumeclaims"),
    rule(("create",), "", "persistentvolumes"),  # the local-path provisioner
    rule(("create",), "coordination.k8s.io", "leases"),
    # the clusterrole-aggregation controller writes rules it gathers from other roles
    rule(("escalate", "update", "patch"), RBAC_GROUP, "clusterroles"),
    rule(("create",), "authentication.k8s.io", "tokenreviews"),
    rule(("create",), "authorization.k8s.io", "subjectaccessreviews"),
    rule(("create",), "", "serviceaccounts/token"),
    # the horizontal pod autoscaler: its status, every target's scale, the resource metrics
    rule(("update",), "autoscaling", "horizontalpodautoscalers/status"),
    rule(("get", "update"), "*", "*/scale"),
    rule(("get", "list"), "metrics.k8s.io", "pods"),
]

_NODE = [
    rule(("create",), "authentication.k8s.io", "tokenreviews"),
    rule(("create",), "authorization.k8s.io", ("subjectaccessreviews", "localsubjectaccessreviews")),
    rule(("create", "get", "list", "watch", "delete", "patch", "update"), "", "nodes"),
    rule(("patch", "update"), "", "nodes/status"),
    rule(("create", "patch", "update"), ("", "events.k8s.io"), "events"),
    rule(("get", "list", "watch", "create", "delete"), "", "pods"),
    rule(("patch", "update"), "", "pods/status"),
    rule(("create",), "", "pods/eviction"),
    rule(("get", "list", "watch"), "", ("configmaps", "secrets", "services", "endpoints", "namespaces",
                                        "persistentvolumeclaims", "persistentvolumes")),
    rule(("get",), "", "serviceaccounts"),
    rule(("create",), "", "serviceaccounts/token"),
    rule(("get", "list", "watch"), "discovery.k8s.io", "endpointslices"),
    rule(("get", "list", "watch"), "networking.k8s.io", "networkpolicies"),
    rule(("get", "create", "update", "patch", "delete"), "coordination.k8s.io", "leases"),
    rule(("get", "list", "watch"), "node.k8s.io", "runtimeclasses"),
]


def cluster_roles() -> list[dict[str, Any]]:
    """Every default ClusterRole (fresh dicts each call)."""
    return [
        cluster_role("cluster-admin", [rule("*", "*", "*"), urls("*", "*")]),
        cluster_role("system:discovery", [urls("get", "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                               "/openapi", "/openapi/*", "/readyz", "/version", "/version/")]),
        cluster_role("system:monitoring", [urls("get", "/healthz", "/healthz/*", "/livez", "/livez/*",
                                                "/metrics", "/readyz", "/readyz/*")]),
        cluster_role("system:basic-user", [
            rule("create", "authorization.k8s.io", ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
            rule("create", "authentication.k8s.io", "selfsubjectreviews")]),
        cluster_role("system:public-info-viewer", [urls("get", "/healthz", "/livez", "/readyz", "/version",
                                                        "/version/")]),
        cluster_role("admin", [], aggregate_from="admin"),
        cluster_role("edit", [], labels=_aggregated("admin"), aggregate_from="edit"),
        cluster_role("view", [], labels=_aggregated("edit"), aggregate_from="view"),
        cluster_role("system:aggregate-to-admin", _ADMIN, labels=_aggregated("admin")),
        cluster_role("system:aggregate-to-edit", _EDIT, labels=_aggregated("edit")),
        cluster_role("system:aggregate-to-view", _VIEW, labels=_aggregated("view")),
        cluster_role("system:auth-delegator", [rule("create", "authentication.k8s.io", "tokenreviews"),
                                               rule("create", "authorization.k8s.io", "subjectaccessreviews")]),
        cluster_role("system:kube-scheduler", _SCHEDULER),
        cluster_role("system:kube-controller-manager", _CONTROLLER_MANAGER),
        cluster_role("system:node", _NODE),
        cluster_role("system:node-proxier", [
            rule(("list", "watch"), "", ("services", "endpoints")), rule(("get", "list", "watch"), "", "nodes"),
            rule(("create", "patch", "update"), ("", "events.k8s.io"), "events"),
            rule(("list", "watch"), "discovery.k8s.io", "endpointslices")]),
    ]


def cluster_role_bindings() -> list[dict[str, Any]]:
    """Every default ClusterRoleBinding (fresh dicts each call)."""
    return [
        cluster_role_binding("cluster-admin", "cluster-admin", [group("system:masters")]),
        cluster_role_binding("system:monitoring", "system:monitoring", [group("system:monitoring")]),
        cluster_role_binding("system:discovery", "system:discovery", [group("system:authenticated")]),
        cluster_role_binding("system:basic-user", "system:basic-user", [group("system:authenticated")]),
        cluster_role_binding("system:public-info-viewer", "system:public-info-viewer",
                             [group("system:authenticated"), group("system:unauthenticated")]),
        cluster_role_binding("system:kube-scheduler", "system:kube-scheduler", [user("system:kube-scheduler")]),
        cluster_role_binding("system:kube-controller-manager", "system:kube-controller-manager",
                             [user("system:kube-controller-manager")]),
        cluster_role_binding("system:node", "system:node", [group("system:nodes")]),
        cluster_role_binding("system:node-proxier", "system:node-proxier", [group("system:nodes")]),
    ]
