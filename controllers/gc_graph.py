"""The garbage collector's ownership graph: every observed object by uid, and its dependents.

Owned by ``controllers.garbagecollector`` (its informer handlers call :meth:`OwnerGraph.observe`
and :meth:`OwnerGraph.forget`); pure data, no I/O, so the decisions the collector takes from it
are unit-tested without an apiserver. Like Kubernetes' ``uidToNode``, an ownerReference to a uid
that was never observed is simply absent from :meth:`OwnerGraph.node`; the collector then
verifies the owner with a live GET before deleting anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from machinery.resources import ResourceInfo

FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"


@dataclass
class Node:
    """One observed object: where it lives, who owns it, whether it is being deleted."""

    uid: str
    resource: ResourceInfo
    namespace: str | None
    name: str
    owner_refs: list[dict[str, Any]] = field(default_factory=list)
    deleting: bool = False
    finalizers: tuple[str, ...] = ()

    @property
    def deleting_dependents(self) -> bool:
        """Foreground deletion in progress: waits for its blocking dependents."""
        return self.deleting and FOREGROUND_FINALIZER in self.finalizers

    @property
    def orphaning(self) -> bool:
        """Orphan deletion in progress: its dependents must be released first."""
        return self.deleting and ORPHAN_FINALIZER in self.finalizers

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def _owner_uids(refs: list[dict[str, Any]]) -> set[str]:
    return {str(r["uid"]) for r in refs if r.get("uid")}


class OwnerGraph:
    """Objects by uid plus the reverse edges owner uid -> dependent uids."""

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._dependents: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def node(self, uid: str) -> Node | None:
        return self._nodes.get(uid)

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def observe(self, resource: ResourceInfo, obj: dict[str, Any]) -> Node | None:
        """Add or refresh the object's node; returns it (None for an object without uid)."""
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if not uid:
            return None
        refs = [dict(r) for r in meta.get("ownerReferences") or []]
        old = self._nodes.get(uid)
        if old is not None:
            for owner in _owner_uids(old.owner_refs) - _owner_uids(refs):
                self._unlink(owner, uid)
        node = Node(uid=uid, resource=resource, namespace=meta.get("namespace") or None,
                    name=str(meta.get("name", "")), owner_refs=refs,
                    deleting=bool(meta.get("deletionTimestamp")),
                    finalizers=tuple(meta.get("finalizers") or ()))
        self._nodes[uid] = node
        for owner in _owner_uids(refs):
            self._dependents.setdefault(owner, set()).add(uid)
        return node

    def forget(self, obj: dict[str, Any]) -> Node | None:
        """Drop the object (it was deleted); returns the node it had."""
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        node = self._nodes.pop(uid, None)
        if node is not None:
            for owner in _owner_uids(node.owner_refs):
                self._unlink(owner, uid)
        return node

    def _unlink(self, owner: str, dependent: str) -> None:
        deps = self._dependents.get(owner)
        if deps is not None:
            deps.discard(dependent)
            if not deps:
                del self._dependents[owner]

    def dependents(self, owner_uid: str) -> list[Node]:
        """Observed objects with an ownerReference to ``owner_uid``."""
        return [self._nodes[d] for d in sorted(self._dependents.get(owner_uid, ())) if d in self._nodes]

    def blocking_dependents(self, owner_uid: str) -> list[Node]:
        """Dependents whose reference to the owner sets ``blockOwnerDeletion``."""
        return [d for d in self.dependents(owner_uid)
                if any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion") for r in d.owner_refs)]

    def unobserved_owners(self, node: Node) -> list[dict[str, Any]]:
        """The node's ownerReferences whose owner uid is not in the graph."""
        return [r for r in node.owner_refs if str(r.get("uid")) not in self._nodes]


def without_owner(refs: list[dict[str, Any]], owner_uids: set[str]) -> list[dict[str, Any]]:
    """``refs`` minus the references to any of ``owner_uids``."""
    return [r for r in refs if str(r.get("uid")) not in owner_uids]


def deletion_policy(finalizers: list[str] | tuple[str, ...]) -> str:
    """The propagation policy to delete a garbage object with, from its own finalizers."""
    if ORPHAN_FINALIZER in finalizers:
        return "Orphan"
    if FOREGROUND_FINALIZER in finalizers:
        return "Foreground"
    return "Background"
