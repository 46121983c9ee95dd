"""Pure helpers of the Job controller: completion indexes, pod failure policy, conditions, backoff,
the pods a Job creates.

Called by ``controllers.job``; no I/O. Index sets use Kubernetes' interval notation
(``"0-2,5,7-9"``) as ``status.completedIndexes`` shows them. The pod failure policy is evaluated
as ``pkg/controller/job/pod_failure_policy.go`` does: the first rule whose exit codes (of any
container that failed, init containers included) or pod conditions match decides.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from controllers.replicaset_util import is_pod_ready
from machinery.meta import parse_rfc3339

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
DEFAULT_BACKOFF = 10.0
MAX_BACKOFF = 360.0

REASON_BACKOFF = "BackoffLimitExceeded"
REASON_DEADLINE = "DeadlineExceeded"
REASON_POLICY = "PodFailurePolicy"
REASON_COMPLETIONS = "CompletionsReached"
MESSAGE_BACKOFF = "Job has reached the specified backoff limit"
MESSAGE_DEADLINE = "Job was active longer than specified deadline"
MESSAGE_COMPLETIONS = "Reached expected number of succeeded pods"


def format_indexes(indexes: Iterable[int]) -> str:
    """``{0,1,2,5}`` → ``"0-2,5"``."""
    out: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_indexes(text: str | None, limit: int | None = None) -> set[int]:
    """``"0-2,5"`` → ``{0,1,2,5}`` (indexes at or above ``limit`` dropped; bad parts ignored)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            continue
        out.update(i for i in range(lo, hi + 1) if limit is None or i < limit)
    return out


def pod_index(pod: Obj) -> int | None:
    """The completion index of a pod of an Indexed job (annotation first, then label)."""
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or (meta.get("labels") or {}).get(COMPLETION_INDEX)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def only_replace_failed(spec: Obj) -> bool:
    """``podReplacementPolicy: Failed`` (implied by a pod failure policy): a pod counts as failed, and
    is replaced, only once it reached the ``Failed`` phase — a terminating pod is waited for."""
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_failed(pod: Obj, spec: Obj) -> bool:
    """The pod failed: phase ``Failed``, or (``TerminatingOrFailed``) terminating without having
    succeeded (Kubernetes' ``isPodFailed``)."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed(spec):
        return False
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) and phase(pod) != "Succeeded"


def is_terminating(pod: Obj) -> bool:
    """Being deleted and not yet in a terminal phase (what ``status.terminating`` counts)."""
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) and phase(pod) not in ("Succeeded", "Failed")


def succeeded(pod: Obj) -> bool:
    return phase(pod) == "Succeeded"


def has_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or [])


def count_ready(pods: Iterable[Obj]) -> int:
    return sum(1 for p in pods if is_pod_ready(p))


def _terminated(status: Obj) -> Obj | None:
    terminated = (status.get("state") or {}).get("terminated")
    return terminated if isinstance(terminated, dict) else None


def finished_at(pod: Obj, default: datetime) -> datetime:
    """When the pod finished: its last container's finish time, else ``default``."""
    latest: datetime | None = None
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        term = _terminated(cs)
        if term and term.get("finishedAt"):
            t = parse_rfc3339(str(term["finishedAt"]))
            latest = t if latest is None or t > latest else latest
    return latest or default


def match_failure_policy(policy: Obj | None, pod: Obj) -> tuple[str | None, str]:
    """The action of the first matching rule (None: no rule matched) and the failure message."""
    if not policy:
        return None, ""
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    key = f"{meta.get('namespace')}/{meta.get('name')}"
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for i, rule in enumerate(policy.get("rules") or []):
        action = str(rule.get("action"))
        codes = rule.get("onExitCodes")
        if codes is not None:
            values = set(codes.get("values") or [])
            for cs in statuses:
                if codes.get("containerName") and cs.get("name") != codes["containerName"]:
                    continue
                term = _terminated(cs)
                if term is None or int(term.get("exitCode") or 0) == 0:
                    continue
                code = int(term["exitCode"])
                if (code in values) == (codes.get("operator") == "In"):
                    return action, (f"Container {cs.get('name')} for pod {key} failed with exit code {code} "
                                    f"matching {action} rule at index {i}")
        for pattern in rule.get("onPodConditions") or []:
            for cond in status.get("conditions") or []:
                if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get("status", "True"):
                    return action, (f"Pod {key} has condition {cond.get('type')} matching {action} rule at "
                                    f"index {i}")
    return None, ""


def counts_as_failure(policy: Obj | None, pod: Obj) -> bool:
    """A failed pod counts towards the backoff limits unless an ``Ignore`` rule matches it."""
    return match_failure_policy(policy, pod)[0] != "Ignore"


def backoff_delay(failures: int, *, base: float = DEFAULT_BACKOFF, cap: float = MAX_BACKOFF) -> float:
    """The pod recreation delay after ``failures`` consecutive failures: 10 s, 20 s, … 6 min."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * (2 ** min(failures - 1, 30))))


def condition(status: Obj, ctype: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def is_true(status: Obj, ctype: str) -> bool:
    cond = condition(status, ctype)
    return cond is not None and cond.get("status") == "True"


def is_finished_job(job: Obj) -> bool:
    """The Job has a Complete or Failed condition that is True."""
    status = job.get("status") or {}
    return is_true(status, "Complete") or is_true(status, "Failed")


def set_condition(status: Obj, ctype: str, cstatus: str, reason: str, message: str, now: str) -> bool:
    """Add or update a condition (lastTransitionTime moves only when the status changes); changed?"""
    conditions = [dict(c) for c in status.get("conditions") or []]
    for cond in conditions:
        if cond.get("type") == ctype:
            if (cond.get("status"), cond.get("reason"), cond.get("message")) == (cstatus, reason, message):
                return False
            if cond.get("status") != cstatus:
                cond["lastTransitionTime"] = now
            cond.update(status=cstatus, reason=reason, message=message, lastProbeTime=now)
            status["conditions"] = conditions
            return True
    conditions.append({"type": ctype, "status": cstatus, "lastProbeTime": now, "lastTransitionTime": now,
                       "reason": reason, "message": message})
    status["conditions"] = conditions
    return True


def deadline_passed(job: Obj, now: datetime) -> tuple[bool, float | None]:
    """(passed, seconds left) for ``activeDeadlineSeconds`` counted from ``status.startTime``."""
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    start = (job.get("status") or {}).get("startTime")
    if deadline is None or not start:
        return False, None
    left = (parse_rfc3339(str(start)) + timedelta(seconds=int(deadline)) - now).total_seconds()
    return left <= 0, max(left, 0.0)


def pod_for(job: Obj, owner_ref: Obj, index: int | None, annotations: dict[str, str] | None = None) -> Obj:
    """The pod a Job creates (with the tracking finalizer; index annotation, label, env, hostname
    when Indexed; ``annotations`` added, such as the per-index failure counts)."""
    meta_j = job["metadata"]
    template = (job.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    name = meta_j["name"]
    meta: Obj = {"generateName": f"{name}-" if index is None else f"{name}-{index}-",
                 "namespace": meta_j["namespace"], "ownerReferences": [owner_ref],
                 "labels": dict(tmeta.get("labels") or {}), "annotations": dict(tmeta.get("annotations") or {}),
                 "finalizers": [*(tmeta.get("finalizers") or []), TRACKING_FINALIZER]}
    spec = copy.deepcopy(template.get("spec") or {})
    if index is not None:
        meta["annotations"][COMPLETION_INDEX] = str(index)
        meta["labels"][COMPLETION_INDEX] = str(index)
        meta["annotations"].update(annotations or {})
        spec.setdefault("hostname", f"{name}-{index}")
        env = {"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                if not any(e.get("name") == COMPLETION_INDEX_ENV for e in c.get("env") or []):
                    c["env"] = [*(c.get("env") or []), env]
    if not meta["annotations"]:
        del meta["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
