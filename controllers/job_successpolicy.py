"""The success policy of an Indexed Job (``spec.successPolicy``): when enough indexes succeeded,
the Job is declared succeeded before every index has run.

Called by ``controllers.job_sync`` while it decides a Job's outcome; pure, no I/O. As in
Kubernetes' ``success_policy.go``, rules are tried in order and the first that matches wins:

- ``succeededIndexes`` only: every listed index (below ``completions``) succeeded;
- ``succeededIndexes`` and ``succeededCount``: at least that many of the listed indexes succeeded;
- ``succeededCount`` only: at least that many indexes succeeded.

A rule whose ``succeededIndexes`` names no valid index never matches. The match yields the
``SuccessCriteriaMet`` condition with reason ``SuccessPolicy``; the Job's remaining pods are then
terminated and ``Complete`` follows with the same reason.
"""

from __future__ import annotations

from typing import Any

from controllers import job_util as ju

Obj = dict[str, Any]

REASON = "SuccessPolicy"


def match(policy: Obj | None, completions: int, succeeded: set[int]) -> str | None:
    """The condition message (``"Matched rules at index N"``) of the first matching rule, or None."""
    if not policy or not succeeded:
        return None
    for i, rule in enumerate(policy.get("rules") or []):
        count = rule.get("succeededCount")
        wanted = rule.get("succeededIndexes")
        if wanted is not None:
            required = ju.parse_indexes(str(wanted), completions)
            if not required:
                continue
            contained = len(required & succeeded)
            if contained == len(required) or (count is not None and contained >= int(count)):
                return f"Matched rules at index {i}"
        elif count is not None and len(succeeded) >= int(count):
            return f"Matched rules at index {i}"
    return None
