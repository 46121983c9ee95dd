"""``EtcdStorage``: the storage protocol on etcd v3, through ``aetcd`` (asyncio gRPC).

This is how a cluster grows past one machine. etcd's own revision is the global revision
(an empty etcd starts at 1, so the first write is 2). Keys are ``prefix + key`` in UTF-8, so
several clusters or test runs can share one etcd.

- create: txn ``create_revision(key) == 0`` then put; else KeyExistsError.
- update / conditional delete: txn ``mod_revision(key) == expected``; the failure branch reads
  the key so the caller learns KeyNotFoundError or RevisionConflictError(current).
- list: one range read, at ``revision`` when given; ``limit`` / ``start_after`` map to etcd's
  limit and range start. count: a ``count_only`` range.
- watch: one gRPC watch stream per call, ``start_revision = after_revision + 1`` with
  ``prev_kv``; etcd guarantees order and no gaps; a compacted start ends in CompactedError.
- compact: etcd compaction. etcd keeps the compacted revision itself readable while the
  protocol says it is gone, so this class also remembers the compacted revision (learnt at
  ``start``, on ``compact`` and from etcd's errors) and refuses reads at or below it.

aetcd's ``Client`` supplies the channel and stubs; requests are built from its ``rpc``
protobufs because its helpers lack revision/limit and its shared watcher cannot report a
compacted start. Every RPC carries a deadline (``timeout``) except the watch stream itself.
gRPC errors never leave this module: they become :class:`StorageError` subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aetcd
from aetcd import rpc
from aetcd.utils import prefix_range_end

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

T = TypeVar("T")


def _parse_endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", ""):
        raise StorageError(f"etcd endpoint {url!r}: only plain http is supported")
    return parts.hostname or "127.0.0.1", parts.port or 2379


class EtcdStorage:
    """A :class:`~apiserver.storage.interface.Storage` backed by an etcd v3 cluster."""

    def __init__(self, endpoints: list[str], prefix: str = "", *, timeout: float = 10.0) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.timeout = timeout
        self._pfx = prefix.encode()
        self._client: Any = None
        self._compacted = 0
        self._watches: set[asyncio.Queue[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the first endpoint that answers a status call."""
        if self._client is not None:
            return
        errors = []
        for url in self.endpoints:
            host, port = _parse_endpoint(url)
            # Large lists (5,000 pods is ~11 MB) exceed gRPC's default 4 MiB receive limit.
            client = aetcd.Client(host=host, port=port, timeout=int(self.timeout) or 1,
                                  options={"grpc.max_receive_message_length": 2**31 - 1,
                                           "grpc.max_send_message_length": 2**31 - 1})
            try:
                await asyncio.wait_for(client.connect(), self.timeout)
                await client.maintenancestub.Status(rpc.StatusRequest(), timeout=self.timeout)
            except (rpc.AioRpcError, aetcd.ClientError, TimeoutError) as exc:
                errors.append(f"{url}: {exc}")
                with contextlib.suppress(Exception):
                    await client.close()
                continue
            self._client = client
            break
        else:
            raise StorageError(f"no etcd endpoint answered: {'; '.join(errors)}")
        self._compacted = await self._probe_compacted(self._compacted)

    async def close(self) -> None:
        for q in list(self._watches):
            q.put_nowait(None)
        self._watches.clear()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), self.timeout)

    # -- reads ------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        resp = await self._rpc(self._kv.Range(rpc.RangeRequest(key=self._pfx or b"\0", count_only=True),
                                              timeout=self.timeout))
        return int(resp.header.revision)

    async def compacted_revision(self) -> int:
        self._compacted = await self._probe_compacted(self._compacted)
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._rpc(self._kv.Range(rpc.RangeRequest(key=self._key(key)), timeout=self.timeout))
        return self._kv_of(resp.kvs[0]) if resp.kvs else None

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        if revision and revision <= self._compacted:
            raise CompactedError(revision, self._compacted)
        start, end = self._range(prefix)
        if start_after and self._key(start_after) >= start:
            start = self._key(start_after) + b"\0"
        req = rpc.RangeRequest(key=start, range_end=end, revision=revision, limit=max(limit, 0))
        resp = await self._rpc(self._kv.Range(req, timeout=self.timeout), revision)
        items = [self._kv_of(kv) for kv in resp.kvs]
        return ListResult(items=items, revision=revision or int(resp.header.revision), more=bool(resp.more))

    async def count(self, prefix: str) -> int:
        start, end = self._range(prefix)
        req = rpc.RangeRequest(key=start, range_end=end, count_only=True)
        resp = await self._rpc(self._kv.Range(req, timeout=self.timeout))
        return int(resp.count)

    # -- writes -----------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> int:
        k = self._key(key)
        absent = rpc.Compare(key=k, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        txn = rpc.TxnRequest(
            compare=[absent],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
        )
        resp = await self._rpc(self._kv.Txn(txn, timeout=self.timeout))
        if not resp.succeeded:
            raise KeyExistsError(key)
        return int(resp.header.revision)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        k = self._key(key)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))
        resp = await self._cas(k, expected_revision, put)
        if not resp.succeeded:
            self._raise_cas_failure(key, resp)
        return int(resp.header.revision)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        k = self._key(key)
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))
        if expected_revision:
            resp = await self._cas(k, expected_revision, op)
            if not resp.succeeded:
                self._raise_cas_failure(key, resp)
        else:
            resp = await self._rpc(self._kv.Txn(rpc.TxnRequest(success=[op]), timeout=self.timeout))
        deleted = resp.responses[0].response_delete_range
        if not deleted.prev_kvs:
            raise KeyNotFoundError(key)
        prev = deleted.prev_kvs[0]
        return KeyValue(key, prev.value, int(prev.create_revision), int(resp.header.revision))

    async def compact(self, revision: int) -> None:
        current = await self.current_revision()
        revision = min(revision, current)
        if revision <= self._compacted:
            return
        try:
            await self._rpc(self._kv.Compact(rpc.CompactionRequest(revision=revision), timeout=self.timeout))
        except CompactedError:
            pass  # someone compacted further already
        self._compacted = max(self._compacted, revision)

    # -- watch ------------------------------------------------------------------------------

    async def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[StorageEvent]:
        if after_revision < self._compacted:
            raise CompactedError(after_revision, self._compacted)
        client = self._connected()
        start, end = self._range(prefix)
        create = rpc.WatchCreateRequest(
            key=start, range_end=end, start_revision=after_revision + 1, prev_kv=True
        )
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            await stop.wait()  # the request side stays open for the life of the watch

        items: asyncio.Queue[Any] = asyncio.Queue()
        call = rpc.WatchStub(client.channel).Watch(requests(), metadata=client.metadata)

        async def pump() -> None:
            try:
                async for response in call:
                    items.put_nowait(response)
            except Exception as exc:  # delivered to the consumer, mapped there
                items.put_nowait(exc)
            finally:
                items.put_nowait(None)

        reader = asyncio.create_task(pump(), name=f"etcd-watch:{prefix}")
        self._watches.add(items)
        try:
            while True:
                item = await items.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, rpc.AioRpcError) and item.code() == rpc.StatusCode.CANCELLED:
                        return
                    raise self._map_error(item) from item
                if item.compact_revision:
                    self._compacted = max(self._compacted, int(item.compact_revision))
                    raise CompactedError(after_revision, int(item.compact_revision))
                if item.canceled:
                    raise StorageError(f"etcd cancelled the watch on {prefix}: {item.cancel_reason}")
                for ev in item.events:
                    yield self._event_of(ev)
        finally:
            self._watches.discard(items)
            stop.set()
            call.cancel()
            reader.cancel()

    # -- internals --------------------------------------------------------------------------

    @property
    def _kv(self) -> Any:
        return self._connected().kvstub

    def _connected(self) -> Any:
        if self._client is None:
            raise StorageError("etcd storage is not started")
        return self._client

    def _key(self, key: str) -> bytes:
        return self._pfx + key.encode()

    def _range(self, prefix: str) -> tuple[bytes, bytes]:
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

    async def _cas(self, k: bytes, expected: int, op: Any) -> Any:
        same = rpc.Compare(key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=expected)
        txn = rpc.TxnRequest(
            compare=[same],
            success=[op],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        return await self._rpc(self._kv.Txn(txn, timeout=self.timeout))

    def _raise_cas_failure(self, key: str, resp: Any) -> None:
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            raise KeyNotFoundError(key)
        raise RevisionConflictError(key, self._kv_of(kvs[0]))

    async def _rpc(self, call: Awaitable[T], revision: int = 0) -> T:
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
                await self._rpc(
                    self._kv.Range(rpc.RangeRequest(key=b"\0", revision=rev, count_only=True),
                                   timeout=self.timeout)
                )
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
