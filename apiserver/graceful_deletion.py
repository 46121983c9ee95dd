"""Graceful deletion: whether a DELETE removes an object at once or marks it, and when a marked one goes.

Kubernetes' rules (``BeforeDelete`` and the store's finalizer handling in
``k8s.io/apiserver/pkg/registry``), as pure functions of the live object and the
:class:`~apiserver.write_options.DeleteOptions`:

* ``propagationPolicy`` Foreground / Orphan adds the ``foregroundDeletion`` / ``orphan`` finalizer
  (the garbage collector removes it once dependents are handled);
* only a pod bound to a node and not finished terminates gracefully (its kubelet confirms); its
  grace period comes from the options, else ``terminationGracePeriodSeconds`` (30), and a later
  DELETE may shorten it, never lengthen it;
* an object with finalizers, a grace period, or (a Namespace) ``spec.finalizers`` gets
  ``deletionTimestamp`` and ``deletionGracePeriodSeconds`` instead of going; a Namespace turns
  ``Terminating``; a kind that counts generations bumps ``metadata.generation``;
* a marked object goes once its last finalizer is removed (and, for a pod, its grace period is 0).

:class:`apiserver.registry.Registry` calls these from ``delete`` and from every write.
"""

from __future__ import annotations

import copy
from typing import Any

from apiserver import strategy
from apiserver.write_options import DeleteOptions
from machinery.meta import now_rfc3339

__all__ = ["finished_deleting", "grace_period", "mark_for_deletion"]


def mark_for_deletion(live: dict[str, Any], options: DeleteOptions) -> dict[str, Any] | None:
    """The object marked for deletion, or None when it can go at once."""
    obj = copy.deepcopy(live)
    meta = obj["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if options.propagation_policy == "Foreground" and "foregroundDeletion" not in finalizers:
        finalizers.append("foregroundDeletion")
    elif options.propagation_policy == "Orphan" and "orphan" not in finalizers:
        finalizers.append("orphan")
    grace = grace_period(obj, options)
    namespace_pending = obj.get("kind") == "Namespace" and (obj.get("spec") or {}).get("finalizers")
    if not finalizers and not grace and not namespace_pending:
        return None
    if meta.get("deletionTimestamp"):
        # Already terminating: a shorter grace period may still be requested.
        if grace is not None and grace < int(meta.get("deletionGracePeriodSeconds") or 0):
            meta["deletionGracePeriodSeconds"] = grace
            if grace == 0 and not finalizers:
                return None
        meta["finalizers"] = finalizers or meta.get("finalizers")
        if not meta["finalizers"]:
            meta.pop("finalizers")
        return obj
    meta["deletionTimestamp"] = now_rfc3339()
    meta["deletionGracePeriodSeconds"] = grace or 0
    if finalizers:
        meta["finalizers"] = finalizers
    if obj.get("kind") == "Namespace":
        obj.setdefault("status", {})["phase"] = "Terminating"
    if obj.get("kind") in strategy.GENERATION_KINDS and obj.get("kind") != "Pod":
        meta["generation"] = int(meta.get("generation") or 1) + 1
    return obj


def grace_period(obj: dict[str, Any], options: DeleteOptions) -> int | None:
    """Only pods bound to a node terminate gracefully (their kubelet confirms)."""
    if obj.get("kind") != "Pod":
        return None
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return None
    grace = options.grace_period_seconds
    if grace is None:
        grace = int(spec.get("terminationGracePeriodSeconds", 30))
    return max(grace, 0) or None


def finished_deleting(obj: dict[str, Any]) -> bool:
    """True when a write leaves a marked object nothing to wait for: it is deleted instead of stored."""
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    if obj.get("kind") == "Namespace" and (obj.get("spec") or {}).get("finalizers"):
        return False
    return not (obj.get("kind") == "Pod" and meta.get("deletionGracePeriodSeconds"))
