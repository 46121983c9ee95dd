"""Validation of a Job's failure and success policies beyond the basics: ``backoffLimitPerIndex``,
``maxFailedIndexes``, ``successPolicy``, ``podReplacementPolicy`` and the ``FailIndex`` action,
with Kubernetes' field paths and messages (``validateJobSpec`` in ``pkg/apis/batch/validation``).

Called by :func:`machinery.api.validation_workloads.job_spec` for Jobs and CronJob job templates.
"""

from typing import Any

from machinery.api.names import Errors
from machinery.errors import StatusCause

Obj = dict[str, Any]

MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
PARALLELISM_LIMIT_HIGH_COMPLETIONS = 10_000
MAX_FAILED_INDEXES_HIGH_COMPLETIONS = 10_000
MAX_SUCCESS_POLICY_RULES = 20
MAX_SUCCEEDED_INDEXES_LENGTH = 64 * 1024
INDEXED_ONLY = "requires indexed completion mode"


def job_policies(errs: Errors, path: str, spec: Obj) -> None:
    """The per-index backoff, success policy and pod replacement policy of a JobSpec at ``path``."""
    per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    errs.non_negative(f"{path}.backoffLimitPerIndex", per_index)
    errs.non_negative(f"{path}.maxFailedIndexes", max_failed)
    if max_failed is not None and per_index is None:
        errs.required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified")
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")
    if indexed:
        _indexed_limits(errs, path, spec)
    else:
        if per_index is not None:
            errs.invalid(f"{path}.backoffLimitPerIndex", per_index, INDEXED_ONLY)
        if max_failed is not None:
            errs.invalid(f"{path}.maxFailedIndexes", max_failed, INDEXED_ONLY)
    policy = spec.get("successPolicy")
    if policy is not None:
        if not indexed:
            errs.invalid(f"{path}.successPolicy", policy, INDEXED_ONLY)
        elif isinstance(completions, int):
            _success_policy(errs, f"{path}.successPolicy", policy, completions)
    failure_policy = spec.get("podFailurePolicy")
    for i, rule in enumerate((failure_policy or {}).get("rules") or []):
        if rule.get("action") == "FailIndex" and per_index is None:
            errs.invalid(f"{path}.podFailurePolicy.rules[{i}].action", "FailIndex",
                         "requires the backoffLimitPerIndex to be set")
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        if failure_policy is not None:
            errs.enum(f"{path}.podReplacementPolicy", replacement, ("Failed",))
        else:
            errs.enum(f"{path}.podReplacementPolicy", replacement, ("Failed", "TerminatingOrFailed"))


def _indexed_limits(errs: Errors, path: str, spec: Obj) -> None:
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    max_failed = spec.get("maxFailedIndexes")
    if not isinstance(max_failed, int):
        max_failed = None
    if isinstance(completions, int) and max_failed is not None and max_failed > completions:
        errs.invalid(f"{path}.maxFailedIndexes", max_failed, "must be less than or equal to completions")
    if max_failed is not None and max_failed > MAX_FAILED_INDEXES:
        errs.invalid(f"{path}.maxFailedIndexes", max_failed, f"must be less than or equal to {MAX_FAILED_INDEXES}")
    if isinstance(completions, int) and completions > COMPLETIONS_SOFT_LIMIT \
            and spec.get("backoffLimitPerIndex") is not None:
        high = f"when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"
        if max_failed is None:
            errs.required(f"{path}.maxFailedIndexes", f"must be specified when completions is above "
                                                      f"{COMPLETIONS_SOFT_LIMIT}")
        if isinstance(parallelism, int) and parallelism > PARALLELISM_LIMIT_HIGH_COMPLETIONS:
            errs.invalid(f"{path}.parallelism", parallelism,
                         f"must be less than or equal to {PARALLELISM_LIMIT_HIGH_COMPLETIONS} {high}")
        if max_failed is not None and max_failed > MAX_FAILED_INDEXES_HIGH_COMPLETIONS:
            errs.invalid(f"{path}.maxFailedIndexes", max_failed,
                         f"must be less than or equal to {MAX_FAILED_INDEXES_HIGH_COMPLETIONS} {high}")


def _success_policy(errs: Errors, path: str, policy: Obj, completions: int) -> None:
    rules = policy.get("rules") or []
    if not rules:
        errs.required(f"{path}.rules", "at least one rules must be specified when the successPolicy is specified")
    if len(rules) > MAX_SUCCESS_POLICY_RULES:
        errs.causes.append(StatusCause(f"{path}.rules", f"Too many: {len(rules)}: must have at most "
                                                        f"{MAX_SUCCESS_POLICY_RULES} items", "FieldValueTooMany"))
    for i, rule in enumerate(rules):
        p = f"{path}.rules[{i}]"
        wanted, count = rule.get("succeededIndexes"), rule.get("succeededCount")
        if wanted is None and count is None:
            errs.required(p, "at least one of succeededCount or succeededIndexes must be specified")
        total = 0
        if wanted is not None:
            if len(str(wanted)) > MAX_SUCCEEDED_INDEXES_LENGTH:
                errs.too_long(f"{p}.succeededIndexes", MAX_SUCCEEDED_INDEXES_LENGTH)
            try:
                total = count_indexes(str(wanted), completions)
            except ValueError as exc:
                errs.invalid(f"{p}.succeededIndexes", wanted, f"error parsing succeededIndexes: {exc}")
        if isinstance(count, int):
            errs.non_negative(f"{p}.succeededCount", count)
            if count > completions:
                errs.invalid(f"{p}.succeededCount", count,
                             f"must be less than or equal to {completions} (the number of specified completions)")
            if wanted is not None and count > total:
                errs.invalid(f"{p}.succeededCount", count, f"must be less than or equal to {total} (the number "
                                                           "of indexes in the specified succeededIndexes field)")


def count_indexes(text: str, completions: int) -> int:
    """How many indexes ``"1,3-5"`` names; ``ValueError`` worded as Kubernetes words it when the list
    is malformed, out of order or names an index at or above ``completions``."""
    if not text:
        return 0
    total = 0
    last: int | None = None
    for part in text.split(","):
        limits = part.split("-")
        if len(limits) > 2:
            raise ValueError(f"the fragment {_quoted(part)} violates the requirement that an index interval can "
                             "have at most two parts separated by '-'")
        first = _index(limits[0], completions)
        end = first
        if len(limits) == 2:
            end = _index(limits[1], completions)
            if first >= end:
                raise ValueError(f"non-increasing order, previous: {first}, current: {end}")
        if last is not None and last >= first:
            raise ValueError(f"non-increasing order, previous: {last}, current: {first}")
        total += end - first + 1
        last = end
    return total


def _index(text: str, completions: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"cannot convert string to integer for index: {_quoted(text)}") from None
    if value >= completions:
        raise ValueError(f"too large index: {_quoted(text)}")
    return value


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
