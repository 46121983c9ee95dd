"""Kubernetes defaulting (the ``SetDefaults_*`` functions of k8s.io/kubernetes/pkg/apis/*/v1).

Called by :func:`machinery.api.prepare` on the freshly decoded dict (which it owns and may
mutate). Only fields that are unset get a value; nothing already present is changed.
"""

from collections.abc import Callable
from typing import Any

from machinery.api.defaults_autoscaling import AUTOSCALING_DEFAULTERS
from machinery.api.defaults_networking import NETWORKING_DEFAULTERS
from machinery.api.defaults_storage import STORAGE_DEFAULTERS
from machinery.api.defaults_workloads import WORKLOAD_DEFAULTERS
from machinery.api.validation_quota import QUOTA_DEFAULTERS
from machinery.api.validation_rbac import default_subjects
from machinery.api.validation_webhooks import default_configuration

Obj = dict[str, Any]


def _probe(probe: Obj | None) -> None:
    if probe is None:
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    _handler(probe)
    if "grpc" in probe:
        probe["grpc"].setdefault("service", "")


def _handler(handler: Obj | None) -> None:
    if handler is None:
        return
    if "httpGet" in handler:
        handler["httpGet"].setdefault("path", "/")
        handler["httpGet"].setdefault("scheme", "HTTP")


def _image_pull_policy(image: str) -> str:
    # The tag is whatever follows the last ':' after the last '/' (a registry port is not a tag).
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if "@" in image:
        return "IfNotPresent"
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _container(c: Obj, *, host_network: bool) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        c["imagePullPolicy"] = _image_pull_policy(str(c.get("image", "")))
    for port in c.get("ports", ()):
        port.setdefault("protocol", "TCP")
        if host_network and "hostPort" not in port and "containerPort" in port:
            port["hostPort"] = port["containerPort"]
    for env in c.get("env", ()):
        field_ref = env.get("valueFrom", {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(name))
    lifecycle = c.get("lifecycle") or {}
    _handler(lifecycle.get("postStart"))
    _handler(lifecycle.get("preStop"))
    # SetDefaults_Pod: a limit without a request makes the request equal to the limit.
    resources = c.get("resources")
    if resources and resources.get("limits"):
        requests = resources.setdefault("requests", {})
        for res, qty in resources["limits"].items():
            requests.setdefault(res, qty)


def _downward_items(items: list[Obj]) -> None:
    for item in items:
        if "fieldRef" in item:
            item["fieldRef"].setdefault("apiVersion", "v1")


def _volume(v: Obj) -> None:
    if len(v) == 1 and "name" in v:
        v["emptyDir"] = {}
    for source in ("secret", "configMap", "downwardAPI", "projected"):
        if source in v:
            v[source].setdefault("defaultMode", 420)
    if "hostPath" in v:
        v["hostPath"].setdefault("type", "")
    if "downwardAPI" in v:
        _downward_items(v["downwardAPI"].get("items", []))
    for proj in v.get("projected", {}).get("sources", ()):
        if "serviceAccountToken" in proj:
            proj["serviceAccountToken"].setdefault("expirationSeconds", 3600)
        if "downwardAPI" in proj:
            _downward_items(proj["downwardAPI"].get("items", []))


def pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec plus the container, volume and probe defaults inside it."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    if "serviceAccountName" in spec:
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    elif "serviceAccount" in spec:
        spec["serviceAccountName"] = spec["serviceAccount"]
    host_network = bool(spec.get("hostNetwork"))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key, ()):
            _container(c, host_network=host_network)
    for v in spec.get("volumes", ()):
        _volume(v)


def _template(spec: Obj) -> None:
    template = spec.get("template")
    if template is not None:
        pod_spec(template.setdefault("spec", {}))


def pod(obj: Obj) -> None:
    """Defaults of a Pod."""
    pod_spec(obj.setdefault("spec", {}))


def deployment(obj: Obj) -> None:
    """SetDefaults_Deployment: replicas, strategy, history limit, progress deadline, template."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(spec)


def replica_set(obj: Obj) -> None:
    """SetDefaults_ReplicaSet: replicas 1 and the template's pod defaults."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _template(spec)


def service(obj: Obj) -> None:
    """SetDefaults_Service: type, session affinity, port protocol and targetPort, traffic policies."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        config = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        config.setdefault("timeoutSeconds", 10800)
    for port in spec.get("ports", ()):
        port.setdefault("protocol", "TCP")
        if "targetPort" not in port and "port" in port:
            port["targetPort"] = port["port"]
    kind = spec["type"]
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


def endpoints(obj: Obj) -> None:
    """SetDefaults_Endpoints: port protocol TCP."""
    for subset in obj.get("subsets", ()):
        for port in subset.get("ports", ()):
            port.setdefault("protocol", "TCP")


def namespace(obj: Obj) -> None:
    """SetDefaults_Namespace (name label) and the phase/finalizer the registry sets on create."""
    meta = obj.setdefault("metadata", {})
    name = meta.get("name")
    if name:
        labels = meta.setdefault("labels", {})
        labels.setdefault("kubernetes.io/metadata.name", name)
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def secret(obj: Obj) -> None:
    """SetDefaults_Secret: type Opaque."""
    obj.setdefault("type", "Opaque")


def node(obj: Obj) -> None:
    """SetDefaults_NodeStatus: allocatable defaults to capacity."""
    status = obj.get("status")
    if status and "capacity" in status and "allocatable" not in status:
        status["allocatable"] = dict(status["capacity"])


DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Pod": pod,
    "Deployment": deployment,
    "ReplicaSet": replica_set,
    "Service": service,
    "Endpoints": endpoints,
    "Namespace": namespace,
    "Secret": secret,
    "Node": node,
    "MutatingWebhookConfiguration": default_configuration,
    "ValidatingWebhookConfiguration": default_configuration,
}

DEFAULTERS.update(RoleBinding=default_subjects, ClusterRoleBinding=default_subjects)
DEFAULTERS.update(NETWORKING_DEFAULTERS)
DEFAULTERS.update(STORAGE_DEFAULTERS)
DEFAULTERS.update(WORKLOAD_DEFAULTERS)
DEFAULTERS.update(AUTOSCALING_DEFAULTERS)
DEFAULTERS.update(QUOTA_DEFAULTERS)


def apply(kind: str, obj: Obj) -> None:
    """Apply the defaults of ``kind`` to ``obj`` in place."""
    defaulter = DEFAULTERS.get(kind)
    if defaulter is not None:
        defaulter(obj)
