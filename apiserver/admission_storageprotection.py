"""StorageObjectInUseProtection admission: a new PersistentVolumeClaim gets the
``kubernetes.io/pvc-protection`` finalizer and a new PersistentVolume ``kubernetes.io/pv-protection``,
as Kubernetes' plugin of that name adds them, so neither can vanish between its creation and the
first look of the protection controllers.

Wraps the kind's other mutating admission (:func:`with_storage_protection`), in the built-in
step before the mutating webhooks (which therefore see the finalizer). Only creates are touched:
the finalizer is appended when missing and never duplicated; updates, including the one by which
``controllers.pvcprotection`` removes the finalizer once the object is unused, pass unchanged.
"""

from __future__ import annotations

from typing import Any

from apiserver.registry import MutatingAdmission
from machinery.volumebinding import PV_PROTECTION, PVC_PROTECTION

PROTECTION_FINALIZERS = {"PersistentVolumeClaim": PVC_PROTECTION, "PersistentVolume": PV_PROTECTION}


def add_protection_finalizer(obj: dict[str, Any], finalizer: str) -> None:
    """Append ``finalizer`` to the object's finalizers unless it is there (in place)."""
    meta = obj.setdefault("metadata", {})
    finalizers = list(meta.get("finalizers") or [])
    if finalizer not in finalizers:
        meta["finalizers"] = [*finalizers, finalizer]


def with_storage_protection(kind: str, inner: MutatingAdmission | None) -> MutatingAdmission:
    """The admission ``inner`` of ``kind`` (a claim or a volume) followed by its protection
    finalizer on create."""
    finalizer = PROTECTION_FINALIZERS[kind]

    async def admit(obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        if inner is not None:
            await inner(obj, old, dry_run)
        if old is None:
            add_protection_finalizer(obj, finalizer)
    return admit
