"""``EtcdStorage``: the storage protocol on an etcd v3 cluster (gRPC, asyncio).

This is how a cluster grows past one machine. etcd's own revision is the global revision
(an empty etcd starts at 1, so the first write is 2). Keys are ``prefix + key`` in UTF-8, so
several clusters or test runs can share one etcd.

- create: txn ``create_revision(key) == 0`` then put; else KeyExistsError.
- update / conditional delete: txn ``mod_revision(key) == expected``; the failure branch reads
  the key so the caller learns KeyNotFoundError or RevisionConflictError(current). An
  unconditional delete reads the key and deletes it under that guard.
- list: one range read, at ``revision`` when given; ``limit`` / ``start_after`` map to etcd's
  limit and range start. count: a ``count_only`` range.
- watch: a gRPC watch stream, ``start_revision = after_revision + 1`` with ``prev_kv``; etcd
  guarantees order and no gaps; a compacted start ends in CompactedError.
- compact: etcd compaction. etcd keeps the compacted revision itself readable while the
  protocol says it is gone, so this class also remembers the compacted revision (learnt at
  ``start``, on ``compact`` and from etcd's errors) and refuses reads at or below it.

Failover: the store keeps working while a majority of the members is up (as Kubernetes'
apiserver does). :mod:`apiserver.storage.etcd_channel` talks to every member listed and
repeats a call that failed because a member died or the cluster was electing a leader, on
another member, for up to ``timeout`` seconds. A watch whose member dies, or loses its
leader, is opened again on another member from the revision after the last event it
delivered: its consumer sees one gap-free stream and no error (only a compaction that
overtook it during the outage ends it, with CompactedError, as before).

A write that failed after it may have reached etcd is repeated under the same guard, which
cannot apply it twice. When the repeat's guard fails, etcd's history tells whether the
earlier attempt was ours: a create succeeded if the key's value at its create revision is the
value we sent; an update or delete succeeded if the first change of the key after the expected
revision is our value (or a delete). The caller then gets the revision that write got, as if
nothing had failed; only if compaction has erased that history is the outcome reported as
unknown (a StorageError, a 500 like Kubernetes' for an etcd timeout).

Requests are built from ``aetcd``'s protobufs (the maintained etcd v3 bindings) because its
client helpers lack revision/limit and its shared watcher cannot report a compacted start.
Every RPC carries a deadline except the watch stream itself. gRPC errors never leave this
module: they become :class:`StorageError` subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, NoReturn

from aetcd import rpc
from aetcd.utils import prefix_range_end

from apiserver.storage.etcd_channel import REQUIRE_LEADER, EtcdChannel, Reply, retryable
from apiserver.storage.interface import (
    CompactedError,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    RevisionConflictError,
    StorageError,
    StorageEvent,
)

log = logging.getLogger(__name__)

WATCH_RETRY_MAX_PAUSE = 1.0
"""Longest pause between attempts to re-open a broken watch (it retries until the store closes)."""

_CLOSED = object()
"""Queued to every open watch when the store closes."""


class EtcdStorage:
    """A :class:`~apiserver.storage.interface.Storage` backed by an etcd v3 cluster."""

    def __init__(self, endpoints: list[str], prefix: str = "", *, timeout: float = 10.0,
                 attempt_timeout: float | None = None, balancing: str = "round_robin") -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.balancing = balancing
        self._pfx = prefix.encode()
        self._channel: EtcdChannel | None = None
        self._compacted = 0
        self._watches: set[asyncio.Queue[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the channel to every member; fails unless some member answers within ``timeout``."""
        if self._channel is not None:
            return
        channel = EtcdChannel(self.endpoints, timeout=self.timeout, attempt_timeout=self.attempt_timeout,
                              balancing=self.balancing)
        try:
            await self._call(channel.unary(channel.maintenance.Status, rpc.StatusRequest()))
        except StorageError as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            raise StorageError(f"no etcd endpoint of {self.endpoints} answered: {exc}") from exc
        self._channel = channel
        self._compacted = await self._probe_compacted(self._compacted)

    async def close(self) -> None:
        for q in list(self._watches):
            q.put_nowait(_CLOSED)
        self._watches.clear()
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), self.timeout)

    # -- reads ------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        resp = await self._range(rpc.RangeRequest(key=self._pfx or b"\0", count_only=True))
        return int(resp.header.revision)

    async def compacted_revision(self) -> int:
        self._compacted = await self._probe_compacted(self._compacted)
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._range(rpc.RangeRequest(key=self._key(key)))
        return self._kv_of(resp.kvs[0]) if resp.kvs else None

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        if revision and revision <= self._compacted:
            raise CompactedError(revision, self._compacted)
        start, end = self._span(prefix)
        if start_after and self._key(start_after) >= start:
            start = self._key(start_after) + b"\0"
        req = rpc.RangeRequest(key=start, range_end=end, revision=revision, limit=max(limit, 0))
        resp = await self._range(req, revision=revision, bulk=True)
        items = [self._kv_of(kv) for kv in resp.kvs]
        return ListResult(items=items, revision=revision or int(resp.header.revision), more=bool(resp.more))

    async def count(self, prefix: str) -> int:
        start, end = self._span(prefix)
        resp = await self._range(rpc.RangeRequest(key=start, range_end=end, count_only=True))
        return int(resp.count)

    # -- writes -----------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> int:
        k = self._key(key)
        absent = rpc.Compare(key=k, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        txn = rpc.TxnRequest(
            compare=[absent],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        reply = await self._txn(txn)
        resp = reply.response
        if resp.succeeded:
            return int(resp.header.revision)
        if reply.ambiguous:
            kvs = resp.responses[0].response_range.kvs
            if kvs and await self._created_by(k, kvs[0], value):
                return int(kvs[0].create_revision)
        raise KeyExistsError(key)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        k = self._key(key)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))
        reply = await self._cas(k, expected_revision, put)
        resp = reply.response
        if resp.succeeded:
            return int(resp.header.revision)
        if reply.ambiguous:
            kvs = resp.responses[0].response_range.kvs
            if kvs and kvs[0].value == value:  # ours, and nothing after it
                return int(kvs[0].mod_revision)
            first = await self._first_change_after(k, expected_revision)
            if first.type == rpc.Event.PUT and first.kv.value == value:
                return int(first.kv.mod_revision)
        self._raise_cas_failure(key, resp)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        if not expected_revision:
            while True:  # unconditional: delete whatever is there now, under its guard
                current = await self.get(key)
                if current is None:
                    raise KeyNotFoundError(key)
                with contextlib.suppress(RevisionConflictError):
                    return await self.delete(key, expected_revision=current.mod_revision)
        k = self._key(key)
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))
        reply = await self._cas(k, expected_revision, op)
        resp = reply.response
        if resp.succeeded:
            deleted = resp.responses[0].response_delete_range
            if not deleted.prev_kvs:
                raise KeyNotFoundError(key)
            prev = deleted.prev_kvs[0]
            return KeyValue(key, prev.value, int(prev.create_revision), int(resp.header.revision))
        if reply.ambiguous:
            first = await self._first_change_after(k, expected_revision)
            if first.type == rpc.Event.DELETE and first.HasField("prev_kv"):
                prev = first.prev_kv
                return KeyValue(key, prev.value, int(prev.create_revision), int(first.kv.mod_revision))
        self._raise_cas_failure(key, resp)

    async def compact(self, revision: int) -> None:
        current = await self.current_revision()
        revision = min(revision, current)
        if revision <= self._compacted:
            return
        try:
            await self._call(self._ch.unary(self._ch.kv.Compact, rpc.CompactionRequest(revision=revision)))
        except CompactedError:
            pass  # someone compacted further already
        self._compacted = max(self._compacted, revision)

    # -- watch ------------------------------------------------------------------------------

    async def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[StorageEvent]:
        if after_revision < self._compacted:
            raise CompactedError(after_revision, self._compacted)
        start, end = self._span(prefix)
        items: asyncio.Queue[Any] = asyncio.Queue()
        self._watches.add(items)
        last = after_revision
        pause = 0.05
        try:
            while True:
                async with self._watch_stream(start, end, last + 1, items, prefix):
                    while True:
                        item = await items.get()
                        if item is _CLOSED:
                            return
                        if isinstance(item, BaseException):
                            if not self._reopen_after(item):
                                return
                            log.warning("etcd watch on %r broke (%s); resuming after revision %d",
                                        prefix, _describe(item), last)
                            break
                        if item.compact_revision:
                            self._compacted = max(self._compacted, int(item.compact_revision))
                            raise CompactedError(last, int(item.compact_revision))
                        if item.canceled:
                            self._check_watch_cancel(item, prefix)
                            log.warning("etcd watch on %r cancelled (%s); resuming after revision %d",
                                        prefix, item.cancel_reason, last)
                            break
                        for ev in item.events:
                            event = self._event_of(ev)
                            last = event.revision
                            pause = 0.05
                            yield event
                if self._channel is None:
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, WATCH_RETRY_MAX_PAUSE)
        finally:
            self._watches.discard(items)

    @contextlib.asynccontextmanager
    async def _watch_stream(self, start: bytes, end: bytes, from_revision: int, items: asyncio.Queue[Any],
                            prefix: str) -> AsyncIterator[None]:
        """One watch stream whose responses (then its error, if any) go to ``items``."""
        create = rpc.WatchCreateRequest(key=start, range_end=end, start_revision=from_revision, prev_kv=True)
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            await stop.wait()  # the request side stays open for the life of the watch

        call = self._ch.watch.Watch(requests(), metadata=REQUIRE_LEADER, wait_for_ready=True)

        async def pump() -> None:
            try:
                async for response in call:
                    items.put_nowait(response)
                items.put_nowait(StorageError("the etcd member ended the watch stream"))
            except Exception as exc:  # delivered to the consumer, judged there
                items.put_nowait(exc)

        reader = asyncio.create_task(pump(), name=f"etcd-watch:{prefix}")
        try:
            yield
        finally:
            stop.set()
            call.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            while not items.empty():  # what the dead stream left behind is not for the next one
                if items.get_nowait() is _CLOSED:
                    items.put_nowait(_CLOSED)
                    break

    def _reopen_after(self, exc: BaseException) -> bool:
        """True to re-open a broken stream, False when the store closed; raises what ends the watch."""
        if self._channel is None:
            return False
        if retryable(exc) or isinstance(exc, StorageError):  # member died, lost its leader, or hung up
            return True
        if isinstance(exc, rpc.AioRpcError) and exc.code() == rpc.StatusCode.CANCELLED:
            return True
        raise self._map_error(exc) from exc

    @staticmethod
    def _check_watch_cancel(item: Any, prefix: str) -> None:
        # "etcdserver: no leader" (a leader is required) is passing; anything else (permission,
        # a bad range) would fail again on every member.
        reason = str(item.cancel_reason)
        if reason and "leader" not in reason:
            raise StorageError(f"etcd cancelled the watch on {prefix}: {reason}")

    # -- settling ambiguous writes ----------------------------------------------------------

    async def _created_by(self, k: bytes, kv: Any, value: bytes) -> bool:
        """Whether the key holding ``kv`` was created with ``value`` (our earlier attempt)."""
        if kv.create_revision == kv.mod_revision:
            return bool(kv.value == value)
        try:
            resp = await self._range(rpc.RangeRequest(key=k, revision=kv.create_revision),
                                     revision=int(kv.create_revision))
        except CompactedError as exc:
            raise StorageError(f"the outcome of the create of {k.decode(errors='replace')} is unknown: "
                               f"etcd's history of it was compacted") from exc
        return bool(resp.kvs) and bool(resp.kvs[0].value == value)

    async def _first_change_after(self, k: bytes, revision: int) -> Any:
        """The key's first event after ``revision`` (it exists: the guard on ``revision`` failed)."""
        start = rpc.WatchCreateRequest(key=k, start_revision=revision + 1, prev_kv=True)
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=start)
            await stop.wait()

        unknown = f"the outcome of the write to {k.decode(errors='replace')} is unknown"
        call = self._ch.watch.Watch(requests(), timeout=self.timeout, wait_for_ready=True)
        try:
            async for response in call:
                if response.compact_revision:
                    raise StorageError(f"{unknown}: etcd's history of it was compacted")
                if response.canceled:
                    raise StorageError(f"{unknown}: {response.cancel_reason}")
                if response.events:
                    return response.events[0]
        except rpc.AioRpcError as exc:
            raise StorageError(f"{unknown}: {exc.details()}") from exc
        finally:
            stop.set()
            call.cancel()
        raise StorageError(unknown)

    # -- internals --------------------------------------------------------------------------

    @property
    def _ch(self) -> EtcdChannel:
        if self._channel is None:
            raise StorageError("etcd storage is not started")
        return self._channel

    def _key(self, key: str) -> bytes:
        return self._pfx + key.encode()

    def _span(self, prefix: str) -> tuple[bytes, bytes]:
        start = self._key(prefix)
        return (start, prefix_range_end(start)) if start else (b"\0", b"\0")

    def _kv_of(self, kv: Any) -> KeyValue:
        return KeyValue(
            kv.key[len(self._pfx):].decode(), kv.value, int(kv.create_revision), int(kv.mod_revision)
        )

    def _event_of(self, ev: Any) -> StorageEvent:
        key = ev.kv.key[len(self._pfx):].decode()
        prev = ev.prev_kv.value if ev.HasField("prev_kv") else None
        if ev.type == rpc.Event.DELETE:
            return StorageEvent(EventType.DELETE, key, prev or b"", int(ev.kv.mod_revision), prev)
        created = ev.kv.create_revision == ev.kv.mod_revision
        return StorageEvent(
            EventType.PUT, key, ev.kv.value, int(ev.kv.mod_revision), None if created else prev, created
        )

    async def _range(self, req: Any, *, revision: int = 0, bulk: bool = False) -> Any:
        reply = await self._call(self._ch.unary(self._ch.kv.Range, req, bulk=bulk), revision)
        return reply.response

    async def _txn(self, txn: Any) -> Reply:
        return await self._call(self._ch.unary(self._ch.kv.Txn, txn, write=True))

    async def _cas(self, k: bytes, expected: int, op: Any) -> Reply:
        same = rpc.Compare(key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=expected)
        txn = rpc.TxnRequest(
            compare=[same],
            success=[op],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        return await self._txn(txn)

    def _raise_cas_failure(self, key: str, resp: Any) -> NoReturn:
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            raise KeyNotFoundError(key)
        raise RevisionConflictError(key, self._kv_of(kvs[0]))

    async def _call(self, call: Awaitable[Reply], revision: int = 0) -> Reply:
        try:
            return await call
        except rpc.AioRpcError as exc:
            raise self._map_error(exc, revision) from exc

    def _map_error(self, exc: BaseException, revision: int = 0) -> StorageError:
        if not isinstance(exc, rpc.AioRpcError):
            return StorageError(f"etcd watch failed: {exc!r}")
        details = exc.details() or ""
        if "compacted" in details:
            return CompactedError(revision, self._compacted)
        if "future revision" in details:
            return FutureRevisionError(f"revision {revision} is newer than etcd's")
        return StorageError(f"etcd {exc.code().name}: {details}")

    async def _probe_compacted(self, known: int) -> int:
        """The oldest readable revision if etcd was compacted (0 if not), by binary search."""
        current = await self.current_revision()
        lo, hi = max(known, 1), current  # the answer lies in [lo, hi]

        async def readable(rev: int) -> bool:
            try:
                await self._range(rpc.RangeRequest(key=b"\0", revision=rev, count_only=True), revision=rev)
            except CompactedError:
                return False
            return True

        if await readable(lo):
            return known
        while lo < hi:
            mid = (lo + hi) // 2
            if await readable(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo


def _describe(exc: BaseException) -> str:
    if isinstance(exc, rpc.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
