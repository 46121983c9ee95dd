"""Printers for PersistentVolume, PersistentVolumeClaim and StorageClass.

Registered in :mod:`apiserver.printing.table` through :data:`STORAGE_PRINTERS`. Cells follow
Kubernetes' printers: access modes abbreviated (``RWO,ROX,RWX,RWOP`` in that order), a volume's
claim as ``namespace/name``, a claim's volume, capacity and modes only once it names a volume,
``<unset>`` for no volume attributes class, and the default class named ``local-path (default)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column, Printer
from apiserver.printing.humanize import dig, since

UNSET = "<unset>"
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP"))

PV_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Capacity", "string", description="Capacity of the volume."),
    Column("Access Modes", "string", description="Ways the volume can be mounted."),
    Column("Reclaim Policy", "string", description="What happens to the volume when its claim is released."),
    Column("Status", "string", description="Phase of the volume."),
    Column("Claim", "string", description="The claim bound to the volume."),
    Column("StorageClass", "string", description="Class of the volume."),
    Column("VolumeAttributesClass", "string", description="Volume attributes class of the volume."),
    Column("Reason", "string", description="Why the volume is in its phase."),
    AGE,
    Column("VolumeMode", "string", description="Filesystem or Block.", priority=1),
)

PVC_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Status", "string", description="Phase of the claim."),
    Column("Volume", "string", description="The volume bound to the claim."),
    Column("Capacity", "string", description="Capacity of the bound volume."),
    Column("Access Modes", "string", description="Ways the bound volume can be mounted."),
    Column("StorageClass", "string", description="Class of the claim."),
    Column("VolumeAttributesClass", "string", description="Volume attributes class of the claim."),
    AGE,
    Column("VolumeMode", "string", description="Filesystem or Block.", priority=1),
)

STORAGECLASS_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Provisioner", "string", description="Provisioner of the class's volumes."),
    Column("ReclaimPolicy", "string", description="Reclaim policy of the class's volumes."),
    Column("VolumeBindingMode", "string", description="When claims of the class are bound."),
    Column("AllowVolumeExpansion", "string", description="Whether claims of the class may grow."),
    AGE,
)


def access_modes(modes: list[str] | None) -> str:
    """``RWO,RWX`` — Kubernetes' short form, in its fixed order."""
    present = set(modes or [])
    return ",".join(short for mode, short in _MODES if mode in present)


def _class_name(obj: dict[str, Any]) -> str:
    annotations = dig(obj, "metadata", "annotations") or {}
    if annotations.get(BETA_CLASS_ANNOTATION):
        return str(annotations[BETA_CLASS_ANNOTATION])
    return str(dig(obj, "spec", "storageClassName") or "")


def pv_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, CAPACITY, ACCESS MODES, RECLAIM POLICY, STATUS, CLAIM, STORAGECLASS, VOLUMEATTRIBUTESCLASS,
    REASON, AGE, VOLUMEMODE."""
    claim_ref = dig(obj, "spec", "claimRef") or {}
    claim = f"{claim_ref.get('namespace', '')}/{claim_ref.get('name', '')}" if claim_ref else ""
    capacity = (dig(obj, "spec", "capacity") or {}).get("storage", "")
    phase = "Terminating" if dig(obj, "metadata", "deletionTimestamp") else dig(obj, "status", "phase") or ""
    return [
        dig(obj, "metadata", "name") or "", str(capacity), access_modes(dig(obj, "spec", "accessModes")),
        dig(obj, "spec", "persistentVolumeReclaimPolicy") or "", phase, claim,
        _class_name(obj), dig(obj, "spec", "volumeAttributesClassName") or UNSET, dig(obj, "status", "reason") or "",
        since(dig(obj, "metadata", "creationTimestamp"), now), dig(obj, "spec", "volumeMode") or "<unset>",
    ]


def pvc_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, STATUS, VOLUME, CAPACITY, ACCESS MODES, STORAGECLASS, VOLUMEATTRIBUTESCLASS, AGE, VOLUMEMODE."""
    phase = dig(obj, "status", "phase") or ""
    if dig(obj, "metadata", "deletionTimestamp"):
        phase = "Terminating"
    volume = dig(obj, "spec", "volumeName") or ""
    capacity = modes = ""
    if volume:
        modes = access_modes(dig(obj, "status", "accessModes"))
        capacity = str((dig(obj, "status", "capacity") or {}).get("storage", ""))
    return [
        dig(obj, "metadata", "name") or "", phase, volume, capacity, modes, _class_name(obj),
        dig(obj, "spec", "volumeAttributesClassName") or UNSET, since(dig(obj, "metadata", "creationTimestamp"), now),
        dig(obj, "spec", "volumeMode") or "<unset>",
    ]


def storageclass_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME (with `` (default)``), PROVISIONER, RECLAIMPOLICY, VOLUMEBINDINGMODE, ALLOWVOLUMEEXPANSION, AGE."""
    name = str(dig(obj, "metadata", "name") or "")
    annotations = dig(obj, "metadata", "annotations") or {}
    if any(annotations.get(key) == "true" for key in DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    return [
        name, obj.get("provisioner") or "", obj.get("reclaimPolicy") or "Delete",
        obj.get("volumeBindingMode") or "Immediate", "true" if obj.get("allowVolumeExpansion") else "false",
        since(dig(obj, "metadata", "creationTimestamp"), now),
    ]


STORAGE_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "PersistentVolume"): Printer(PV_COLUMNS, pv_cells),
    ("", "PersistentVolumeClaim"): Printer(PVC_COLUMNS, pvc_cells),
    ("storage.k8s.io", "StorageClass"): Printer(STORAGECLASS_COLUMNS, storageclass_cells),
}
