"""Pure helpers of the StatefulSet controller: ordinals, pod identity, claims, status.

Called by ``controllers.statefulset``; no I/O. A StatefulSet's pod ``<set>-<ordinal>`` has the
labels ``statefulset.kubernetes.io/pod-name`` and ``apps.kubernetes.io/pod-index``, the hostname
``<set>-<ordinal>`` and the subdomain ``serviceName`` (so the headless Service gives it the DNS
name ``<set>-<ordinal>.<service>.<namespace>.svc``), and one volume per claim template bound to
the claim ``<template>-<set>-<ordinal>``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from controllers.controllerrevision import REVISION_LABEL
from controllers.replicaset_util import is_pod_ready

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(sts_name: str, pod: Obj) -> int | None:
    """The ordinal of ``<set>-<n>``, or None when the name has another shape."""
    match = re.fullmatch(re.escape(sts_name) + r"-(\d+)", str((pod.get("metadata") or {}).get("name", "")))
    return int(match.group(1)) if match else None


def start_ordinal(sts: Obj) -> int:
    return int((((sts.get("spec") or {}).get("ordinals")) or {}).get("start") or 0)


def replicas(sts: Obj) -> int:
    value = (sts.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def claim_name(template: Obj, sts_name: str, ordinal: int) -> str:
    return f"{(template.get('metadata') or {}).get('name')}-{sts_name}-{ordinal}"


def claims_for(sts: Obj, ordinal: int) -> list[Obj]:
    """The PersistentVolumeClaims of pod ``ordinal`` (from ``volumeClaimTemplates``)."""
    name, ns = sts["metadata"]["name"], sts["metadata"]["namespace"]
    selector_labels = dict(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
    out = []
    for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
        meta = copy.deepcopy(template.get("metadata") or {})
        meta["name"] = claim_name(template, name, ordinal)
        meta["namespace"] = ns
        meta["labels"] = {**(meta.get("labels") or {}), **selector_labels}
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                    "spec": copy.deepcopy(template.get("spec") or {})})
    return out


def pod_for(sts: Obj, ordinal: int, revision: Obj, owner_ref: Obj) -> Obj:
    """The pod of ``ordinal`` at ``revision`` (whose data holds the template)."""
    meta_s = sts["metadata"]
    name = f"{meta_s['name']}-{ordinal}"
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal),
                   REVISION_LABEL: revision["metadata"]["name"]})
    meta: Obj = {"name": name, "namespace": meta_s["namespace"], "labels": labels,
                 "ownerReferences": [owner_ref]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    spec = template.get("spec") or {}
    spec["hostname"] = name
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        spec["subdomain"] = service
    claims = {(t.get("metadata") or {}).get("name"): claim_name(t, meta_s["name"], ordinal)
              for t in (sts.get("spec") or {}).get("volumeClaimTemplates") or []}
    if claims:
        volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
        volumes += [{"name": vol, "persistentVolumeClaim": {"claimName": claim}} for vol, claim in claims.items()]
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def revision_of(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL, ""))


def is_running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def is_failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Failed"


def compute_status(sts: Obj, pods: list[Obj], current: str, update: str, collisions: int,
                   available: int) -> Obj:
    """The StatefulSet status for the pods it owns."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    status: Obj = {
        "observedGeneration": int(sts["metadata"].get("generation") or 0),
        "replicas": len(live),
        "readyReplicas": sum(1 for p in live if is_running_and_ready(p)),
        "availableReplicas": available,
        "currentReplicas": sum(1 for p in live if revision_of(p) == current),
        "updatedReplicas": sum(1 for p in live if revision_of(p) == update),
        "currentRevision": current,
        "updateRevision": update,
        "collisionCount": collisions,
    }
    return status
