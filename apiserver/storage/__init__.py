"""Storage backends of the apiserver, behind one protocol (``interface.Storage``).

- ``memory``: :class:`~apiserver.storage.memory.MemoryStorage`, in-process, for unit tests;
- ``sqlite``: :class:`~apiserver.storage.sqlite.SqliteStorage`, the embedded default, a
  kine-style revision log in one file;
- ``etcd``: :class:`~apiserver.storage.etcd.EtcdStorage`, etcd v3 over gRPC to every member
  of an etcd cluster (failing over while a majority is up), for clusters that outgrow one machine.

The apiserver builds its store with :func:`open_storage` from its settings and then calls
``start()``; ``watchhub`` is the in-process watch fan-out the memory and sqlite stores share.
One conformance suite (tests/apiserver/storage) holds all three to the same semantics.
"""

from __future__ import annotations

from pathlib import Path

from apiserver.storage.interface import Storage

__all__ = ["STORAGE_KINDS", "open_storage"]

STORAGE_KINDS = ("sqlite", "etcd", "memory")
"""Names accepted by :func:`open_storage` (and the apiserver's ``--store`` flag)."""


def open_storage(
    kind: str,
    *,
    sqlite_path: Path | None = None,
    etcd_servers: list[str] | None = None,
    etcd_prefix: str = "",
) -> Storage:
    """Build (not start) the backend named ``kind``; raises ValueError on a bad configuration."""
    if kind == "memory":
        from apiserver.storage.memory import MemoryStorage

        return MemoryStorage()
    if kind == "sqlite":
        if sqlite_path is None:
            raise ValueError("the sqlite store needs sqlite_path")
        from apiserver.storage.sqlite import SqliteStorage

        return SqliteStorage(sqlite_path)
    if kind == "etcd":
        if not etcd_servers:
            raise ValueError("the etcd store needs at least one server URL")
        from apiserver.storage.etcd import EtcdStorage

        return EtcdStorage(etcd_servers, etcd_prefix)
    raise ValueError(f"unknown store {kind!r}; expected one of {', '.join(STORAGE_KINDS)}")
