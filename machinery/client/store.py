"""The informer's cache: objects by key, with indexes kept up to date on every change.

Owned by :class:`machinery.client.informer.SharedInformer` (its reflector is the only writer);
read by controllers through ``informer.store`` (``get``, ``list``, ``by_index``). Objects are
the plain dicts the apiserver sent; readers must not mutate them (copy before changing).

Built-in indexes, always on: ``namespace`` (``metadata.namespace``), ``node``
(``spec.nodeName``, for pods) and ``owner`` (the uid of every ``ownerReference``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any

from machinery.meta import object_key

__all__ = ["INDEX_NAMESPACE", "INDEX_NODE", "INDEX_OWNER_UID", "IndexFunc", "Store"]

INDEX_NAMESPACE = "namespace"
INDEX_NODE = "node"
INDEX_OWNER_UID = "owner"

IndexFunc = Callable[[dict[str, Any]], list[str]]
_Objects = list[dict[str, Any]]
_Updates = list[tuple[dict[str, Any], dict[str, Any]]]


def _by_namespace(obj: dict[str, Any]) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [str(ns)] if ns else []


def _by_node(obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec")
    node = spec.get("nodeName") if isinstance(spec, dict) else None
    return [str(node)] if node else []


def _by_owner(obj: dict[str, Any]) -> list[str]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [str(ref["uid"]) for ref in refs if isinstance(ref, dict) and ref.get("uid")]


class Store:
    """Objects keyed ``namespace/name`` plus named indexes (index value -> keys)."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        for name, fn in ((INDEX_NAMESPACE, _by_namespace), (INDEX_NODE, _by_node), (INDEX_OWNER_UID, _by_owner)):
            self.add_indexer(name, fn)

    # -- reading ----------------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        return self._items.get(key)

    def list(self) -> builtins.list[dict[str, Any]]:
        return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def by_index(self, index: str, value: str) -> builtins.list[dict[str, Any]]:
        """Objects whose ``index`` function answered ``value`` (KeyError for an unknown index)."""
        keys = self._indices[index].get(value, ())
        return [self._items[k] for k in sorted(keys)]

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return sorted(self._indices[index].get(value, ()))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    # -- writing (the reflector) ------------------------------------------------------------------

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Add (or replace) an index; existing objects are indexed at once."""
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        self._indices[name] = index
        for key, obj in self._items.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _index(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                index.setdefault(value, set()).add(key)

    def upsert(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Store ``obj``; answers the previous object under its key (None when new)."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, obj)
        return old

    def delete(self, key: str) -> dict[str, Any] | None:
        """Remove ``key``; answers the object it held (None when absent)."""
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objs: Iterable[dict[str, Any]]) -> tuple[_Objects, _Updates, _Objects]:
        """Make the store hold exactly ``objs``; answers (added, (old, new) updated, deleted last states)."""
        added: builtins.list[dict[str, Any]] = []
        updated: builtins.list[tuple[dict[str, Any], dict[str, Any]]] = []
        fresh: set[str] = set()
        for obj in objs:
            fresh.add(object_key(obj))
            old = self.upsert(obj)
            if old is None:
                added.append(obj)
            else:
                updated.append((old, obj))
        deleted = [old for key in [k for k in self._items if k not in fresh]
                   if (old := self.delete(key)) is not None]
        return added, updated, deleted
