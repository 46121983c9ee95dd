"""Controller references: adoption and release of dependents (Kubernetes' ControllerRefManager).

Used by the ReplicaSet controller (claims pods) and the Deployment controller (claims
ReplicaSets). A dependent belongs to at most one controller: the ownerReference with
``controller: true``. A controller adopts orphans its selector matches and releases dependents
it owns that its selector no longer matches. Writes are merge patches carrying the dependent's
``resourceVersion``, so a concurrent change gives a 409 that is retried through the workqueue.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from machinery import errors
from machinery.resources import ResourceInfo
from machinery.selectors import LabelSelector

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owning_key(pod: Obj, kind: str, owners: Callable[[str], Obj | None]) -> str | None:
    """The ``namespace/name`` key of the ``kind`` object that controls ``pod`` (its controllerRef),
    when ``owners`` (a cache lookup by key) holds that very object (same UID); else None."""
    ref = controller_of(pod)
    if ref is None or ref.get("kind") != kind:
        return None
    key = f"{pod['metadata'].get('namespace', '')}/{ref.get('name')}"
    owner = owners(key)
    return key if owner is not None and owner["metadata"].get("uid") == ref.get("uid") else None


def new_controller_ref(owner: Obj, *, api_version: str, kind: str) -> Obj:
    """The ownerReference a controller puts on what it creates or adopts."""
    meta = owner["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def is_terminating(obj: Obj) -> bool:
    """True once ``metadata.deletionTimestamp`` is set."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def labels_of(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


class RefManager:
    """Claims dependents for one controller object (one sync; re-created every sync).

    ``can_adopt`` re-reads the controller from the API (not the cache) once before the first
    adoption, as Kubernetes does, so a controller deleted meanwhile adopts nothing.
    """

    def __init__(self, *, owner: Obj, selector: LabelSelector, owner_api_version: str, owner_kind: str,
                 resource: ResourceInfo, patch: Callable[[str, str, Obj], Awaitable[Obj]],
                 can_adopt: Callable[[], Awaitable[None]]) -> None:
        self.owner = owner
        self.selector = selector
        self.owner_ref = new_controller_ref(owner, api_version=owner_api_version, kind=owner_kind)
        self.resource = resource
        self._patch = patch
        self._can_adopt = can_adopt
        self._adopt_checked = False

    @property
    def uid(self) -> str:
        return str(self.owner["metadata"]["uid"])

    async def claim(self, candidates: list[Obj]) -> list[Obj]:
        """The candidates this controller owns after adopting/releasing as needed."""
        claimed: list[Obj] = []
        first_error: Exception | None = None
        for obj in candidates:
            try:
                result = await self._claim_one(obj)
            except errors.NotFoundError:
                continue
            except Exception as exc:  # the first error is raised after the loop
                first_error = first_error or exc
                continue
            if result is not None:
                claimed.append(result)
        if first_error is not None:
            raise first_error
        return claimed

    async def _claim_one(self, obj: Obj) -> Obj | None:
        ref = controller_of(obj)
        matches = self.selector.matches(labels_of(obj))
        if ref is not None:
            if ref.get("uid") != self.uid:
                return None
            if matches:
                return obj
            if is_terminating(self.owner):
                return None
            await self._release(obj)
            return None
        if not matches or is_terminating(self.owner) or is_terminating(obj):
            return None
        if not self._adopt_checked:
            await self._can_adopt()
            self._adopt_checked = True
        return await self._adopt(obj)

    async def _adopt(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != self.uid]
        refs.append(self.owner_ref)
        log.info("adopting %s %s/%s into %s", self.resource.kind, meta.get("namespace"), meta["name"],
                 self.owner["metadata"]["name"])
        return await self._patch(meta["namespace"], meta["name"],
                                 {"metadata": {"ownerReferences": refs, "resourceVersion": meta["resourceVersion"]}})

    async def _release(self, obj: Obj) -> None:
        meta = obj["metadata"]
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != self.uid]
        log.info("releasing %s %s/%s from %s", self.resource.kind, meta.get("namespace"), meta["name"],
                 self.owner["metadata"]["name"])
        try:
            await self._patch(meta["namespace"], meta["name"],
                              {"metadata": {"ownerReferences": refs or None,
                                            "resourceVersion": meta["resourceVersion"]}})
        except (errors.NotFoundError, errors.InvalidError):
            pass
