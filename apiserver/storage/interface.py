"""The storage protocol every backend implements (sqlite, etcd, memory).

Modelled on the few etcd operations the apiserver needs (as kine does): keys are strings,
values opaque bytes, and every write gets the next value of one global, increasing revision,
which the apiserver exposes as ``resourceVersion``. Writes are compare-and-swap on a key's
``mod_revision``. A watch replays history after a revision and then follows live writes,
in revision order, without gaps or duplicates. History older than the compacted revision is
gone: reading or watching from there raises :class:`CompactedError` (the apiserver's 410).

Callers: the apiserver's registry (get/list/create/update/delete) and watch cache (watch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class StorageError(Exception):
    """Base of storage failures; the apiserver maps each subclass to a Status."""


class KeyExistsError(StorageError):
    """``create`` found the key present."""


class KeyNotFoundError(StorageError):
    """``update``/``delete`` found no such key."""


class RevisionConflictError(StorageError):
    """The key's ``mod_revision`` is not the expected one (someone else wrote first)."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"revision conflict on {key}")
        self.key = key
        self.current = current


class CompactedError(StorageError):
    """The requested revision is older than the compacted revision."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (oldest available {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StorageError):
    """The requested revision is newer than any the store has."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key's value at one revision."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class StorageEvent:
    """One write seen by a watch.

    ``value`` is the new value for PUT and the last value before deletion for DELETE;
    ``prev_value`` is the value before this write (None on create). ``revision`` is the
    revision of this write. ``created`` is True when a PUT created the key.
    """

    type: EventType
    key: str
    value: bytes
    revision: int
    prev_value: bytes | None = None
    created: bool = False


@dataclass(frozen=True, slots=True)
class ListResult:
    """Items under a prefix at one revision, sorted by key."""

    items: list[KeyValue]
    revision: int
    more: bool = False


class Storage(Protocol):
    """What the apiserver needs from a store."""

    async def start(self) -> None:
        """Open connections / files; idempotent."""

    async def close(self) -> None:
        """Release everything; ends open watches."""

    async def current_revision(self) -> int:
        """The revision of the latest write (0 for an empty store)."""

    async def compacted_revision(self) -> int:
        """Revisions at or below this one are gone (0 when nothing was compacted)."""

    async def get(self, key: str) -> KeyValue | None:
        """The key's latest value, or None."""

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        """Keys under ``prefix`` sorted by key, as of ``revision`` (0: latest).

        ``limit`` > 0 returns at most that many and sets ``more``; ``start_after``
        skips keys <= it (continue tokens). A compacted revision raises CompactedError,
        a future one FutureRevisionError.
        """

    async def count(self, prefix: str) -> int:
        """How many live keys are under ``prefix``."""

    async def create(self, key: str, value: bytes) -> int:
        """Store a new key; returns the write's revision. KeyExistsError if present."""

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        """Replace the value if ``mod_revision == expected_revision``; returns the new revision.

        KeyNotFoundError when absent, RevisionConflictError when the revision differs.
        """

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """Remove the key (if ``expected_revision`` is 0, unconditionally).

        Returns the deleted value with ``mod_revision`` set to the revision of the delete.
        KeyNotFoundError when absent, RevisionConflictError when the revision differs.
        """

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[StorageEvent]:
        """Events under ``prefix`` with revision > ``after_revision``, in order, then live.

        Raises CompactedError (on first iteration) when history after that revision is gone.
        The iterator ends only when the store closes or the consumer stops iterating.
        """

    async def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (live keys stay)."""
