"""Per-kind write rules (Kubernetes' "strategies"): what create, update and status update keep.

The registry calls these around every write. They mirror the behaviour of the
``PrepareForCreate`` / ``PrepareForUpdate`` methods of Kubernetes' registry strategies for the
kinds we serve:

- on create, status is reset (pods start ``Pending``, namespaces ``Active``);
- an update of the main resource keeps the stored status; ``/status`` keeps the stored spec
  and metadata, taking only ``status`` from the request;
- ``metadata.generation`` starts at 1 and grows when ``spec`` changes, for kinds that track it;
- a create that leaves ``name`` empty gets one from ``generateName`` (:func:`generate_name`).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from machinery.api.defaults_workloads import generate_job_selector
from machinery.meta import random_suffix

GENERATED_NAME_BASE_MAX = 63 - 5
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
WORKLOAD_KINDS = frozenset({"Job", "CronJob", "StatefulSet", "DaemonSet", "ReplicationController"})
_INITIAL_STATUS: dict[str, dict[str, int]] = {
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "DaemonSet": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                  "numberReady": 0},
    "ReplicationController": {"replicas": 0},
}

# Kinds whose strategies track generation (1 on create, +1 on each spec change), as Kubernetes'
# registries for them do; controllers report it back as observedGeneration.
GENERATION_KINDS = frozenset({"Deployment", "ReplicaSet", "Pod", "Ingress", "IngressClass",
                              "NetworkPolicy"}) | WORKLOAD_KINDS

# Kinds with a status that clients may only change through the /status subresource (custom
# resources, CustomResourceDefinitions and HorizontalPodAutoscalers have registries of their own).
STATUS_KINDS = frozenset({"Pod", "Deployment", "ReplicaSet", "Node", "Namespace", "Service",
                          "Ingress"}) | WORKLOAD_KINDS
# A volume or claim starts Pending; its binder moves it on through /status.
STORAGE_KINDS = frozenset({"PersistentVolume", "PersistentVolumeClaim"})
STATUS_KINDS |= STORAGE_KINDS
# A quota's status (hard, used) is the resource-quota controller's and admission's, through /status.
STATUS_KINDS |= {"ResourceQuota"}


def generate_name(obj: dict[str, Any]) -> None:
    """An empty ``name`` becomes ``generateName`` plus 5 random characters (in place), the base cut
    to 58 characters so the result fits a 63-character label, as Kubernetes' name generator does.
    A Namespace's ``kubernetes.io/metadata.name`` label follows the generated name."""
    meta = obj.setdefault("metadata", {})
    base = meta.get("generateName")
    if meta.get("name") or not base:
        return
    meta["name"] = f"{str(base)[:GENERATED_NAME_BASE_MAX]}{random_suffix()}"
    if obj.get("kind") == "Namespace":
        meta.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = meta["name"]


def prepare_for_create(obj: dict[str, Any]) -> None:
    """Reset what a client may not set on create (in place)."""
    kind = obj.get("kind", "")
    meta = obj.setdefault("metadata", {})
    if kind in GENERATION_KINDS:
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    if kind == "Pod":
        status = {"phase": "Pending"}
        qos = qos_class(obj)
        if qos:
            status["qosClass"] = qos
        obj["status"] = status
    elif kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif kind in STORAGE_KINDS:
        obj["status"] = {"phase": "Pending"}
    elif kind in ("Deployment", "ReplicaSet") or kind in WORKLOAD_KINDS:
        # The counters Kubernetes serializes even when zero (no ``omitempty``).
        obj["status"] = dict(_INITIAL_STATUS.get(kind, {}))
    if kind == "Job":
        # The generated selector names the Job's UID, so the Job gets it now (kept by the registry).
        meta["uid"] = str(uuid.uuid4())
        generate_job_selector(obj)
    elif kind in ("Service", "Ingress"):
        obj["status"] = {"loadBalancer": {}}
    elif kind == "ResourceQuota":
        obj.pop("status", None)


def prepare_for_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Main-resource update: keep stored status, bump generation on spec change (in place)."""
    kind = new.get("kind", "")
    if kind in STATUS_KINDS and "status" in old:
        new["status"] = copy.deepcopy(old["status"])
    elif kind in STATUS_KINDS:
        new.pop("status", None)
    if kind == "Namespace":
        # spec.finalizers changes only through namespaces/{name}/finalize.
        spec = new.setdefault("spec", {})
        spec["finalizers"] = list((old.get("spec") or {}).get("finalizers") or [])
    meta = new.setdefault("metadata", {})
    old_generation = (old.get("metadata") or {}).get("generation")
    if kind in GENERATION_KINDS:
        generation = int(old_generation or 1)
        if new.get("spec") != old.get("spec"):
            generation += 1
        meta["generation"] = generation
    elif old_generation is not None:
        meta["generation"] = old_generation
    else:
        meta.pop("generation", None)


def prepare_for_status_update(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``/status`` update: the stored object with only ``status`` taken from the request."""
    result = copy.deepcopy(old)
    if "status" in new:
        result["status"] = copy.deepcopy(new["status"])
    else:
        result.pop("status", None)
    # resourceVersion preconditions travel with the request body.
    rv = (new.get("metadata") or {}).get("resourceVersion")
    if rv:
        result.setdefault("metadata", {})["resourceVersion"] = rv
    return result


def qos_class(pod: dict[str, Any]) -> str:
    """Kubernetes' QoS class of a pod: Guaranteed, Burstable or BestEffort."""
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        if requests or limits:
            any_set = True
        for name in ("cpu", "memory"):
            limit = limits.get(name)
            request = requests.get(name, limit)
            if limit is None or str(request) != str(limit):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
