"""Pure helpers of the ReplicaSet controller: pod readiness, deletion ranking, status, pod templates.

Called by ``controllers.replicaset`` (and the Deployment controller for readiness); no I/O. The
deletion ranking is Kubernetes' ``ActivePodsWithRanks`` order: the pod deleted first is the one
whose loss hurts least (unscheduled, pending, not ready, doubled up on a node, ready for the
shortest time, most restarts, newest).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from machinery.meta import parse_rfc3339

Obj = dict[str, Any]

POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _condition(pod: Obj, ctype: str) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def is_pod_active(pod: Obj) -> bool:
    """Not finished and not terminating (Kubernetes' ``IsPodActive``)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def is_pod_ready(pod: Obj) -> bool:
    """The pod's ``Ready`` condition is ``True``."""
    cond = _condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def _ready_since(pod: Obj) -> datetime | None:
    cond = _condition(pod, "Ready")
    if cond is None or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return None
    return parse_rfc3339(str(cond["lastTransitionTime"]))


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least ``min_ready_seconds`` (Kubernetes' ``IsPodAvailable``)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = _ready_since(pod)
    return since is not None and since + timedelta(seconds=min_ready_seconds) < now


def _restarts(pod: Obj) -> int:
    return max((int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or []),
               default=0)


def _created(pod: Obj) -> datetime:
    ts = (pod.get("metadata") or {}).get("creationTimestamp")
    return parse_rfc3339(str(ts)) if ts else _EPOCH


def _deletion_cost(pod: Obj) -> int:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(POD_DELETION_COST)
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def deletion_sort_key(pod: Obj, rank: int) -> tuple[Any, ...]:
    """Sort key: pods that sort first are deleted first."""
    node = (pod.get("spec") or {}).get("nodeName") or ""
    phase = _PHASE_RANK.get(str((pod.get("status") or {}).get("phase")), 0)
    ready = is_pod_ready(pod)
    since = _ready_since(pod)
    # Newer readiness / creation first: negate the timestamps.
    ready_order = -(since.timestamp()) if (ready and since is not None) else 0.0
    return (bool(node), phase, ready, _deletion_cost(pod), -rank, ready_order, -_restarts(pod),
            -_created(pod).timestamp())


def pods_to_delete(filtered: Sequence[Obj], related: Sequence[Obj], diff: int) -> list[Obj]:
    """The ``diff`` pods to delete, ranked by how many related pods share their node."""
    if diff >= len(filtered):
        return list(filtered)
    on_node = Counter((p.get("spec") or {}).get("nodeName") or "" for p in related if is_pod_active(p))
    ranked = sorted(filtered, key=lambda p: deletion_sort_key(
        p, on_node[(p.get("spec") or {}).get("nodeName") or ""] if (p.get("spec") or {}).get("nodeName") else 0))
    return ranked[:diff]


def slow_start_batches(count: int, initial: int = 1) -> list[int]:
    """Batch sizes for ``count`` creations: 1, 2, 4, … (the last one capped)."""
    sizes: list[int] = []
    remaining, size = count, min(count, initial)
    while size > 0:
        sizes.append(size)
        remaining -= size
        size = min(2 * size, remaining)
    return sizes


def pod_from_template(template: Obj, *, namespace: str, generate_name: str, owner_ref: Obj) -> Obj:
    """The Pod a controller creates from its template (Kubernetes' ``GetPodFromTemplate``)."""
    tmeta = template.get("metadata") or {}
    meta: Obj = {"generateName": generate_name, "namespace": namespace, "ownerReferences": [owner_ref]}
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}


def calculate_status(rs: Obj, pods: Sequence[Obj], *, now: datetime, manage_error: str | None,
                     diff: int) -> Obj:
    """The ReplicaSet status for the active pods it owns (``calculateStatus``)."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    fully = ready = available = 0
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully += 1
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1
    old = rs.get("status") or {}
    conditions = [dict(c) for c in old.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
    failure = next((c for c in old.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
    if manage_error is not None:
        if failure is None:
            failure = {"type": "ReplicaFailure", "status": "True",
                       "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "reason": "FailedCreate" if diff < 0 else "FailedDelete", "message": manage_error}
        conditions.append(failure)
    status: Obj = {"replicas": len(pods), "fullyLabeledReplicas": fully, "readyReplicas": ready,
                   "availableReplicas": available,
                   "observedGeneration": int((rs.get("metadata") or {}).get("generation") or 0)}
    if conditions:
        status["conditions"] = conditions
    return status


def status_equal(a: Obj | None, b: Obj | None) -> bool:
    """Compare statuses as stored: Kubernetes omits zero counters (``omitempty``)."""
    def norm(s: Obj | None) -> Obj:
        return {k: v for k, v in (s or {}).items() if v not in (0, None, [], {})}
    return norm(a) == norm(b)
