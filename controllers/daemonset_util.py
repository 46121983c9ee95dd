"""Pure helpers of the DaemonSet controller: which nodes run a daemon pod, and that pod.

Called by ``controllers.daemonset``; no I/O. A node runs the pod when it matches the template's
``nodeSelector`` and required node affinity and every ``NoSchedule``/``NoExecute`` taint on it is
tolerated — counting the tolerations Kubernetes gives every daemon pod (not-ready and unreachable
``NoExecute`` without a time limit; disk-, memory-, pid-pressure and unschedulable ``NoSchedule``;
network-unavailable too for host-network pods). The pod is bound to its node the way Kubernetes
≥ 1.12 does it: a required node affinity term on ``metadata.name`` (``matchFields``) that the
scheduler honours.
"""

from __future__ import annotations

import copy
from typing import Any

from controllers.taint_eviction import tolerates
from machinery.nodeselector import term_matches

Obj = dict[str, Any]

_NO_EXECUTE = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
_NO_SCHEDULE = ("node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure",
                "node.kubernetes.io/pid-pressure", "node.kubernetes.io/unschedulable")
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"


def default_tolerations(spec: Obj) -> list[Obj]:
    """The pod's tolerations plus the daemon defaults it lacks (Kubernetes' ``AddOrUpdateDaemonPodTolerations``)."""
    tolerations = [dict(t) for t in spec.get("tolerations") or []]
    wanted = [(key, "NoExecute") for key in _NO_EXECUTE] + [(key, "NoSchedule") for key in _NO_SCHEDULE]
    if spec.get("hostNetwork"):
        wanted.append((NETWORK_UNAVAILABLE, "NoSchedule"))
    for key, effect in wanted:
        if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    return tolerations


def _term_matches(term: Obj, node: Obj) -> bool:
    meta = node.get("metadata") or {}
    return term_matches(term, str(meta.get("name") or ""), meta.get("labels") or {})


def node_matches(pod_spec: Obj, node: Obj) -> bool:
    """``nodeSelector`` and required node affinity allow ``node``."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    return terms is None or any(_term_matches(t, node) for t in terms)


def should_run(ds: Obj, node: Obj) -> bool:
    """Whether ``node`` should run the daemon pod (placement and taints)."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    if not node_matches(spec, node):
        return False
    tolerations = default_tolerations(spec)
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return False
    return True


def node_of(pod: Obj) -> str:
    """The node a daemon pod is for: its ``nodeName``, else its ``metadata.name`` affinity."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and req.get("values"):
                return str(req["values"][0])
    return ""


def pod_for(ds: Obj, node_name: str, owner_ref: Obj, revision_hash: str, generation: int) -> Obj:
    """The daemon pod for ``node_name``: the template, the default tolerations, and a node affinity
    term on ``metadata.name`` that replaces any other ``matchFields`` the template has."""
    meta_d = ds["metadata"]
    template = (ds.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    spec["tolerations"] = default_tolerations(spec)
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    name_field = {"key": "metadata.name", "operator": "In", "values": [node_name]}
    terms = []
    for term in required.get("nodeSelectorTerms") or []:
        kept = {k: v for k, v in term.items() if k != "matchFields"}
        kept["matchFields"] = [name_field]
        terms.append(kept)
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": terms or [{"matchFields": [name_field]}]}
    labels = dict(tmeta.get("labels") or {})
    labels["controller-revision-hash"] = revision_hash
    labels["pod-template-generation"] = str(generation)
    meta: Obj = {"generateName": f"{meta_d['name']}-", "namespace": meta_d["namespace"], "labels": labels,
                 "ownerReferences": [owner_ref]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
