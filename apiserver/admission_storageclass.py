"""Storage admission: Kubernetes' DefaultStorageClass and PersistentVolumeClaimResize plugins.

- DefaultStorageClass: a new PersistentVolumeClaim that names no class (``storageClassName``
  absent or null, and no beta class annotation) gets the cluster's default class — the StorageClass
  annotated ``storageclass.kubernetes.io/is-default-class: "true"`` (the newest one when several
  are, as Kubernetes picks). An empty ``storageClassName: ""`` means "no class" and is kept. Without a
  default class the claim is admitted unchanged.
- PersistentVolumeClaimResize: raising a claim's storage request is allowed only for a bound claim
  whose class sets ``allowVolumeExpansion: true``; otherwise the update is refused with Kubernetes'
  403 wording.

Wired as the PersistentVolumeClaim mutating admission in ``apiserver.context``; classes are read
from the StorageClass watch cache through the lookups it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from machinery.errors import ForbiddenError
from machinery.quantity import parse_quantity

Obj = dict[str, Any]
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
RESIZE_REFUSED = ("only dynamically provisioned pvc can be resized and the storageclass that provisions "
                  "the pvc must support resize")
UNBOUND_RESIZE = "Only bound persistent volume claims can be expanded"


def is_default_class(storage_class: Obj) -> bool:
    """Whether a StorageClass is marked as the cluster default (GA or beta annotation)."""
    annotations = (storage_class.get("metadata") or {}).get("annotations") or {}
    return any(annotations.get(key) == "true" for key in (DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION))


def default_class(classes: list[Obj]) -> Obj | None:
    """The default StorageClass: the newest of those marked default (ties broken by name)."""
    marked = [c for c in classes if is_default_class(c)]
    if not marked:
        return None
    return max(marked, key=lambda c: (str(c["metadata"].get("creationTimestamp") or ""),
                                      str(c["metadata"].get("name") or "")))


def _storage(claim: Obj) -> Any:
    return (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")


class StorageClassAdmission:
    """The PersistentVolumeClaim admission: default class on create, resize rules on update."""

    def __init__(self, classes: Callable[[], list[Obj]]) -> None:
        self._classes = classes
        """Every StorageClass the apiserver knows (the watch cache's current view)."""

    async def admit(self, claim: Obj, old: Obj | None, dry_run: bool) -> None:
        if old is None:
            self._set_default_class(claim)
        else:
            self._check_resize(claim, old)

    def _set_default_class(self, claim: Obj) -> None:
        spec = claim.setdefault("spec", {})
        annotations = (claim.get("metadata") or {}).get("annotations") or {}
        if spec.get("storageClassName") is not None or BETA_CLASS_ANNOTATION in annotations:
            return
        chosen = default_class(self._classes())
        if chosen is not None:
            spec["storageClassName"] = chosen["metadata"]["name"]

    def _check_resize(self, claim: Obj, old: Obj) -> None:
        new_size, old_size = _storage(claim), _storage(old)
        if new_size is None or old_size is None:
            return
        try:
            grows = parse_quantity(str(new_size)) > parse_quantity(str(old_size))
        except ValueError:
            return  # validation reports the malformed quantity
        if not grows:
            return
        name = str((claim.get("metadata") or {}).get("name") or "")
        if ((old.get("status") or {}).get("phase")) != "Bound":
            raise ForbiddenError(f'persistentvolumeclaims "{name}" is forbidden: {UNBOUND_RESIZE}',
                                 name=name, kind="persistentvolumeclaims")
        class_name = (old.get("spec") or {}).get("storageClassName")
        storage_class = next((c for c in self._classes() if c["metadata"].get("name") == class_name), None)
        if not class_name or storage_class is None or not storage_class.get("allowVolumeExpansion"):
            raise ForbiddenError(f'persistentvolumeclaims "{name}" is forbidden: {RESIZE_REFUSED}',
                                 name=name, kind="persistentvolumeclaims")
