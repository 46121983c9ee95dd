"""What binds a PersistentVolumeClaim to a PersistentVolume: the annotations, the matching rules and the
node-affinity test, shared by the PV binder and local-path provisioner (controllers), the
VolumeBinding scheduler plugin and the kubelet.

Matching follows Kubernetes' ``FindMatchingVolume``: same class (``""`` only matches ``""``), same
volume mode, every requested access mode offered, capacity at least the request, the claim's selector
matching the volume's labels, the volume free (no ``claimRef``) or pre-bound to this claim; among the
candidates the smallest wins, a volume pre-bound to the claim first. Node affinity uses
NodeSelector semantics (terms are ORed, a term's expressions ANDed, an empty term matches nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from machinery.nodeselector import term_matches
from machinery.quantity import Quantity, parse_quantity
from machinery.selectors import from_label_selector

Obj = dict[str, Any]

SELECTED_NODE = "volume.kubernetes.io/selected-node"
"""Set on a claim by the scheduler once it picked a node for the first pod using it."""
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
HOSTNAME_LABEL = "kubernetes.io/hostname"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def claim_class(claim: Mapping[str, Any]) -> str:
    """The claim's class name (the beta annotation wins, as in Kubernetes); ``""`` for none."""
    beta = annotations_of(claim).get(BETA_CLASS_ANNOTATION)
    if beta is not None:
        return beta
    return str((claim.get("spec") or {}).get("storageClassName") or "")


def volume_class(volume: Mapping[str, Any]) -> str:
    beta = annotations_of(volume).get(BETA_CLASS_ANNOTATION)
    if beta is not None:
        return beta
    return str((volume.get("spec") or {}).get("storageClassName") or "")


def requested_storage(claim: Mapping[str, Any]) -> Quantity:
    requests = (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {})
    return parse_quantity(str(requests.get("storage", "0")))


def volume_capacity(volume: Mapping[str, Any]) -> Quantity:
    return parse_quantity(str(((volume.get("spec") or {}).get("capacity") or {}).get("storage", "0")))


def node_affinity_allows(volume: Mapping[str, Any], node_name: str, node_labels: Mapping[str, str]) -> bool:
    """Whether the volume's ``nodeAffinity.required`` lets the node reach it (no affinity: any node)."""
    required = (((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required"))
    if not required:
        return True
    labels = dict(node_labels)
    labels.setdefault(HOSTNAME_LABEL, node_name)
    return any(term_matches(term, node_name, labels) for term in required.get("nodeSelectorTerms") or [])


def hostname_affinity(node_name: str) -> Obj:
    """A volume node affinity that pins a volume to one node by hostname label."""
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": HOSTNAME_LABEL, "operator": "In", "values": [node_name]}]}]}}


def is_prebound_to(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    meta = claim.get("metadata") or {}
    if not ref or ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def volume_matches(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    """Whether ``volume`` could satisfy ``claim`` (ignoring node affinity and who else claims it)."""
    spec = volume.get("spec") or {}
    claim_spec = claim.get("spec") or {}
    if (volume.get("metadata") or {}).get("deletionTimestamp"):
        return False
    if volume_class(volume) != claim_class(claim):
        return False
    if (spec.get("volumeMode") or "Filesystem") != (claim_spec.get("volumeMode") or "Filesystem"):
        return False
    if not set(claim_spec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    try:
        if volume_capacity(volume) < requested_storage(claim):
            return False
    except ValueError:
        return False
    selector = claim_spec.get("selector")
    if selector is not None:
        labels = (volume.get("metadata") or {}).get("labels") or {}
        if not from_label_selector(selector).matches(labels):
            return False
    return True


def find_matching_volume(claim: Mapping[str, Any], volumes: Iterable[Mapping[str, Any]], *,
                         node: tuple[str, Mapping[str, str]] | None = None) -> Obj | None:
    """The best free volume for ``claim`` (pre-bound first, then the smallest), optionally only among
    those reachable from ``node`` (name, labels)."""
    best: Obj | None = None
    best_size: Quantity | None = None
    for volume in volumes:
        ref = (volume.get("spec") or {}).get("claimRef")
        prebound = is_prebound_to(volume, claim)
        if ref and not prebound:
            continue
        if not volume_matches(volume, claim):
            continue
        if node is not None and not node_affinity_allows(volume, node[0], node[1]):
            continue
        if prebound:
            return dict(volume)
        size = volume_capacity(volume)
        if best_size is None or size < best_size:
            best, best_size = dict(volume), size
    return best


def pod_claim_names(pod: Mapping[str, Any]) -> list[str]:
    """The claims a pod's volumes name (``persistentVolumeClaim.claimName``), in order."""
    names = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        source = volume.get("persistentVolumeClaim")
        if source and source.get("claimName"):
            names.append(str(source["claimName"]))
    return names
