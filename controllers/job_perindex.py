"""Backoff limit per index of an Indexed Job (``spec.backoffLimitPerIndex``, ``maxFailedIndexes``).

Called by ``controllers.job_sync``; pure, no I/O. The rules are those of Kubernetes'
``indexed_job_utils.go`` and ``backoff_utils.go``:

- every pod of such a Job carries ``batch.kubernetes.io/job-index-failure-count`` — how many
  counted failures its index had before it — and, when some failures were ignored by the pod
  failure policy, ``batch.kubernetes.io/job-index-ignored-failure-count``;
- an index fails when a pod of it fails with a count already at ``backoffLimitPerIndex``, or
  when a ``FailIndex`` rule of the pod failure policy matches the failed pod. Failed indexes go
  to ``status.failedIndexes`` (interval notation) and are never run again;
- the last failed pod of an index that is neither succeeded, failed nor running keeps its tracking
  finalizer (and so stays in the API) until its replacement exists: the replacement's counts
  are read from it, so a controller restart loses nothing;
- that replacement waits ``10 s * 2^(n-1)`` (at most 6 min) after the failure, ``n`` counting
  every failure of the index so far (ignored ones too) — each index has its own backoff.

The Job fails with ``MaxFailedIndexesExceeded`` once more than ``maxFailedIndexes`` indexes
failed, or with ``FailedIndexes`` once every index either succeeded or failed and some failed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controllers import job_util as ju

Obj = dict[str, Any]

FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
MAX_INT32 = 2**31 - 1

REASON_FAILED_INDEXES = "FailedIndexes"
REASON_MAX_FAILED_INDEXES = "MaxFailedIndexesExceeded"
MESSAGE_FAILED_INDEXES = "Job has failed indexes"
MESSAGE_MAX_FAILED_INDEXES = "Job has exceeded the specified maximal number of failed indexes"


def enabled(spec: Obj) -> bool:
    """An Indexed Job with ``backoffLimitPerIndex``."""
    return spec.get("completionMode") == "Indexed" and spec.get("backoffLimitPerIndex") is not None


def _annotation(pod: Obj, key: str) -> int:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        value = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return value if 0 <= value <= MAX_INT32 else 0


def failure_counts(pod: Obj) -> tuple[int, int]:
    """(counted, ignored) failures of the pod's index before this pod."""
    return _annotation(pod, FAILURE_COUNT), _annotation(pod, IGNORED_FAILURE_COUNT)


def is_index_failed(spec: Obj, pod: Obj) -> bool:
    """The failed ``pod`` fails its index (``FailIndex`` rule, or the index's limit reached)."""
    if not ju.is_failed(pod, spec):
        return False
    policy = spec.get("podFailurePolicy")
    if policy is not None:
        action, _ = ju.match_failure_policy(policy, pod)
        if action == "FailIndex":
            return True
        if action == "Ignore":
            return False
    return failure_counts(pod)[0] >= int(spec.get("backoffLimitPerIndex") or 0)


def replacement_annotations(spec: Obj, replaced: Obj | None) -> dict[str, str]:
    """The failure-count annotations of a new pod for an index whose last failed pod is ``replaced``."""
    count, ignored = failure_counts(replaced) if replaced is not None else (0, 0)
    if replaced is not None:
        if ju.counts_as_failure(spec.get("podFailurePolicy"), replaced):
            count += 1
        else:
            ignored += 1
    out = {FAILURE_COUNT: str(count)}
    if ignored > 0:
        out[IGNORED_FAILURE_COUNT] = str(ignored)
    return out


def delayed_pods(spec: Obj, pods: list[Obj], *, completions: int, settled: set[int],
                 skip: set[str]) -> dict[int, Obj]:
    """Per index not in ``settled`` (succeeded, failed or running): its last failed pod that still
    holds the tracking finalizer (UIDs in ``skip`` ignored). Its finalizer stays until the index
    runs again."""
    out: dict[int, Obj] = {}
    for pod in pods:
        if not ju.has_finalizer(pod) or str(pod["metadata"].get("uid")) in skip or not ju.is_failed(pod, spec):
            continue
        index = ju.pod_index(pod)
        if index is None or index >= completions or index in settled:
            continue
        last = out.get(index)
        if last is None or _later(pod, last):
            out[index] = pod
    return out


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _later(pod: Obj, than: Obj) -> bool:
    return sum(failure_counts(pod)) >= sum(failure_counts(than)) and \
        ju.finished_at(pod, _EPOCH) >= ju.finished_at(than, _EPOCH)


def remaining(replaced: Obj | None, now: datetime, *, base: float) -> float:
    """Seconds before the index of ``replaced`` (its last failed pod) may run again."""
    if replaced is None:
        return 0.0
    failures = sum(failure_counts(replaced)) + 1
    delay = ju.backoff_delay(failures, base=base)
    last = ju.finished_at(replaced, now)
    return max(0.0, (last + timedelta(seconds=delay) - now).total_seconds())


def failure_condition(spec: Obj, failed: set[int], succeeded: set[int], completions: int) -> tuple[str, str] | None:
    """(reason, message) when the failed indexes fail the Job."""
    limit = spec.get("maxFailedIndexes")
    if limit is not None and len(failed) > int(limit):
        return REASON_MAX_FAILED_INDEXES, MESSAGE_MAX_FAILED_INDEXES
    if failed and len(failed | succeeded) >= completions:
        return REASON_FAILED_INDEXES, MESSAGE_FAILED_INDEXES
    return None
