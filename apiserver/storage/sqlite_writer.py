"""The sqlite store's writer thread: group commit of queued writes, and what happens when it breaks.

The stdlib ``sqlite3`` module blocks, so no SQL runs on the event loop. One dedicated writer
thread owns the write connection and does group commit: it takes every write queued while the
previous transaction was committing, applies them in order in ONE transaction (each sees the
ones before it, see :func:`~apiserver.storage.sqlite_log.apply_write`), commits, and then hands
results and events back to the loop in a single ``call_soon_threadsafe``. On the loop, the
``publish`` callback given by :class:`~apiserver.storage.sqlite.SqliteStorage` sees the events
(in revision order) before the callers' futures resolve.

Failures: an SQLite error fails the writes of its transaction (a ``StorageError``, a 500) and the
writer carries on. Anything else escaping the writer thread (a bug, ``MemoryError``) leaves the
store unusable: the writer rolls back, every write it held or that is still queued fails with a
``StorageError`` (500) at once, later writes fail the same way instead of waiting forever, and
``on_broken`` is called on the loop. Its default, :func:`exit_process`, logs the failure and ends
the process with exit code 70 shortly after (the failed requests are answered first), so the
process supervisor starts a fresh apiserver on the intact database -- the way a Go apiserver
panics. ``before_commit`` is a test seam: called on the writer thread before each commit, it may
raise to inject a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiserver.storage import sqlite_log
from apiserver.storage.interface import StorageError, StorageEvent
from apiserver.storage.sqlite_log import WriteKind

log = logging.getLogger(__name__)

BROKEN_EXIT_CODE = 70
"""Exit status of a process whose store broke (``EX_SOFTWARE``): the supervisor restarts it."""

_EXIT_GRACE = 0.5
"""Seconds between a broken store and the process exit: the failed requests get their 500s."""


@dataclass(eq=False)
class _WriteOp:
    """A write queued for the writer thread; ``future`` lives on the event loop."""

    kind: WriteKind
    key: str
    value: bytes
    expected: int
    future: asyncio.Future[Any] = field(repr=False)


_Batch = list[_WriteOp]
_Events = list[StorageEvent]
_Results = list[tuple[asyncio.Future[Any], Any, BaseException | None]]

Publish = Callable[[list[StorageEvent], int, "int | None"], None]
"""``publish(events, revision, compacted)``: on the loop, a committed batch before its writers wake."""


def exit_process(error: StorageError) -> None:
    """The default ``on_broken``: log, then end the process (non-zero) once answers are out."""
    log.critical("sqlite store is broken (%s); exiting with status %d so that the apiserver is restarted",
                 error, BROKEN_EXIT_CODE)

    def _exit() -> None:
        logging.shutdown()
        os._exit(BROKEN_EXIT_CODE)

    asyncio.get_running_loop().call_later(_EXIT_GRACE, _exit)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteWriter:
    """The writer thread of one SQLite file and the queue in front of it (see module doc)."""

    def __init__(self, path: Path, *, synchronous: str, max_batch: int, publish: Publish,
                 on_broken: Callable[[StorageError], None],
                 before_commit: Callable[[int], None] | None) -> None:
        self.path = path
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._publish = publish
        self._on_broken = on_broken
        self._before_commit = before_commit
        self._queue: queue.SimpleQueue[_WriteOp | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.broken: StorageError | None = None
        """Set when the writer failed unexpectedly: every write fails with it from then on."""
        self.commits = 0
        """Transactions committed (with ``writes``: the group-commit factor)."""
        self.writes = 0

    async def start(self) -> tuple[int, int]:
        """Open the file (creating the schema), start the thread; the current and compacted revisions."""
        self._loop = loop = asyncio.get_running_loop()
        ready: asyncio.Future[tuple[int, int]] = loop.create_future()
        self._done = loop.create_future()
        self._queue = queue.SimpleQueue()
        self.broken = None
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name=f"sqlite-writer:{self.path.name}", daemon=True
        )
        self._thread.start()
        return await ready

    async def stop(self) -> None:
        """Let the writer finish what is queued, close its connection and end."""
        self._queue.put(None)
        if self._done is not None:
            await self._done
        self._thread = None

    async def submit(self, kind: WriteKind, key: str, value: bytes, expected: int) -> Any:
        """Queue one write and wait for its result (on the loop, after ``publish`` saw its event)."""
        assert self._loop is not None
        if self.broken is not None:
            raise self.broken
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_WriteOp(kind, key, value, expected, future))
        return await future

    # -- the thread -------------------------------------------------------------------------

    def _main(self, ready: asyncio.Future[tuple[int, int]]) -> None:
        loop = self._loop
        assert loop is not None and self._done is not None
        try:
            conn = sqlite_log.connect(self.path, self._synchronous)
            conn.executescript(sqlite_log.SCHEMA)
            revision, compacted = sqlite_log.snapshot_revisions(conn)
        except Exception as exc:
            loop.call_soon_threadsafe(_settle, ready, None, StorageError(f"cannot open {self.path}: {exc}"))
            loop.call_soon_threadsafe(_settle, self._done, None, None)
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
            self._failed(conn, batch, exc)
        finally:
            conn.close()
            loop.call_soon_threadsafe(_settle, self._done, None, None)

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
                    sqlite_log.compact(conn, target)
                    compacted = target
                    results.append((op.future, None, None))
                    continue
                try:
                    result, event = sqlite_log.apply_write(conn, op.kind, op.key, op.value, op.expected,
                                                           revision + 1)
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

    def _failed(self, conn: sqlite3.Connection, batch: _Batch, exc: BaseException) -> None:
        """Writer thread: roll back, mark the store broken, let the loop fail what is pending."""
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        error = StorageError(f"sqlite writer failed: {type(exc).__name__}: {exc}")
        self.broken = error  # from now on submit fails at once
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._fail_pending, error, batch, exc)

    # -- on the loop ------------------------------------------------------------------------

    def _deliver(self, events: _Events, results: _Results, revision: int, compacted: int | None) -> None:
        """Publish a committed batch, then wake its writers."""
        self._publish(events, revision, compacted)
        for future, result, error in results:
            _settle(future, result, error)

    def _fail_pending(self, error: StorageError, batch: _Batch, exc: BaseException) -> None:
        """Fail the writes the writer held and every write still queued, then report."""
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
