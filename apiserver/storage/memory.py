"""``MemoryStorage``: the in-memory backend, for unit tests and single-process experiments.

It has the full semantics of the storage protocol (see ``interface.py``), modelled on the
sqlite backend's revision log: every write appends one row (revision, key, value, previous
value, flags) to a log; the live state is a dict kept beside it. Lists at an older revision
and watch replays read the log; compaction drops rows that no read at or after the compacted
revision can need. Everything runs on the event loop and never blocks, so there are no locks:
each coroutine does its check-and-write without an ``await`` in between.

Nothing survives ``close()``'s process; a closed store can be started again and keeps its data.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from dataclasses import dataclass

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
from apiserver.storage.watchhub import WatchHub, replay_then_follow

REPLAY_CHUNK = 1000
"""Events handed to a replaying watch per step (bounds the work between awaits)."""


@dataclass(frozen=True, slots=True)
class LogRow:
    """One write in the revision log (a tombstone when ``deleted``; its value is the last one)."""

    revision: int
    key: str
    value: bytes
    create_revision: int
    created: bool
    deleted: bool
    prev_value: bytes | None

    def to_event(self) -> StorageEvent:
        return StorageEvent(
            type=EventType.DELETE if self.deleted else EventType.PUT,
            key=self.key,
            value=self.value,
            revision=self.revision,
            prev_value=self.prev_value,
            created=self.created,
        )

    def to_key_value(self) -> KeyValue:
        return KeyValue(self.key, self.value, self.create_revision, self.revision)


_KeyValues = list[KeyValue]


class MemoryStorage:
    """A :class:`~apiserver.storage.interface.Storage` kept in process memory."""

    def __init__(self) -> None:
        self._log: list[LogRow] = []
        self._log_revisions: list[int] = []
        self._live: dict[str, KeyValue] = {}
        self._revision = 0
        self._compacted = 0
        self._hub = WatchHub()

    async def start(self) -> None:
        self._hub.reopen()

    async def close(self) -> None:
        self._hub.close()

    async def current_revision(self) -> int:
        return self._revision

    async def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        return self._live.get(key)

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        if revision == 0 or revision == self._revision:
            at = self._revision
            source: list[KeyValue] = [kv for k, kv in self._live.items() if k.startswith(prefix)]
        else:
            self._check_readable(revision)
            at = revision
            source = self._state_at(prefix, revision)
        items = sorted((kv for kv in source if kv.key > start_after), key=lambda kv: kv.key)
        more = False
        if limit > 0 and len(items) > limit:
            items, more = items[:limit], True
        return ListResult(items=items, revision=at, more=more)

    async def count(self, prefix: str) -> int:
        return sum(1 for k in self._live if k.startswith(prefix))

    async def create(self, key: str, value: bytes) -> int:
        if key in self._live:
            raise KeyExistsError(key)
        rev = self._revision + 1
        self._append(LogRow(rev, key, value, rev, True, False, None))
        self._live[key] = KeyValue(key, value, rev, rev)
        return rev

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        current = self._live.get(key)
        if current is None:
            raise KeyNotFoundError(key)
        if current.mod_revision != expected_revision:
            raise RevisionConflictError(key, current)
        rev = self._revision + 1
        self._append(LogRow(rev, key, value, current.create_revision, False, False, current.value))
        self._live[key] = KeyValue(key, value, current.create_revision, rev)
        return rev

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        current = self._live.get(key)
        if current is None:
            raise KeyNotFoundError(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise RevisionConflictError(key, current)
        rev = self._revision + 1
        self._append(
            LogRow(rev, key, current.value, current.create_revision, False, True, current.value)
        )
        del self._live[key]
        return KeyValue(key, current.value, current.create_revision, rev)

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[StorageEvent]:
        async def replay(after: int) -> list[StorageEvent]:
            if after < self._compacted:
                raise CompactedError(after, self._compacted)
            start = bisect.bisect_right(self._log_revisions, after)
            out: list[StorageEvent] = []
            for row in self._log[start:]:
                if row.key.startswith(prefix):
                    out.append(row.to_event())
                    if len(out) >= REPLAY_CHUNK:
                        break
            return out

        return replay_then_follow(self._hub, prefix, after_revision, replay)

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        # A row at or below the compacted revision is needed only if it is the latest row of
        # its key at that revision and not a tombstone (reads at >= revision may return it).
        latest: dict[str, LogRow] = {}
        for row in self._log:
            if row.revision > revision:
                break
            latest[row.key] = row
        keep = {row.revision for row in latest.values() if not row.deleted}
        self._log = [r for r in self._log if r.revision > revision or r.revision in keep]
        self._log_revisions = [r.revision for r in self._log]
        self._compacted = revision

    # -- internals ------------------------------------------------------------------------

    def _append(self, row: LogRow) -> None:
        self._revision = row.revision
        self._log.append(row)
        self._log_revisions.append(row.revision)
        self._hub.publish((row.to_event(),))

    def _check_readable(self, revision: int) -> None:
        if revision <= self._compacted:
            raise CompactedError(revision, self._compacted)
        if revision > self._revision:
            raise FutureRevisionError(f"revision {revision} is newer than {self._revision}")

    def _state_at(self, prefix: str, revision: int) -> _KeyValues:
        latest: dict[str, LogRow] = {}
        end = bisect.bisect_right(self._log_revisions, revision)
        for row in self._log[:end]:
            if row.key.startswith(prefix):
                latest[row.key] = row
        return [row.to_key_value() for row in latest.values() if not row.deleted]
