"""Moving stored objects from kubelab's earlier key layout to Kubernetes' key layout.

Objects are stored under ``/registry/<root>/[<namespace>/]<name>``, where the root is the one
Kubernetes' storage factory uses (:attr:`machinery.resources.ResourceInfo.key_root`):
``/registry/deployments/…``, ``/registry/services/specs/…``, ``/registry/minions/…``. Earlier
versions of kubelab used ``/registry/<plural>.<group>/…`` (``/registry/deployments.apps/…``)
and, in the core group, the bare plural for every kind (``/registry/services/…``,
``/registry/endpoints/…``, ``/registry/nodes/…``).

:func:`migrate_key_layout` runs once at apiserver start, before the watch caches list the store.
It moves every object found under an earlier root to its key in the current layout: it creates
the new key with the object's bytes and then deletes the old key. The move is idempotent and
safe to interrupt: when the new key exists already, it wins and the old key is only deleted, so
a start after a crash finishes the job. An old key is recognised by its shape (``<ns>/<name>``
or ``<name>`` right under the earlier root), so a key of the current layout is never taken for
an old one (``/registry/services/specs/<ns>/<name>`` has one segment too many for an old
Service key under ``/registry/services/``). When no object is left in the earlier layout, the
marker key :data:`LAYOUT_KEY` records the layout version, and later starts only read it.

A moved object gets a new ``resourceVersion`` (the revision of its create; its ``uid`` and
content are unchanged). Clients list again after an apiserver restart in any case, and a watch
resumed from a revision before the move sees the objects arrive under their new keys.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from apiserver.storage.interface import KeyExistsError, KeyNotFoundError, RevisionConflictError, Storage
from machinery.resources import RESOURCES, ResourceInfo

log = logging.getLogger(__name__)

LAYOUT_KEY = "/kubelab/storage-layout"
"""Outside ``/registry/``: neither the watch caches nor ``etcdctl get --prefix /registry/`` see it."""

LAYOUT_VERSION = b"2"
"""Version 1 was the earlier layout (no marker); 2 is Kubernetes' layout."""

PAGE = 500


@dataclass(frozen=True)
class EarlierRoot:
    """Where one resource's objects were stored in the earlier layout."""

    root: str
    resource: ResourceInfo

    @property
    def prefix(self) -> str:
        return f"/registry/{self.root}/"

    def new_key(self, key: str) -> str | None:
        """The current key for an object stored at ``key`` in the earlier layout, or None when
        ``key`` is not an object key of this root (for example a key of the current layout)."""
        if not key.startswith(self.prefix):
            return None
        parts = key[len(self.prefix):].split("/")
        if len(parts) != (2 if self.resource.namespaced else 1) or not all(parts):
            return None
        namespace, name = (parts[0], parts[1]) if self.resource.namespaced else (None, parts[0])
        return self.resource.storage_key(namespace, name)


def earlier_roots(resources: Iterable[ResourceInfo] = RESOURCES) -> list[EarlierRoot]:
    """The earlier roots of every stored built-in kind whose root has changed."""
    found: dict[str, EarlierRoot] = {}
    for r in resources:
        stored = "get" in r.verbs  # the review kinds are answered by handlers, never stored
        if stored and r.group_resource != r.key_root and r.group_resource not in found:
            found[r.group_resource] = EarlierRoot(r.group_resource, r)
    return list(found.values())


async def migrate_key_layout(storage: Storage, resources: Iterable[ResourceInfo] = RESOURCES) -> int:
    """Move objects of the earlier layout to their current keys; returns how many moved."""
    marker = await storage.get(LAYOUT_KEY)
    if marker is not None and marker.value == LAYOUT_VERSION:
        return 0
    moved = 0
    for earlier in earlier_roots(resources):
        moved += await _move(storage, earlier)
    if moved:
        log.info("moved %d objects to Kubernetes' storage key layout (/registry/deployments/…, "
                 "/registry/services/specs/…); their resourceVersions are new", moved)
    await _mark(storage, marker.mod_revision if marker is not None else 0)
    return moved


async def _move(storage: Storage, earlier: EarlierRoot) -> int:
    moved = 0
    after = ""
    while True:
        page = await storage.list(earlier.prefix, limit=PAGE, start_after=after)
        for kv in page.items:
            new_key = earlier.new_key(kv.key)
            if new_key is None:
                continue
            try:
                await storage.create(new_key, kv.value)
            except KeyExistsError:
                pass  # moved before an interruption (or written since): the current key wins
            try:
                await storage.delete(kv.key)
            except KeyNotFoundError:
                pass  # another apiserver moved it at the same time
            moved += 1
        if not page.more or not page.items:
            return moved
        after = page.items[-1].key


async def _mark(storage: Storage, revision: int) -> None:
    try:
        if revision:
            await storage.update(LAYOUT_KEY, LAYOUT_VERSION, expected_revision=revision)
        else:
            await storage.create(LAYOUT_KEY, LAYOUT_VERSION)
    except (KeyExistsError, KeyNotFoundError, RevisionConflictError) as exc:
        log.debug("storage layout marker written concurrently: %s", exc)
