"""``SqliteStorage``: the embedded default backend, a kine-style revision log in one SQLite file.

Three parts, one module each:

* :mod:`apiserver.storage.sqlite_log` -- the table layout (one row per write), the queries, and
  how a create, update, delete or compaction changes the log;
* :mod:`apiserver.storage.sqlite_writer` -- the writer thread: group commit of queued writes, and
  what happens when that thread breaks (the apiserver exits and is restarted);
* this module -- the :class:`~apiserver.storage.interface.Storage` itself: lifecycle, reads,
  watches, and the hand-off of writes to the writer.

Threads: the stdlib ``sqlite3`` module blocks, so no SQL runs on the event loop. Writes go to the
writer thread; reads run on a second single-thread executor with its own connection. WAL lets
reads proceed while the writer commits, each read inside one snapshot. The writer hands each
committed batch back to the loop, which publishes its events to watchers (in revision order)
before resolving the callers' futures.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``. In WAL mode NORMAL never corrupts
the database and survives a crash of the process; only an OS crash or power loss can lose the
last transactions committed before the next checkpoint. That is the trade kine and most
embedded Kubernetes stores make for a laptop cluster: FULL would fsync each group commit and
cut write throughput several times. Pass ``synchronous="FULL"`` to get per-commit fsync.

Watches: subscribe to the in-process hub first, replay from the log in chunks of
:data:`REPLAY_CHUNK` rows, de-duplicate by revision (see ``watchhub.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from apiserver.storage import sqlite_log
from apiserver.storage.interface import KeyValue, ListResult, StorageError, StorageEvent
from apiserver.storage.sqlite_writer import BROKEN_EXIT_CODE, SqliteWriter, exit_process
from apiserver.storage.watchhub import WatchHub, replay_then_follow

__all__ = ["BROKEN_EXIT_CODE", "REPLAY_CHUNK", "SqliteStorage", "exit_process"]

T = TypeVar("T")

REPLAY_CHUNK = 1000
"""Log rows read per replay step of a watch."""

_Events = list[StorageEvent]  # spelt here: inside the class, ``list`` is the method


class SqliteStorage:
    """A :class:`~apiserver.storage.interface.Storage` in one SQLite file (see module doc)."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", max_batch: int = 1000,
                 on_broken: Callable[[StorageError], None] = exit_process,
                 before_commit: Callable[[int], None] | None = None) -> None:
        """``on_broken``: called on the loop when the writer failed unexpectedly (default: exit the
        process); ``before_commit(batch_size)``: test seam run on the writer thread before each commit."""
        if synchronous.upper() not in sqlite_log.SYNCHRONOUS_MODES:
            raise ValueError(f"bad synchronous mode {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._writer = SqliteWriter(self.path, synchronous=self._synchronous, max_batch=max_batch,
                                    publish=self._publish, on_broken=on_broken, before_commit=before_commit)
        self._reader: ThreadPoolExecutor | None = None
        self._rconn: sqlite3.Connection | None = None
        self._hub = WatchHub()
        self._revision = 0  # last revision published on the loop
        self._compacted = 0
        self._started = False

    @property
    def broken(self) -> StorageError | None:
        """Set when the writer failed unexpectedly: every write fails with it from then on."""
        return self._writer.broken

    @property
    def commits(self) -> int:
        """Transactions committed by the writer (with ``writes``: the group-commit factor)."""
        return self._writer.commits

    @property
    def writes(self) -> int:
        """Writes committed by the writer."""
        return self._writer.writes

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._revision, self._compacted = await self._writer.start()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-reader:{self.path.name}")
        self._rconn = await loop.run_in_executor(self._reader, sqlite_log.connect, self.path, self._synchronous)
        self._hub.reopen()
        self._started = True

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        await self._writer.stop()
        if self._reader is not None and self._rconn is not None:
            await asyncio.get_running_loop().run_in_executor(self._reader, self._rconn.close)
            self._reader.shutdown(wait=False)
        self._reader, self._rconn = None, None
        self._hub.close()

    # -- reads ------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        return self._revision

    async def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        return await self._read(lambda conn: sqlite_log.get_latest(conn, key))

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        return await self._read(
            lambda conn: sqlite_log.list_at(conn, prefix, revision=revision, limit=limit, start_after=start_after)
        )

    async def count(self, prefix: str) -> int:
        return await self._read(lambda conn: sqlite_log.count_live(conn, prefix))

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[StorageEvent]:
        chunk = REPLAY_CHUNK

        async def replay(after: int) -> _Events:
            return await self._read(lambda conn: sqlite_log.events_after(conn, prefix, after, chunk))

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

    async def _write(self, kind: sqlite_log.WriteKind, key: str, value: bytes, expected: int) -> Any:
        if not self._started:
            raise StorageError("sqlite storage is not started")
        return await self._writer.submit(kind, key, value, expected)

    def _publish(self, events: _Events, revision: int, compacted: int | None) -> None:
        """On the loop, from the writer: a committed batch reaches watchers before its writers wake."""
        self._revision = max(self._revision, revision)
        if compacted is not None:
            self._compacted = max(self._compacted, compacted)
        self._hub.publish(events)
