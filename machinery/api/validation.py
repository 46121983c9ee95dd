"""Kubernetes validation of whole objects on create and update (``ValidateXxx``/``ValidateXxxUpdate``).

Called by :func:`machinery.api.validate` with a defaulted object. Collects every problem and
raises one :class:`~machinery.errors.InvalidError` (422) whose causes name the fields.
"""

import base64
from collections.abc import Callable
from typing import Any

from machinery import resources
from machinery.api import names, validation_ephemeral
from machinery.api.defaults_autoscaling import AUTOSCALING_CHECKS
from machinery.api.names import Errors
from machinery.api.validation_networking import NETWORKING_CHECKS
from machinery.api.validation_pod import PROTOCOLS, TAINT_EFFECTS, label_selector, pod_spec
from machinery.api.validation_quota import QUOTA_CHECKS
from machinery.api.validation_rbac import RBAC_CHECKS, RBAC_NAME_RULES
from machinery.api.validation_storage import STORAGE_CHECKS
from machinery.api.validation_webhooks import validate_configuration
from machinery.api.validation_workloads import WORKLOAD_CHECKS
from machinery.errors import invalid

Obj = dict[str, Any]
Check = Callable[[Errors, Obj, Obj | None], None]

MAX_ANNOTATIONS = 256 * 1024
MAX_DATA = 1024 * 1024
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
IMMUTABLE = "field is immutable"
IMMUTABLE_DATA = "field is immutable when `immutable` is set"
_NAME_RULES: dict[str, Callable[[str], list[str]]] = {
    "Namespace": names.dns1123_label,
    "Service": names.dns1035_label,
}


def validate_object_meta(errs: Errors, kind: str, obj: Obj, old: Obj | None) -> None:
    """ObjectMeta's rules (name, namespace, labels, annotations, finalizers, immutable fields),
    added to ``errs``; :func:`validate_object` runs it for every kind, custom resources call it."""
    meta = obj.get("metadata") or {}
    name, generate = meta.get("name"), meta.get("generateName")
    rule = _NAME_RULES.get(kind, names.dns1123_subdomain)
    if not name and not generate:
        errs.required("metadata.name", "name or generateName is required")
    elif name:
        errs.check("metadata.name", name, rule)
    info = resources.lookup_kind(str(obj.get("apiVersion", "")), kind)
    namespace = meta.get("namespace")
    if info is not None and info.namespaced:
        if not namespace:
            errs.required("metadata.namespace")
        else:
            errs.check("metadata.namespace", namespace, names.dns1123_label)
    elif info is not None and namespace:
        errs.forbidden("metadata.namespace", "not allowed on this type")
    for key, value in (meta.get("labels") or {}).items():
        errs.check("metadata.labels", key, names.qualified_name)
        errs.check("metadata.labels", value, names.label_value)
    annotations = meta.get("annotations") or {}
    size = 0
    for key, value in annotations.items():
        errs.check("metadata.annotations", key.lower(), names.qualified_name)
        size += len(key) + len(value.encode())
    if size > MAX_ANNOTATIONS:
        errs.too_long("metadata.annotations", MAX_ANNOTATIONS)
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        errs.check(f"metadata.finalizers[{i}]", finalizer, names.qualified_name)
    for field in ("generation", "deletionGracePeriodSeconds"):
        errs.non_negative(f"metadata.{field}", meta.get(field))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                errs.invalid(f"metadata.ownerReferences[{i}].{field}", ref.get(field, ""),
                             f"{field} must not be empty")
    if sum(1 for r in meta.get("ownerReferences") or [] if r.get("controller")) > 1:
        errs.invalid("metadata.ownerReferences", meta["ownerReferences"],
                     "Only one reference can have Controller set to true")
    if old is not None:
        old_meta = old.get("metadata") or {}
        for field in ("name", "namespace", "uid", "creationTimestamp"):
            if old_meta.get(field) and meta.get(field) != old_meta.get(field):
                errs.invalid(f"metadata.{field}", meta.get(field, ""), IMMUTABLE)


def _strip_mutable_pod_fields(spec: Obj) -> Obj:
    spec = dict(spec)
    if validation_ephemeral.in_ephemeral_update():
        spec.pop("ephemeralContainers", None)  # appended through pods/ephemeralcontainers
    for key in ("containers", "initContainers"):
        spec[key] = [{k: v for k, v in c.items() if k != "image"} for c in spec.get(key, [])]
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"):
        spec.pop(key, None)
    return spec


def _pod(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    pod_spec(errs, "spec", spec)
    old_spec = old.get("spec") or {} if old is not None else None
    validation_ephemeral.check_pod(errs, spec, old_spec)
    if old_spec is None:
        return
    old_tol = old_spec.get("tolerations") or []
    new_tol = spec.get("tolerations") or []
    if _strip_mutable_pod_fields(spec) != _strip_mutable_pod_fields(old_spec) or any(
            t not in new_tol for t in old_tol):
        errs.forbidden("spec", (
            "pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
            "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
            "(allow it to be set to 1 if it was previously negative)"))


def _selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key", ""), req.get("operator"), req.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _workload(errs: Errors, obj: Obj, old: Obj | None, *, what: str) -> None:
    spec = obj.get("spec") or {}
    errs.non_negative("spec.replicas", spec.get("replicas"))
    errs.non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    selector = spec.get("selector")
    if not selector:
        errs.required("spec.selector")
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.invalid("spec.selector", selector, f"empty selector is invalid for {what}")
    else:
        label_selector(errs, "spec.selector", selector)
    template = spec.get("template")
    if template is None:
        if what == "deployment":
            errs.required("spec.template")
    else:
        labels = (template.get("metadata") or {}).get("labels") or {}
        if selector and (selector.get("matchLabels") or selector.get("matchExpressions")) \
                and not _selector_matches(selector, labels):
            errs.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        for key, value in labels.items():
            errs.check("spec.template.metadata.labels", key, names.qualified_name)
            errs.check("spec.template.metadata.labels", value, names.label_value)
        tspec = template.get("spec") or {}
        pod_spec(errs, "spec.template.spec", tspec)
        policy = tspec.get("restartPolicy")
        if policy is not None and policy != "Always":
            errs.not_supported("spec.template.spec.restartPolicy", policy, ("Always",))
        if tspec.get("activeDeadlineSeconds") is not None:
            errs.forbidden("spec.template.spec.activeDeadlineSeconds",
                           "activeDeadlineSeconds in ReplicaSet is not Supported")
    if old is not None and what == "deployment":
        old_selector = (old.get("spec") or {}).get("selector")
        if old_selector and selector != old_selector:
            errs.invalid("spec.selector", selector, IMMUTABLE)


def _percent_or_int(errs: Errors, path: str, value: Any) -> int | None:
    """The percentage (as a number) or integer of an IntOrString, checking its syntax."""
    if isinstance(value, int):
        errs.non_negative(path, value)
        return value
    if isinstance(value, str):
        if not value.endswith("%") or not value[:-1].isdigit():
            errs.invalid(path, value, "a valid percent string must be a numeric string followed by an ending '%' "
                                      "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
            return None
        if int(value[:-1]) > 100:
            errs.invalid(path, value, "must not be greater than 100%")
        return int(value[:-1])
    return None


def _deployment(errs: Errors, obj: Obj, old: Obj | None) -> None:
    _workload(errs, obj, old, what="deployment")
    spec = obj.get("spec") or {}
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type")
    errs.enum("spec.strategy.type", kind, ("Recreate", "RollingUpdate"))
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate" and rolling is not None:
        errs.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
    if kind == "RollingUpdate" and rolling is not None:
        p = "spec.strategy.rollingUpdate"
        unavailable = _percent_or_int(errs, f"{p}.maxUnavailable", rolling.get("maxUnavailable"))
        surge = _percent_or_int(errs, f"{p}.maxSurge", rolling.get("maxSurge"))
        if unavailable == 0 and surge == 0:
            errs.invalid(f"{p}.maxUnavailable", rolling.get("maxUnavailable"), "may not be 0 when `maxSurge` is 0")
    errs.non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errs.non_negative("spec.progressDeadlineSeconds", deadline)
        if deadline <= spec.get("minReadySeconds", 0):
            errs.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")


def _replica_set(errs: Errors, obj: Obj, old: Obj | None) -> None:
    _workload(errs, obj, old, what="replicaset")


def _service(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    errs.enum("spec.type", kind, SERVICE_TYPES)
    errs.enum("spec.sessionAffinity", spec.get("sessionAffinity"), ("ClientIP", "None"))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        errs.required("spec.ports")
    seen_names: set[str] = set()
    seen_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        name = port.get("name")
        if len(ports) > 1 and not name:
            errs.required(f"{p}.name")
        if name:
            errs.check(f"{p}.name", name, names.dns1123_label)
            if name in seen_names:
                errs.duplicate(f"{p}.name", name)
            seen_names.add(name)
        if "port" not in port:
            errs.required(f"{p}.port")
        else:
            errs.port(f"{p}.port", port["port"])
        errs.enum(f"{p}.protocol", port.get("protocol"), PROTOCOLS)
        target = port.get("targetPort")
        if isinstance(target, int):
            errs.port(f"{p}.targetPort", target)
        elif isinstance(target, str):
            errs.check(f"{p}.targetPort", target, names.port_name)
        key = (port.get("port"), port.get("protocol", "TCP"))
        if key in seen_ports:
            errs.duplicate(p, {"port": key[0], "protocol": key[1]})
        seen_ports.add(key)
        if port.get("nodePort") and kind not in ("NodePort", "LoadBalancer"):
            errs.forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'")
    for key, value in (spec.get("selector") or {}).items():
        errs.check("spec.selector", key, names.qualified_name)
        errs.check("spec.selector", value, names.label_value)
    if kind == "ExternalName":
        if not spec.get("externalName"):
            errs.required("spec.externalName")
        else:
            errs.check("spec.externalName", spec["externalName"].rstrip("."), names.dns1123_subdomain)
    policy = spec.get("externalTrafficPolicy")
    if policy is not None:
        if kind not in ("NodePort", "LoadBalancer"):
            errs.invalid("spec.externalTrafficPolicy", policy,
                         "may only be set when `type` is 'NodePort' or 'LoadBalancer'")
        else:
            errs.enum("spec.externalTrafficPolicy", policy, ("Cluster", "Local"))
    errs.enum("spec.internalTrafficPolicy", spec.get("internalTrafficPolicy"), ("Cluster", "Local"))
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        new_ip = spec.get("clusterIP")
        if old_ip and new_ip and new_ip != old_ip and kind != "ExternalName":
            errs.invalid("spec.clusterIP", new_ip, IMMUTABLE)


def _data(errs: Errors, obj: Obj, old: Obj | None, *, binary_field: str) -> None:
    data = obj.get("data") or {}
    size = 0
    for key, value in data.items():
        errs.check(f"data[{key}]", key, names.config_key)
        size += len(value)
    if binary_field == "binaryData":
        for key, value in (obj.get("binaryData") or {}).items():
            errs.check(f"binaryData[{key}]", key, names.config_key)
            if key in data:
                errs.invalid(f"binaryData[{key}]", key, "duplicate of key present in data")
            size += len(value) * 3 // 4
    if size > MAX_DATA:
        errs.too_long("data", MAX_DATA)
    if old is not None and old.get("immutable"):
        if not obj.get("immutable"):
            errs.forbidden("immutable", IMMUTABLE_DATA)
        for field in ("data", "binaryData", "stringData"):
            if (obj.get(field) or {}) != (old.get(field) or {}):
                errs.forbidden(field, IMMUTABLE_DATA)


def _config_map(errs: Errors, obj: Obj, old: Obj | None) -> None:
    _data(errs, obj, old, binary_field="binaryData")


_SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _secret(errs: Errors, obj: Obj, old: Obj | None) -> None:
    _data(errs, obj, old, binary_field="")
    data = obj.get("data") or {}
    for key in obj.get("stringData") or {}:
        errs.check(f"stringData[{key}]", key, names.config_key)
    kind = obj.get("type", "Opaque")
    for key in _SECRET_KEYS.get(kind, ()):
        if key not in data and key not in (obj.get("stringData") or {}):
            errs.required(f"data[{key}]")
    if kind == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.required("metadata.annotations[kubernetes.io/service-account.name]")
    if kind == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        errs.required("data[username]", "either username or password is required")
    if old is not None and old.get("type", "Opaque") != kind:
        errs.invalid("type", kind, IMMUTABLE)
    for key, value in data.items():
        if len(base64.b64decode(value)) == 0 and key in _SECRET_KEYS.get(kind, ()):
            errs.required(f"data[{key}]")


def _node(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    for i, taint in enumerate(spec.get("taints") or []):
        p = f"spec.taints[{i}]"
        if not taint.get("key"):
            errs.required(f"{p}.key")
        else:
            errs.check(f"{p}.key", taint["key"], names.qualified_name)
        if taint.get("value"):
            errs.check(f"{p}.value", taint["value"], names.label_value)
        if not taint.get("effect"):
            errs.required(f"{p}.effect")
        else:
            errs.enum(f"{p}.effect", taint["effect"], TAINT_EFFECTS)


def _namespace(errs: Errors, obj: Obj, old: Obj | None) -> None:
    for i, finalizer in enumerate((obj.get("spec") or {}).get("finalizers") or []):
        errs.check(f"spec.finalizers[{i}]", finalizer, names.qualified_name)
    errs.enum("status.phase", (obj.get("status") or {}).get("phase"), ("Active", "Terminating"))


def _event(errs: Errors, obj: Obj, old: Obj | None) -> None:
    involved = obj.get("involvedObject") or {}
    namespace = (obj.get("metadata") or {}).get("namespace")
    if involved.get("namespace") and namespace and involved["namespace"] != namespace:
        errs.invalid("involvedObject.namespace", involved["namespace"], "does not match event.namespace")
    errs.non_negative("count", obj.get("count"))


def _lease(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    if spec.get("leaseDurationSeconds") is not None:
        errs.positive("spec.leaseDurationSeconds", spec["leaseDurationSeconds"])
    errs.non_negative("spec.leaseTransitions", spec.get("leaseTransitions"))


def _endpoints(errs: Errors, obj: Obj, old: Obj | None) -> None:
    for i, subset in enumerate(obj.get("subsets") or []):
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(subset.get(key) or []):
                if not addr.get("ip"):
                    errs.required(f"subsets[{i}].{key}[{j}].ip")
        ports = subset.get("ports") or []
        for j, port in enumerate(ports):
            p = f"subsets[{i}].ports[{j}]"
            if len(ports) > 1 and not port.get("name"):
                errs.required(f"{p}.name")
            errs.port(f"{p}.port", port.get("port", 0))
            errs.enum(f"{p}.protocol", port.get("protocol"), PROTOCOLS)


def _scale(errs: Errors, obj: Obj, old: Obj | None) -> None:
    errs.non_negative("spec.replicas", (obj.get("spec") or {}).get("replicas"))


CHECKS: dict[str, Check] = {
    "Pod": _pod, "Deployment": _deployment, "ReplicaSet": _replica_set, "Service": _service,
    "ConfigMap": _config_map, "Secret": _secret, "Node": _node, "Namespace": _namespace,
    "Event": _event, "Lease": _lease, "Endpoints": _endpoints, "Scale": _scale,
    "MutatingWebhookConfiguration": validate_configuration,
    "ValidatingWebhookConfiguration": validate_configuration,
}
CHECKS.update(RBAC_CHECKS)
CHECKS.update(NETWORKING_CHECKS)
CHECKS.update(STORAGE_CHECKS)
CHECKS.update(WORKLOAD_CHECKS)
CHECKS.update(AUTOSCALING_CHECKS)
CHECKS.update(QUOTA_CHECKS)
_NAME_RULES.update(RBAC_NAME_RULES)
_NO_METADATA_CHECKS = ("DeleteOptions", "Status", "Eviction", "Binding")


def validate_object(obj: Obj, old: Obj | None) -> None:
    """Validate ``obj`` (against ``old`` on update); raise InvalidError listing every cause."""
    kind = str(obj.get("kind", ""))
    errs = Errors()
    if kind not in _NO_METADATA_CHECKS:
        validate_object_meta(errs, kind, obj, old)
    check = CHECKS.get(kind)
    if check is not None:
        check(errs, obj, old)
    if errs.causes:
        meta = obj.get("metadata") or {}
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        raise invalid(kind, str(meta.get("name") or meta.get("generateName") or ""), errs.causes, group=group)
