"""DefaultTolerationSeconds admission: every new pod tolerates ``node.kubernetes.io/not-ready``
and ``node.kubernetes.io/unreachable`` (``NoExecute``) for 300 seconds, as Kubernetes' plugin of
that name adds, so a pod is evicted from a failed node five minutes after the taint appears.

Wraps the pod's other mutating admission (:func:`with_default_tolerations`). A pod that already
tolerates the taint (same key, or an empty key; effect ``NoExecute`` or empty) is left as it is;
updates are never touched.
"""

from __future__ import annotations

from typing import Any

from apiserver.registry import MutatingAdmission
from apiserver.settings import ApiServerSettings

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300


def _tolerates(tolerations: list[dict[str, Any]], key: str) -> bool:
    return any(t.get("key", "") in (key, "") and t.get("effect", "") in ("NoExecute", "")
               for t in tolerations)


def add_default_tolerations(pod: dict[str, Any], not_ready: int = DEFAULT_TOLERATION_SECONDS,
                            unreachable: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """Add the not-ready/unreachable tolerations a pod lacks (in place)."""
    spec = pod.setdefault("spec", {})
    tolerations: list[dict[str, Any]] = list(spec.get("tolerations") or [])
    for key, seconds in ((NOT_READY, not_ready), (UNREACHABLE, unreachable)):
        if not _tolerates(tolerations, key):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": seconds})
    if tolerations:
        spec["tolerations"] = tolerations


def with_default_tolerations(inner: MutatingAdmission | None, settings: ApiServerSettings) -> MutatingAdmission:
    """The pod admission ``inner`` followed by the default tolerations on create."""
    async def admit(pod: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        if inner is not None:
            await inner(pod, old, dry_run)
        if old is None:
            add_default_tolerations(pod, settings.default_not_ready_toleration_seconds,
                                    settings.default_unreachable_toleration_seconds)
    return admit
