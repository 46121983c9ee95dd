"""Defaults of PersistentVolume, PersistentVolumeClaim and StorageClass (``SetDefaults_*`` of core/v1
and storage/v1).

Registered in :data:`machinery.api.defaults.DEFAULTERS` through :data:`STORAGE_DEFAULTERS`. Only
unset fields get a value: a volume is ``Retain``ed and ``Filesystem`` unless it says otherwise, a
class deletes its volumes and binds them at once (``Immediate``), and new volumes and claims start
``Pending``.
"""

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]


def persistent_volume(obj: Obj) -> None:
    """``Retain``, ``Filesystem``, phase ``Pending`` (SetDefaults_PersistentVolume)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    if spec.get("hostPath") is not None:
        spec["hostPath"].setdefault("type", "")
    status = obj.setdefault("status", {})
    if not status.get("phase"):
        status["phase"] = "Pending"


def persistent_volume_claim(obj: Obj) -> None:
    """``Filesystem``, phase ``Pending`` (SetDefaults_PersistentVolumeClaim(Spec))."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    status = obj.setdefault("status", {})
    if not status.get("phase"):
        status["phase"] = "Pending"


def storage_class(obj: Obj) -> None:
    """``Delete`` and ``Immediate`` (SetDefaults_StorageClass)."""
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


STORAGE_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "PersistentVolume": persistent_volume,
    "PersistentVolumeClaim": persistent_volume_claim,
    "StorageClass": storage_class,
}
