"""The SQLite revision log: schema, row semantics and the queries the sqlite store runs.

Table ``kv`` holds one row per write: ``revision`` (the global revision, INTEGER PRIMARY KEY
AUTOINCREMENT so it never goes back even after rows are deleted), ``key``, ``created`` and
``deleted`` flags, ``create_revision``, ``prev_revision`` (the key's previous row), ``value``
(for a tombstone: the last value) and ``old_value`` (the value this write replaced). An index on
``(key, revision)`` finds a key's latest row; the state at revision R is, per key, the latest
row <= R unless it is a tombstone. Table ``meta`` keeps the compacted revision.

Compaction deletes log rows at or below the revision that are superseded at that revision, and
all tombstones there; live keys keep their latest row.

Everything here is a plain function of an open ``sqlite3.Connection``: no threads, no event
loop. :mod:`apiserver.storage.sqlite_writer` calls :func:`apply_write` and :func:`compact` inside
its transactions; :mod:`apiserver.storage.sqlite` runs the reads inside a read snapshot.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Literal

from apiserver.storage.interface import (
    CompactedError,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    RevisionConflictError,
    StorageEvent,
)

WriteKind = Literal["create", "update", "delete", "compact"]
"""What a queued write does to the log."""

SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
"""Values of ``PRAGMA synchronous`` a store may be opened with."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS kv_key_revision ON kv (key, revision);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_LATEST_ROW = (
    "SELECT revision, create_revision, deleted, value FROM kv WHERE key = ? "
    "ORDER BY revision DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO kv (revision, key, created, deleted, create_revision, prev_revision, value, "
    "old_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_COMPACT = """
DELETE FROM kv WHERE revision <= :rev AND (deleted = 1 OR revision < (
    SELECT MAX(k2.revision) FROM kv AS k2 WHERE k2.key = kv.key AND k2.revision <= :rev))
"""
_RECORD_COMPACTED = (
    "INSERT INTO meta (name, value) VALUES ('compacted', ?) ON CONFLICT(name) "
    "DO UPDATE SET value = max(value, excluded.value)"
)


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with WAL, the given ``synchronous`` mode and a busy timeout."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def prefix_clause(prefix: str, start_after: str = "") -> tuple[str, list[Any]]:
    """SQL condition (and parameters) selecting keys under ``prefix`` and after ``start_after``."""
    clauses, params = [], []
    if prefix:
        clauses.append("key >= ?")
        params.append(prefix)
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            clauses.append("key < ?")
            params.append(prefix[:-1] + chr(last + 1))
    if start_after:
        clauses.append("key > ?")
        params.append(start_after)
    return (" AND ".join(clauses) or "1"), params


def snapshot_revisions(conn: sqlite3.Connection) -> tuple[int, int]:
    """The current and the compacted revision as ``conn`` sees them."""
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kv'").fetchone()
    comp = conn.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
    return (seq[0] if seq else 0), (comp[0] if comp else 0)


# -- reads ----------------------------------------------------------------------------------


def get_latest(conn: sqlite3.Connection, key: str) -> KeyValue | None:
    """The live value of ``key``, or None when it is absent or deleted."""
    row = conn.execute(_LATEST_ROW, (key,)).fetchone()
    if row is None or row[2]:
        return None
    return KeyValue(key, row[3], row[1], row[0])


def list_at(
    conn: sqlite3.Connection, prefix: str, *, revision: int, limit: int, start_after: str
) -> ListResult:
    """Live keys under ``prefix`` at ``revision`` (0: current), sorted, at most ``limit`` (0: all)."""
    where, params = prefix_clause(prefix, start_after)
    current, compacted = snapshot_revisions(conn)
    at = revision or current
    if revision and revision != current:
        if revision <= compacted:
            raise CompactedError(revision, compacted)
        if revision > current:
            raise FutureRevisionError(f"revision {revision} is newer than {current}")
    sql = (
        "SELECT kv.key, kv.value, kv.create_revision, kv.revision FROM kv JOIN "
        f"(SELECT key AS k, MAX(revision) AS r FROM kv WHERE {where} AND revision <= ? "
        "GROUP BY key) AS m ON kv.revision = m.r WHERE kv.deleted = 0 ORDER BY kv.key"
    )
    args: list[Any] = [*params, at]
    if limit > 0:
        sql += " LIMIT ?"
        args.append(limit + 1)
    rows = conn.execute(sql, args).fetchall()
    more = limit > 0 and len(rows) > limit
    if more:
        rows = rows[:limit]
    return ListResult([KeyValue(r[0], r[1], r[2], r[3]) for r in rows], at, more)


def count_live(conn: sqlite3.Connection, prefix: str) -> int:
    """How many live keys lie under ``prefix``."""
    where, params = prefix_clause(prefix)
    sql = (
        f"SELECT COUNT(*) FROM kv WHERE {where} AND deleted = 0 AND revision = "
        "(SELECT MAX(k2.revision) FROM kv AS k2 WHERE k2.key = kv.key)"
    )
    return int(conn.execute(sql, params).fetchone()[0])


def events_after(conn: sqlite3.Connection, prefix: str, after: int, limit: int) -> list[StorageEvent]:
    """Up to ``limit`` writes under ``prefix`` with revision > ``after``, oldest first.

    Raises :class:`CompactedError` when the log no longer holds every write after ``after``.
    """
    where, params = prefix_clause(prefix)
    _, compacted = snapshot_revisions(conn)
    if after < compacted:
        raise CompactedError(after, compacted)
    sql = (
        "SELECT revision, key, value, created, deleted, old_value FROM kv "
        f"WHERE revision > ? AND {where} ORDER BY revision LIMIT {int(limit)}"
    )
    return [
        StorageEvent(
            type=EventType.DELETE if r[4] else EventType.PUT,
            key=r[1],
            value=r[2],
            revision=r[0],
            prev_value=r[5],
            created=bool(r[3]),
        )
        for r in conn.execute(sql, [after, *params])
    ]


# -- writes (inside the writer's transaction) -----------------------------------------------


def apply_write(
    conn: sqlite3.Connection, kind: WriteKind, key: str, value: bytes, expected: int, rev: int
) -> tuple[Any, StorageEvent]:
    """Append the row of one create, update or delete at revision ``rev``; its result and event.

    Raises :class:`KeyExistsError`, :class:`KeyNotFoundError` or :class:`RevisionConflictError`
    (nothing written) when the write's precondition does not hold.
    """
    row = conn.execute(_LATEST_ROW, (key,)).fetchone()
    live = row is not None and not row[2]
    if kind == "create":
        if live:
            raise KeyExistsError(key)
        prev = row[0] if row else 0
        conn.execute(_INSERT, (rev, key, 1, 0, rev, prev, value, None))
        return rev, StorageEvent(EventType.PUT, key, value, rev, None, True)
    if not live:
        raise KeyNotFoundError(key)
    mod, create, old = row[0], row[1], row[3]
    if (expected or kind == "update") and mod != expected:
        raise RevisionConflictError(key, KeyValue(key, old, create, mod))
    if kind == "update":
        conn.execute(_INSERT, (rev, key, 0, 0, create, mod, value, old))
        return rev, StorageEvent(EventType.PUT, key, value, rev, old, False)
    conn.execute(_INSERT, (rev, key, 0, 1, create, mod, old, old))
    return KeyValue(key, old, create, rev), StorageEvent(EventType.DELETE, key, old, rev, old)


def compact(conn: sqlite3.Connection, revision: int) -> None:
    """Drop what no read at or after ``revision`` needs, and record ``revision`` as compacted."""
    conn.execute(_COMPACT, {"rev": revision})
    conn.execute(_RECORD_COMPACTED, (revision,))
