"""Taint and toleration rules of node lifecycle: which NoExecute taints a node gets, when a pod goes.

Pure functions used by ``controllers.nodelifecycle`` (and unit-tested on their own), following
Kubernetes' node lifecycle controller and taint-based eviction (pkg/controller/tainteviction):

- a node whose ``Ready`` condition is ``Unknown`` carries ``node.kubernetes.io/unreachable``,
  one whose ``Ready`` is ``False`` carries ``node.kubernetes.io/not-ready`` — each with the
  ``NoExecute`` and ``NoSchedule`` effects; a Ready node carries neither;
- a pod on a node with NoExecute taints is evicted at once when one taint is not tolerated,
  never when every matching toleration lacks ``tolerationSeconds``, and otherwise after the
  smallest ``tolerationSeconds`` among the tolerations used. A pod with no toleration for the
  not-ready/unreachable taints is treated as if it had the default one Kubernetes' admission
  adds (``DefaultTolerationSeconds``, 300 s unless configured).
"""

from __future__ import annotations

from typing import Any

TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
MANAGED_TAINTS = (TAINT_UNREACHABLE, TAINT_NOT_READY)
NO_EXECUTE = "NoExecute"
NO_SCHEDULE = "NoSchedule"


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The status condition of ``type_`` (nodes and pods), if present."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def ready_status(node: dict[str, Any]) -> str:
    """``True`` / ``False`` / ``Unknown`` (a node that never reported is ``Unknown``)."""
    cond = condition(node, "Ready")
    return str(cond.get("status")) if cond else "Unknown"


def desired_taints(node: dict[str, Any], now: str) -> list[dict[str, Any]]:
    """The node's taints with the managed ones matching its Ready condition.

    Unmanaged taints are kept in order; a managed taint that stays keeps its ``timeAdded``.
    """
    status = ready_status(node)
    wanted: str | None = {"Unknown": TAINT_UNREACHABLE, "False": TAINT_NOT_READY}.get(status)
    current: list[dict[str, Any]] = list((node.get("spec") or {}).get("taints") or [])
    kept = [t for t in current if t.get("key") not in MANAGED_TAINTS]
    if wanted is None:
        return kept
    for effect in (NO_SCHEDULE, NO_EXECUTE):
        existing = next((t for t in current if t.get("key") == wanted and t.get("effect") == effect), None)
        if existing is not None:
            kept.append(existing)
        elif effect == NO_EXECUTE:
            kept.append({"key": wanted, "effect": effect, "timeAdded": now})
        else:
            kept.append({"key": wanted, "effect": effect})
    return kept


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def eviction_delay(pod: dict[str, Any], taints: list[dict[str, Any]],
                   defaults: dict[str, float]) -> float | None:
    """Seconds after the taints were added when the pod must go; ``None``: it may stay.

    ``defaults`` maps a taint key to the implicit tolerationSeconds of a pod that has no
    toleration for it (not-ready / unreachable).
    """
    tolerations: list[dict[str, Any]] = list((pod.get("spec") or {}).get("tolerations") or [])
    seconds: list[float] = []
    for taint in taints:
        if taint.get("effect") != NO_EXECUTE:
            continue
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used:
            default = defaults.get(str(taint.get("key")))
            if default is None:
                return 0.0
            seconds.append(default)
            continue
        seconds.extend(max(float(t["tolerationSeconds"]), 0.0) for t in used
                       if t.get("tolerationSeconds") is not None)
    return min(seconds) if seconds else None


def no_execute(taints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The NoExecute taints among ``taints``."""
    return [t for t in taints if t.get("effect") == NO_EXECUTE]
