"""ControllerRevisions of StatefulSets and DaemonSets: the pod template history that updates and
``kubectl rollout history/undo`` read (Kubernetes' ``controller_history.go``).

Used by ``controllers.statefulset`` and ``controllers.daemonset``. A revision's ``data`` is the
patch that restores its template (``{"spec": {"template": {..., "$patch": "replace"}}}``), its
name ``<owner>-<hash of data and collisionCount>``, its ``revision`` a number that grows; pods
carry the name in the ``controller-revision-hash`` label. Going back to an older template
re-numbers that revision as the newest instead of making a duplicate. Revisions beyond
``revisionHistoryLimit`` that no live pod uses are deleted, oldest first.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from controllers.ownership import controller_of, new_controller_ref
from machinery import errors
from machinery.client import INDEX_NAMESPACE, ApiClient, SharedInformer
from machinery.resources import CONTROLLERREVISIONS

log = logging.getLogger(__name__)

Obj = dict[str, Any]
REVISION_LABEL = "controller-revision-hash"
HASH_LABEL = "controller.kubernetes.io/hash"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_data(owner: Obj) -> Obj:
    """The revision data of ``owner``'s current pod template."""
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def revision_hash(data: Obj, collision_count: int) -> str:
    """A short name-safe hash of ``data`` (and the collision count, to step around a clash)."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode() + str(collision_count).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    out: list[str] = []
    while number and len(out) < 10:
        number, rest = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[rest])
    return "".join(out) or "b"


@dataclass
class Revisions:
    """The outcome of :meth:`History.sync`."""

    current: Obj
    update: Obj
    collision_count: int


class History:
    """Revisions of one kind of owner, read from the shared ControllerRevision informer."""

    def __init__(self, client: ApiClient, informer: SharedInformer, *, api_version: str, kind: str) -> None:
        self.client = client
        self.informer = informer
        self.api_version = api_version
        self.kind = kind

    def owned(self, owner: Obj) -> list[Obj]:
        """The owner's revisions, oldest first."""
        uid = owner["metadata"].get("uid")
        items = [r for r in self.informer.store.by_index(INDEX_NAMESPACE, owner["metadata"]["namespace"])
                 if (controller_of(r) or {}).get("uid") == uid]
        return sorted(items, key=lambda r: (int(r.get("revision") or 0), r["metadata"]["name"]))

    async def sync(self, owner: Obj) -> Revisions:
        """Make sure the current template has a revision (the newest); find the current one."""
        revisions = self.owned(owner)
        data = template_data(owner)
        status = owner.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        latest = max((int(r.get("revision") or 0) for r in revisions), default=0)
        update = next((r for r in reversed(revisions) if r.get("data") == data), None)
        if update is not None and int(update.get("revision") or 0) != latest:
            update = await self._renumber(update, latest + 1)
        while update is None:
            update, clashed = await self._create(owner, data, collisions, latest + 1)
            if clashed:
                collisions += 1
        current_name = status.get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == current_name), update)
        return Revisions(current=current, update=update, collision_count=collisions)

    async def _renumber(self, revision: Obj, number: int) -> Obj:
        meta = revision["metadata"]
        return await self.client.patch(CONTROLLERREVISIONS, meta["name"], {"revision": number},
                                       namespace=meta["namespace"])

    async def _create(self, owner: Obj, data: Obj, collisions: int, number: int) -> tuple[Obj | None, bool]:
        meta = owner["metadata"]
        name = f"{meta['name']}-{revision_hash(data, collisions)}"
        labels = dict((((owner.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})
        labels[HASH_LABEL] = name.rsplit("-", 1)[1]
        body = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                             "ownerReferences": [new_controller_ref(owner, api_version=self.api_version,
                                                                    kind=self.kind)]},
                "data": data, "revision": number}
        try:
            return await self.client.create(CONTROLLERREVISIONS, body, namespace=meta["namespace"]), False
        except errors.AlreadyExistsError:
            existing = await self.client.get(CONTROLLERREVISIONS, name, namespace=meta["namespace"])
            if (controller_of(existing) or {}).get("uid") == meta["uid"] and existing.get("data") == data:
                return existing, False
            return None, True

    async def truncate(self, owner: Obj, keep: set[str]) -> None:
        """Delete the oldest revisions beyond ``revisionHistoryLimit`` whose names are not in ``keep``."""
        limit = int((owner.get("spec") or {}).get("revisionHistoryLimit") or 10)
        old = [r for r in self.owned(owner) if r["metadata"]["name"] not in keep]
        for revision in old[:max(0, len(old) - limit)]:
            meta = revision["metadata"]
            try:
                await self.client.delete(CONTROLLERREVISIONS, meta["name"], namespace=meta["namespace"],
                                         preconditions={"uid": meta["uid"]})
            except (errors.NotFoundError, errors.ConflictError):
                pass
