"""Validation of PersistentVolume, PersistentVolumeClaim and StorageClass with Kubernetes' field paths
and messages (``ValidatePersistentVolume``, ``ValidatePersistentVolumeClaim`` and their updates in
pkg/apis/core/validation, ``ValidateStorageClass`` and its update in pkg/apis/storage/validation).

Registered in :data:`machinery.api.validation.CHECKS` through :data:`STORAGE_CHECKS`. Whether a
claim may grow (its class allows expansion) needs the StorageClass and is decided by admission
(``apiserver.admission_storageclass``), as Kubernetes' PersistentVolumeClaimResize plugin does.
"""

import copy
import difflib
import json
from collections.abc import Callable
from typing import Any

from machinery.api import names
from machinery.api.names import Errors
from machinery.api.storage import PV_SOURCES
from machinery.api.validation_pod import label_selector, parse_quantity

Obj = dict[str, Any]
Check = Callable[[Errors, Obj, Obj | None], None]

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
PV_RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
CLASS_RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate",
                   "Socket")
IMMUTABLE = "field is immutable"
NOT_POSITIVE = "must be greater than zero"
PVC_IMMUTABLE = "spec is immutable after creation except resources.requests and volumeAttributesClassName " \
                "for bound claims"


def _access_modes(errs: Errors, path: str, modes: list[Any], *, required_detail: str) -> None:
    if not modes:
        errs.required(path, required_detail)
        return
    known = 0
    for mode in modes:
        if mode not in ACCESS_MODES:
            errs.not_supported(path, mode, ACCESS_MODES)
        else:
            known += 1
    if "ReadWriteOncePod" in modes and known > 1:
        errs.forbidden(path, "may not use ReadWriteOncePod with other access modes")


def _positive_quantity(errs: Errors, path: str, value: Any) -> None:
    amount = parse_quantity(str(value))
    if amount is None:
        errs.invalid(path, str(value), "must be a valid resource quantity")
    elif amount <= 0:
        errs.invalid(path, str(value), NOT_POSITIVE)


def _class_name(errs: Errors, path: str, name: Any) -> None:
    if name:
        errs.check(path, str(name), names.dns1123_subdomain)


def _no_backsteps(errs: Errors, path: str, target: str) -> None:
    if ".." in target.split("/"):
        errs.invalid(path, target, "must not contain '..'")


def _node_affinity(errs: Errors, path: str, affinity: Obj) -> None:
    required = affinity.get("required")
    if required is None:
        return
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        errs.required(f"{path}.required.nodeSelectorTerms", "must have at least one node selector term")
    for i, term in enumerate(terms):
        for j, expr in enumerate(term.get("matchExpressions") or []):
            p = f"{path}.required.nodeSelectorTerms[{i}].matchExpressions[{j}]"
            errs.enum(f"{p}.operator", expr.get("operator"), ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"))
            if expr.get("key"):
                errs.check(f"{p}.key", str(expr["key"]), names.qualified_name)


def _pv_source(errs: Errors, spec: Obj) -> None:
    present = [s for s in PV_SOURCES if spec.get(s) is not None]
    if not present:
        errs.required("spec", "must specify a volume type")
        return
    for extra in present[1:]:
        errs.forbidden(f"spec.{extra}", "may not specify more than 1 volume type")
    host_path = spec.get("hostPath")
    if host_path is not None:
        target = str(host_path.get("path") or "")
        if not target:
            errs.required("spec.hostPath.path")
        else:
            _no_backsteps(errs, "spec.hostPath.path", target)
        errs.enum("spec.hostPath.type", host_path.get("type"), HOST_PATH_TYPES)
    local = spec.get("local")
    if local is not None:
        target = str(local.get("path") or "")
        if not target:
            errs.required("spec.local.path")
        else:
            _no_backsteps(errs, "spec.local.path", target)
        if not ((spec.get("nodeAffinity") or {}).get("required")):
            errs.required("spec.nodeAffinity", "Local volume requires node affinity")
    nfs = spec.get("nfs")
    if nfs is not None:
        if not nfs.get("server"):
            errs.required("spec.nfs.server")
        if not nfs.get("path"):
            errs.required("spec.nfs.path")


def _persistent_volume(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    _access_modes(errs, "spec.accessModes", list(spec.get("accessModes") or []), required_detail="")
    capacity = spec.get("capacity") or {}
    if not capacity:
        errs.required("spec.capacity")
    if "storage" not in capacity or len(capacity) > 1:
        errs.not_supported("spec.capacity", {k: str(v) for k, v in capacity.items()}, ("storage",))
    for key, value in capacity.items():
        _positive_quantity(errs, f"spec.capacity[{key}]", value)
    errs.enum("spec.persistentVolumeReclaimPolicy", spec.get("persistentVolumeReclaimPolicy"), PV_RECLAIM_POLICIES)
    _class_name(errs, "spec.storageClassName", spec.get("storageClassName"))
    errs.enum("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES)
    if spec.get("nodeAffinity") is not None:
        _node_affinity(errs, "spec.nodeAffinity", spec["nodeAffinity"])
    _pv_source(errs, spec)
    if old is not None:
        _persistent_volume_update(errs, spec, old.get("spec") or {})


def _persistent_volume_update(errs: Errors, spec: Obj, old_spec: Obj) -> None:
    new_source = {s: spec.get(s) for s in PV_SOURCES if spec.get(s) is not None}
    old_source = {s: old_spec.get(s) for s in PV_SOURCES if old_spec.get(s) is not None}
    if new_source != old_source:
        errs.forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation\n"
                       + _diff(old_source, new_source))
    if spec.get("volumeMode") != old_spec.get("volumeMode"):
        errs.invalid("spec.volumeMode", spec.get("volumeMode"), IMMUTABLE)
    if old_spec.get("nodeAffinity") is not None and spec.get("nodeAffinity") != old_spec.get("nodeAffinity"):
        errs.invalid("spec.nodeAffinity", spec.get("nodeAffinity"), IMMUTABLE)


def _claim_spec(errs: Errors, spec: Obj) -> None:
    _access_modes(errs, "spec.accessModes", list(spec.get("accessModes") or []),
                  required_detail="at least 1 access mode is required")
    if spec.get("selector") is not None:
        label_selector(errs, "spec.selector", spec["selector"])
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        errs.required("spec.resources[storage]")
    else:
        _positive_quantity(errs, "spec.resources[storage]", requests["storage"])
    _class_name(errs, "spec.storageClassName", spec.get("storageClassName"))
    errs.enum("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES)
    for key in ("dataSource", "dataSourceRef"):
        source = spec.get(key)
        if source is None:
            continue
        if not source.get("name"):
            errs.required(f"spec.{key}.name")
        if not source.get("kind"):
            errs.required(f"spec.{key}.kind")
        if not source.get("apiGroup") and source.get("kind") != "PersistentVolumeClaim":
            errs.invalid(f"spec.{key}", source.get("kind", ""),
                         "must be 'PersistentVolumeClaim' when referencing the default apiGroup")


def _persistent_volume_claim(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    _claim_spec(errs, spec)
    if old is not None:
        _claim_update(errs, obj, old)


def _claim_update(errs: Errors, obj: Obj, old: Obj) -> None:
    """A claim's spec is fixed once made, except: its volumeName may be set once, a class may be given to
    a claim that had none, and a bound claim's storage request may change (grow, or shrink back down to
    no less than its status capacity)."""
    new_spec = copy.deepcopy(obj.get("spec") or {})
    old_spec = copy.deepcopy(old.get("spec") or {})
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = new_spec.get("volumeName")
        if new_spec.get("volumeName") is None:
            old_spec.pop("volumeName", None)
    if old_spec.get("storageClassName") is None and new_spec.get("storageClassName") and \
            not (old.get("spec") or {}).get("volumeName"):
        old_spec["storageClassName"] = new_spec["storageClassName"]
    bound = ((obj.get("status") or {}).get("phase")) == "Bound"
    new_requests = (new_spec.get("resources") or {}).get("requests") or {}
    old_requests = (old_spec.get("resources") or {}).get("requests") or {}
    if bound and "storage" in new_requests:
        if "storage" in old_requests:
            new_requests["storage"] = old_requests["storage"]
        else:
            new_requests.pop("storage")
    for spec in (new_spec, old_spec):
        spec.pop("volumeAttributesClassName", None)
    if new_spec != old_spec:
        errs.forbidden("spec", PVC_IMMUTABLE + "\n" + _diff(old_spec, new_spec))
    new_size = parse_quantity(str(((obj.get("spec") or {}).get("resources") or {}).get("requests", {})
                                  .get("storage", "0")))
    old_size = parse_quantity(str(((old.get("spec") or {}).get("resources") or {}).get("requests", {})
                                  .get("storage", "0")))
    status_size = parse_quantity(str(((old.get("status") or {}).get("capacity") or {}).get("storage", "0")))
    if new_size is not None and old_size is not None and new_size < old_size and \
            (status_size is None or new_size <= status_size):
        errs.forbidden("spec.resources.requests.storage", "field can not be less than status.capacity")


def _diff(old: Any, new: Any) -> str:
    """A unified diff of two JSON values (what changed, as Kubernetes prints under the message)."""
    a = json.dumps(old, indent=1, sort_keys=True).splitlines()
    b = json.dumps(new, indent=1, sort_keys=True).splitlines()
    return "\n".join(line for line in difflib.unified_diff(a, b, lineterm="", n=1)
                     if not line.startswith(("---", "+++")))


def _storage_class(errs: Errors, obj: Obj, old: Obj | None) -> None:
    provisioner = str(obj.get("provisioner") or "")
    if not provisioner:
        errs.required("provisioner")
    else:
        errs.check("provisioner", provisioner.lower(), names.qualified_name)
    params = obj.get("parameters") or {}
    if len(params) > 512:
        errs.too_long("parameters", 512)
    for key in params:
        if not key:
            errs.invalid("parameters", key, "field can not be empty.")
    errs.enum("reclaimPolicy", obj.get("reclaimPolicy"), CLASS_RECLAIM_POLICIES)
    if obj.get("volumeBindingMode") is None:
        errs.required("volumeBindingMode")
    else:
        errs.enum("volumeBindingMode", obj.get("volumeBindingMode"), BINDING_MODES)
    for i, term in enumerate(obj.get("allowedTopologies") or []):
        exprs = term.get("matchLabelExpressions") or []
        if not exprs:
            errs.required(f"allowedTopologies[{i}].matchLabelExpressions", "must have at least one label requirement")
        for j, req in enumerate(exprs):
            if not req.get("values"):
                errs.required(f"allowedTopologies[{i}].matchLabelExpressions[{j}].values",
                              "must specify as least one value")
    if old is None:
        return
    if (obj.get("parameters") or {}) != (old.get("parameters") or {}):
        errs.forbidden("parameters", "updates to parameters are forbidden.")
    if obj.get("provisioner") != old.get("provisioner"):
        errs.forbidden("provisioner", "updates to provisioner are forbidden.")
    if obj.get("reclaimPolicy") != old.get("reclaimPolicy"):
        errs.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.")
    if obj.get("volumeBindingMode") != old.get("volumeBindingMode"):
        errs.invalid("volumeBindingMode", obj.get("volumeBindingMode"), IMMUTABLE)


STORAGE_CHECKS: dict[str, Check] = {
    "PersistentVolume": _persistent_volume,
    "PersistentVolumeClaim": _persistent_volume_claim,
    "StorageClass": _storage_class,
}
