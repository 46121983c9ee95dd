"""Pure helpers of the Deployment controller (Kubernetes' ``deployment/util``): no I/O.

Called by ``deployment_sync`` and ``deployment_rollout``. Owns the pod-template hash, the
surge/unavailable arithmetic, revision and replica annotations, template equality (rollback by
template), proportional-scaling fractions and the Progressing/Available condition helpers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from machinery.meta import parse_rfc3339

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
MAX_REVISION_HISTORY_CHARS = 2000
_SKIP_ANNOTATIONS = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_INT32 = 2**31 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Condition types and reasons, as kubectl reads them.
PROGRESSING = "Progressing"
AVAILABLE = "Available"
REPLICA_FAILURE = "ReplicaFailure"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
FAILED_RS_CREATE = "ReplicaSetCreateError"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


# --- templates and hashes --------------------------------------------------------------------

def normalize(value: Any) -> Any:
    """Drop nulls and empty maps/lists recursively: the apiserver and kubectl differ only there."""
    if isinstance(value, dict):
        out = {k: normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def safe_encode(text: str) -> str:
    """Kubernetes' ``SafeEncodeString``: each byte mapped onto an alphabet without vowels."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def fnv32a(data: bytes) -> int:
    """32-bit FNV-1a."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: Obj, collision_count: int | None = None) -> str:
    """The pod-template-hash: fnv32a of the normalised template (+ collisionCount), safe-encoded."""
    body = copy.deepcopy(template)
    labels = (body.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    data = orjson.dumps(normalize(body), option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += int(collision_count & 0xFFFFFFFF).to_bytes(4, "little")
    return safe_encode(str(fnv32a(data)))


def equal_ignore_hash(a: Obj | None, b: Obj | None) -> bool:
    """Templates equal once the pod-template-hash label and null/empty fields are ignored."""
    def clean(t: Obj | None) -> Any:
        body = copy.deepcopy(t or {})
        labels = (body.get("metadata") or {}).get("labels")
        if isinstance(labels, dict):
            labels.pop(HASH_LABEL, None)
        return normalize(body)
    return bool(clean(a) == clean(b))


# --- int-or-percent arithmetic ---------------------------------------------------------------

def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """``GetScaledValueFromIntOrPercent``: an int, or ``N%`` of ``total`` rounded up or down."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.endswith("%"):
        pct = int(text[:-1])
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(text)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable) for ``desired`` replicas; both zero becomes unavailable=1."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def replicas(obj: Obj | None) -> int:
    """``spec.replicas`` (default 1 for Deployments/ReplicaSets without one)."""
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_int(obj: Obj | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def is_rolling(d: Obj) -> bool:
    return bool(((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate")


def _rolling(d: Obj) -> Obj:
    return ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: Obj) -> int:
    """How many pods above ``spec.replicas`` a rolling update may run."""
    if not is_rolling(d):
        return 0
    r = _rolling(d)
    return resolve_fenceposts(r.get("maxSurge", "25%"), r.get("maxUnavailable", "25%"), replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    """How many pods below ``spec.replicas`` may be unavailable during a rolling update."""
    want = replicas(d)
    if not is_rolling(d) or want == 0:
        return 0
    r = _rolling(d)
    unavailable = resolve_fenceposts(r.get("maxSurge", "25%"), r.get("maxUnavailable", "25%"), want)[1]
    return min(unavailable, want)


# --- annotations -----------------------------------------------------------------------------

def ann_of(obj: Obj) -> dict[str, str]:
    meta = obj.setdefault("metadata", {})
    if meta.get("annotations") is None:
        meta["annotations"] = {}
    result: dict[str, str] = meta["annotations"]
    return result


def revision(obj: Obj) -> int:
    """The object's ``deployment.kubernetes.io/revision`` (0 when absent or malformed)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "")
    try:
        return int(raw)
    except ValueError:
        return 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def copy_deployment_annotations(d: Obj, rs: Obj) -> bool:
    """Copy the Deployment's own annotations (change-cause …) onto ``rs``; True if changed."""
    changed = False
    target = ann_of(rs)
    for key, value in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if key in _SKIP_ANNOTATIONS or target.get(key) == value:
            continue
        target[key] = value
        changed = True
    return changed


def set_replicas_annotations(rs: Obj, desired: int, max_total: int) -> bool:
    """Record desired-replicas and max-replicas on ``rs``; True if changed."""
    ann = ann_of(rs)
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_total))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_total: int) -> bool:
    ann = (rs.get("metadata") or {}).get("annotations") or {}
    return bool(ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_total))


def int_annotation(rs: Obj, key: str) -> int | None:
    raw = ((rs.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, *, exists: bool,
                           history_limit_chars: int = MAX_REVISION_HISTORY_CHARS) -> bool:
    """``SetNewReplicaSetAnnotations``: copy annotations, bump revision, keep revision history."""
    changed = copy_deployment_annotations(d, rs)
    ann = ann_of(rs)
    old_raw = ann.get(REVISION)
    old = revision(rs)
    if old_raw is not None and old == 0 and old_raw != "0":
        return changed  # malformed revision: leave it alone
    if old < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old_raw:
            history = ann.get(REVISION_HISTORY, "")
            olds = [x for x in history.split(",") if x] if history else []
            total = len(history) + len(old_raw) + 1
            start = 0
            while total > history_limit_chars and start < len(olds):
                total -= len(olds[start]) + 1
                start += 1
            if total <= history_limit_chars:
                ann[REVISION_HISTORY] = ",".join([*olds[start:], old_raw])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


# --- replica sets ----------------------------------------------------------------------------

def created_key(obj: Obj) -> tuple[datetime, str]:
    meta = obj.get("metadata") or {}
    ts = meta.get("creationTimestamp")
    return (parse_rfc3339(str(ts)) if ts else _EPOCH, str(meta.get("name", "")))


def find_new_rs(d: Obj, rss: Sequence[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash label)."""
    template = (d.get("spec") or {}).get("template")
    for rs in sorted(rss, key=created_key):
        if equal_ignore_hash((rs.get("spec") or {}).get("template"), template):
            return rs
    return None


def find_old_rss(d: Obj, rss: Sequence[Obj], new_rs: Obj | None) -> list[Obj]:
    """Every ReplicaSet other than the new one."""
    if new_rs is None:
        return list(rss)
    new_uid = new_rs["metadata"].get("uid")
    return [rs for rs in rss if rs["metadata"].get("uid") != new_uid]


def active(rss: Iterable[Obj | None]) -> list[Obj]:
    """ReplicaSets with ``spec.replicas > 0``."""
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def sum_spec(rss: Iterable[Obj | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def sum_status(rss: Iterable[Obj | None], field: str) -> int:
    return sum(status_int(rs, field) for rs in rss if rs is not None)


def new_rs_replicas(d: Obj, all_rss: Sequence[Obj | None], new_rs: Obj) -> int:
    """``NewRSNewReplicas``: how big the new ReplicaSet may be right now."""
    if not is_rolling(d):
        return replicas(d)
    current = sum_spec(all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def go_round(x: float) -> int:
    """Go's ``math.Round``: half away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def rs_fraction(rs: Obj, d: Obj) -> int:
    """``getReplicaSetFraction``: this RS's share of a Deployment scale change."""
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = int_annotation(rs, MAX_REPLICAS)
    if annotated is None or annotated == 0:
        annotated = status_int(d, "replicas")
    if annotated == 0:
        return 0
    return go_round(replicas(rs) * deployment_replicas / annotated) - replicas(rs)


def proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    """``GetProportion``: replicas to add to (or remove from) ``rs`` during a scale."""
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = rs_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: Obj, all_active: list[Obj]) -> dict[str, int]:
    """New sizes of active ReplicaSets when a Deployment is scaled mid-rollout (RollingUpdate)."""
    total = sum_spec(all_active)
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - total
    if to_add > 0:
        ordered = sorted(all_active, key=lambda rs: (-replicas(rs), _neg_time(rs)))
    else:
        ordered = sorted(all_active, key=lambda rs: (-replicas(rs), created_key(rs)))
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        name = rs["metadata"]["name"]
        if to_add != 0:
            p = proportion(rs, d, to_add, added)
            sizes[name] = replicas(rs) + p
            added += p
        else:
            sizes[name] = replicas(rs)
    if ordered:
        first = ordered[0]["metadata"]["name"]
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes


def _neg_time(rs: Obj) -> tuple[float, str]:
    ts, name = created_key(rs)
    return (-ts.timestamp(), name)


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The new ReplicaSet runs (and makes available) exactly what the Deployment wants."""
    if rs is None:
        return False
    want = replicas(d)
    return (replicas(rs) == want and int_annotation(rs, DESIRED_REPLICAS) == want
            and status_int(rs, "availableReplicas") == want)


# --- conditions ------------------------------------------------------------------------------

def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(status: Obj, ctype: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def new_condition(ctype: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    ts = rfc3339(now)
    return {"type": ctype, "status": status, "lastUpdateTime": ts, "lastTransitionTime": ts,
            "reason": reason, "message": message}


def set_condition(status: Obj, cond: Obj) -> None:
    """``SetDeploymentCondition``: no-op for the same status+reason; keeps the transition time."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: Obj, ctype: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def progress_deadline(d: Obj) -> int | None:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    if value is None or int(value) == MAX_INT32:
        return None
    return int(value)


def deployment_complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0))


def deployment_progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}

    def g(s: Obj, f: str) -> int:
        return int(s.get(f) or 0)
    return (g(status, "updatedReplicas") > g(old, "updatedReplicas")
            or g(status, "replicas") - g(status, "updatedReplicas") < g(old, "replicas") - g(old, "updatedReplicas")
            or g(status, "readyReplicas") > g(old, "readyReplicas")
            or g(status, "availableReplicas") > g(old, "availableReplicas"))


def deployment_timed_out(d: Obj, status: Obj, now: datetime) -> bool:
    deadline = progress_deadline(d)
    if deadline is None:
        return False
    cond = get_condition(status, PROGRESSING)
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = cond.get("lastUpdateTime")
    if not since:
        return False
    return parse_rfc3339(str(since)) + timedelta(seconds=deadline) < now
