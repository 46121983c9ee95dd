"""``SqliteStorage``: the embedded default backend, a kine-style revision log in one SQLite file.

Table ``kv`` holds one row per write: ``revision`` (the global revision, INTEGER PRIMARY KEY
AUTOINCREMENT so it never goes back even after rows are deleted), ``key``, ``created`` and
``deleted`` flags, ``create_revision``, ``prev_revision`` (the key's previous row), ``value``
(for a tombstone: the last value) and ``old_value`` (the value this write replaced). An index on
``(key, revision)`` finds a key's latest row; the state at revision R is, per key, the latest
row <= R unless it is a tombstone. Table ``meta`` keeps the compacted revision.

Threads: the stdlib ``sqlite3`` module blocks, so no SQL runs on the event loop. One dedicated
writer thread owns the write connection and does group commit: it takes every write queued
while the previous transaction was committing, applies them in order in ONE transaction (each
sees the ones before it), commits, and then hands results and events back to the loop in a
single ``call_soon_threadsafe``. The loop publishes the events to watchers (in revision order)
before resolving the callers' futures. Reads run on a second single-thread executor with its
own connection; WAL lets them proceed while the writer commits, each read inside one snapshot.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``. In WAL mode NORMAL never corrupts
the database and survives a crash of the process; only an OS crash or power loss can lose the
last transactions committed before the next checkpoint. That is the trade kine and most
embedded Kubernetes stores make for a laptop cluster: FULL would fsync each group commit and
cut write throughput several times. Pass ``synchronous="FULL"`` to get per-commit fsync.

Failures: an SQLite error fails the writes of its transaction (a ``StorageError``, a 500) and the
writer carries on. Anything else escaping the writer thread (a bug, ``MemoryError``) leaves the
store unusable: the writer rolls back, every write it held or that is still queued fails with a
``StorageError`` (500) at once, later writes fail the same way instead of waiting forever, and
``on_broken`` is called on the loop. Its default logs the failure and ends the process with exit
code 70 shortly after (the failed requests are answered first), so the process supervisor starts
a fresh apiserver on the intact database -- the way a Go apiserver panics. ``before_commit`` is
a test seam: called on the writer thread before each commit, it may raise to inject a failure.

Watches: subscribe to the in-process hub first, replay from the log, de-duplicate by revision
(see ``watchhub.py``). Compaction (a writer op) deletes log rows at or below the revision that
are superseded at that revision, and all tombstones there; live keys keep their latest row.

Measuring: :func:`measure_create_rate` times raw creates against any store (the bench uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from apiserver.storage.interface import (
    CompactedError,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    RevisionConflictError,
    Storage,
    StorageError,
    StorageEvent,
)
from apiserver.storage.watchhub import WatchHub, replay_then_follow

log = logging.getLogger(__name__)

T = TypeVar("T")

REPLAY_CHUNK = 1000
"""Log rows read per replay step of a watch."""

BROKEN_EXIT_CODE = 70
"""Exit status of a process whose store broke (``EX_SOFTWARE``): the supervisor restarts it."""

_EXIT_GRACE = 0.5
"""Seconds between a broken store and the process exit: the failed requests get their 500s."""

_SCHEMA = """
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


@dataclass(eq=False)
class _WriteOp:
    """A write queued for the writer thread; ``future`` lives on the event loop."""

    kind: Literal["create", "update", "delete", "compact"]
    key: str
    value: bytes
    expected: int
    future: asyncio.Future[Any] = field(repr=False)


_Batch = list[_WriteOp]
_Events = list[StorageEvent]
_Results = list[tuple[asyncio.Future[Any], Any, BaseException | None]]


def _prefix_clause(prefix: str, start_after: str = "") -> tuple[str, list[Any]]:
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


def exit_process(error: StorageError) -> None:
    """The default ``on_broken``: log, then end the process (non-zero) once answers are out."""
    log.critical("sqlite store is broken (%s); exiting with status %d so that the apiserver is restarted",
                 error, BROKEN_EXIT_CODE)

    def _exit() -> None:
        logging.shutdown()
        os._exit(BROKEN_EXIT_CODE)

    asyncio.get_running_loop().call_later(_EXIT_GRACE, _exit)


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class SqliteStorage:
    """A :class:`~apiserver.storage.interface.Storage` in one SQLite file (see module doc)."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", max_batch: int = 1000,
                 on_broken: Callable[[StorageError], None] = exit_process,
                 before_commit: Callable[[int], None] | None = None) -> None:
        """``on_broken``: called on the loop when the writer failed unexpectedly (default: exit the
        process); ``before_commit(batch_size)``: test seam run on the writer thread before each commit."""
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"bad synchronous mode {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_WriteOp | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_done: asyncio.Future[None] | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._rconn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hub = WatchHub()
        self._revision = 0  # last revision published on the loop
        self._compacted = 0
        self._started = False
        self._on_broken = on_broken
        self._before_commit = before_commit
        self.broken: StorageError | None = None
        """Set when the writer failed unexpectedly: every write fails with it from then on."""
        self.commits = 0
        """Transactions committed by the writer (with ``writes``: the group-commit factor)."""
        self.writes = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._loop = loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[tuple[int, int]] = loop.create_future()
        self._writer_done = loop.create_future()
        self._queue = queue.SimpleQueue()
        self.broken = None
        self._writer = threading.Thread(
            target=self._writer_main, args=(ready,), name=f"sqlite-writer:{self.path.name}", daemon=True
        )
        self._writer.start()
        self._revision, self._compacted = await ready
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-reader:{self.path.name}")
        self._rconn = await loop.run_in_executor(self._reader, _connect, self.path, self._synchronous)
        self._hub.reopen()
        self._started = True

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self._queue.put(None)
        if self._writer_done is not None:
            await self._writer_done
        if self._reader is not None and self._rconn is not None:
            await asyncio.get_running_loop().run_in_executor(self._reader, self._rconn.close)
            self._reader.shutdown(wait=False)
        self._reader, self._rconn, self._writer = None, None, None
        self._hub.close()

    # -- reads ------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        return self._revision

    async def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        def read(conn: sqlite3.Connection) -> KeyValue | None:
            row = conn.execute(_LATEST_ROW, (key,)).fetchone()
            if row is None or row[2]:
                return None
            return KeyValue(key, row[3], row[1], row[0])

        return await self._read(read)

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        where, params = _prefix_clause(prefix, start_after)

        def read(conn: sqlite3.Connection) -> ListResult:
            current, compacted = self._snapshot_revisions(conn)
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

        return await self._read(read)

    async def count(self, prefix: str) -> int:
        where, params = _prefix_clause(prefix)
        sql = (
            f"SELECT COUNT(*) FROM kv WHERE {where} AND deleted = 0 AND revision = "
            "(SELECT MAX(k2.revision) FROM kv AS k2 WHERE k2.key = kv.key)"
        )

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute(sql, params).fetchone()[0])

        return await self._read(read)

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[StorageEvent]:
        where, params = _prefix_clause(prefix)
        sql = (
            "SELECT revision, key, value, created, deleted, old_value FROM kv "
            f"WHERE revision > ? AND {where} ORDER BY revision LIMIT {REPLAY_CHUNK}"
        )

        async def replay(after: int) -> list[StorageEvent]:
            def read(conn: sqlite3.Connection) -> list[StorageEvent]:
                _, compacted = self._snapshot_revisions(conn)
                if after < compacted:
                    raise CompactedError(after, compacted)
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

            return await self._read(read)

        return replay_then_follow(self._hub, prefix, after_revision, replay)

    # -- writes -----------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> int:
        result: int = await self._write("create", key, value, 0)
        return result

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        result: int = await self._write("update", key, value, expected_revision)
        return result

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        result: KeyValue = await self._write("delete", key, b"", expected_revision)
        return result

    async def compact(self, revision: int) -> None:
        await self._write("compact", "", b"", revision)

    # -- internals --------------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._started or self._reader is None or self._rconn is None:
            raise StorageError("sqlite storage is not started")
        conn = self._rconn

        def in_snapshot() -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, in_snapshot)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite read failed: {exc}") from exc

    @staticmethod
    def _snapshot_revisions(conn: sqlite3.Connection) -> tuple[int, int]:
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kv'").fetchone()
        comp = conn.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
        return (seq[0] if seq else 0), (comp[0] if comp else 0)

    async def _write(self, kind: Any, key: str, value: bytes, expected: int) -> Any:
        if not self._started or self._loop is None:
            raise StorageError("sqlite storage is not started")
        if self.broken is not None:
            raise self.broken
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_WriteOp(kind, key, value, expected, future))
        return await future

    def _writer_main(self, ready: asyncio.Future[tuple[int, int]]) -> None:
        loop = self._loop
        assert loop is not None and self._writer_done is not None
        try:
            conn = _connect(self.path, self._synchronous)
            conn.executescript(_SCHEMA)
            revision, compacted = self._snapshot_revisions(conn)
        except Exception as exc:
            loop.call_soon_threadsafe(_settle, ready, None, StorageError(f"cannot open {self.path}: {exc}"))
            loop.call_soon_threadsafe(_settle, self._writer_done, None, None)
            return
        loop.call_soon_threadsafe(_settle, ready, (revision, compacted), None)
        stop = False
        batch: _Batch = []
        try:
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                revision = self._commit_batch(conn, batch, revision)
                batch = []
        except BaseException as exc:  # the writer is gone: nothing may wait for it any more
            self._writer_failed(conn, batch, exc)
        finally:
            conn.close()
            loop.call_soon_threadsafe(_settle, self._writer_done, None, None)

    def _writer_failed(self, conn: sqlite3.Connection, batch: _Batch, exc: BaseException) -> None:
        """Writer thread: roll back, mark the store broken, let the loop fail what is pending."""
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        error = StorageError(f"sqlite writer failed: {type(exc).__name__}: {exc}")
        self.broken = error  # from now on _write fails at once
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._fail_pending, error, batch, exc)

    def _fail_pending(self, error: StorageError, batch: _Batch, exc: BaseException) -> None:
        """On the loop: fail the writes the writer held and every write still queued, then report."""
        log.error("sqlite writer thread failed; failing %d held writes and every queued one", len(batch),
                  exc_info=exc)
        ops = list(batch)
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if op is not None:
                ops.append(op)
        for op in ops:
            _settle(op.future, None, error)
        self._on_broken(error)

    def _commit_batch(self, conn: sqlite3.Connection, batch: _Batch, revision: int) -> int:
        """Apply ``batch`` in one transaction; returns the revision after it (writer thread)."""
        results: _Results = []
        events: _Events = []
        start_revision, compacted = revision, None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if op.kind == "compact":
                    target = min(op.expected, revision)
                    conn.execute(_COMPACT, {"rev": target})
                    conn.execute(
                        "INSERT INTO meta (name, value) VALUES ('compacted', ?) ON CONFLICT(name) "
                        "DO UPDATE SET value = max(value, excluded.value)",
                        (target,),
                    )
                    compacted = target
                    results.append((op.future, None, None))
                    continue
                try:
                    result, event = self._apply(conn, op, revision + 1)
                except StorageError as exc:
                    results.append((op.future, None, exc))
                    continue
                revision += 1
                events.append(event)
                results.append((op.future, result, None))
            if self._before_commit is not None:
                self._before_commit(len(batch))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("sqlite commit of %d writes failed", len(batch))
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            err = StorageError(f"sqlite write failed: {exc}")
            failed: _Results = [(op.future, None, err) for op in batch]
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._deliver, [], failed, start_revision, None)
            return start_revision
        self.commits += 1
        self.writes += len(events)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, events, results, revision, compacted)
        return revision

    @staticmethod
    def _apply(conn: sqlite3.Connection, op: _WriteOp, rev: int) -> tuple[Any, StorageEvent]:
        row = conn.execute(_LATEST_ROW, (op.key,)).fetchone()
        live = row is not None and not row[2]
        if op.kind == "create":
            if live:
                raise KeyExistsError(op.key)
            prev = row[0] if row else 0
            conn.execute(_INSERT, (rev, op.key, 1, 0, rev, prev, op.value, None))
            return rev, StorageEvent(EventType.PUT, op.key, op.value, rev, None, True)
        if not live:
            raise KeyNotFoundError(op.key)
        mod, create, old = row[0], row[1], row[3]
        if (op.expected or op.kind == "update") and mod != op.expected:
            raise RevisionConflictError(op.key, KeyValue(op.key, old, create, mod))
        if op.kind == "update":
            conn.execute(_INSERT, (rev, op.key, 0, 0, create, mod, op.value, old))
            return rev, StorageEvent(EventType.PUT, op.key, op.value, rev, old, False)
        conn.execute(_INSERT, (rev, op.key, 0, 1, create, mod, old, old))
        return KeyValue(op.key, old, create, rev), StorageEvent(EventType.DELETE, op.key, old, rev, old)

    def _deliver(
        self,
        events: _Events,
        results: _Results,
        revision: int,
        compacted: int | None,
    ) -> None:
        """On the loop: publish a committed batch to watchers, then wake its writers."""
        self._revision = max(self._revision, revision)
        if compacted is not None:
            self._compacted = max(self._compacted, compacted)
        self._hub.publish(events)
        for future, result, error in results:
            _settle(future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def measure_create_rate(
    storage: Storage, *, count: int = 5000, concurrency: int = 1, prefix: str = "/bench/raw/"
) -> float:
    """Create ``count`` fresh keys (~300-byte values) with ``concurrency`` tasks; creates/s.

    Works on any started store; the keys stay (use a fresh store or prefix per run). E.g.::

        store = SqliteStorage(tmp / "bench.db"); await store.start()
        print(await measure_create_rate(store, count=20000, concurrency=16))
    """
    value = b'{"kind":"Pod","metadata":{"name":"x"}}'.ljust(300, b" ")
    run = f"{prefix}{time.monotonic_ns()}/"
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await storage.create(f"{run}{i:08d}", value)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return count / (time.perf_counter() - started)
