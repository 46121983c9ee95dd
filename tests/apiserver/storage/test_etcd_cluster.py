"""``EtcdStorage`` over a real 3-member etcd cluster: members die, the store keeps its promises.

Writers keep creating and updating keys while a member is SIGKILLed, started again, and then
the raft leader is SIGKILLed. The store must answer again within 5 s of each kill, lose no
acknowledged write (the final list holds every acknowledged create at its last acknowledged
revision), and a watch opened before the kills must deliver every acknowledged revision
exactly once, in order, without ending. A write whose reply was lost after it landed is
settled from etcd's history (the fault is injected into the channel, on one member).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from apiserver.storage.etcd import EtcdStorage
from apiserver.storage.etcd_channel import EtcdChannel, Reply
from apiserver.storage.interface import (
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RevisionConflictError,
    StorageError,
)
from tests.etcd_server import EtcdCluster, EtcdError, EtcdMember, EtcdServer

pytestmark = pytest.mark.etcd

RECOVERY_LIMIT = 5.0
"""Seconds from a kill to the first write acknowledged after it."""
WRITES_BETWEEN_KILLS = 40
WRITERS = 4


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    etcd = EtcdCluster(tmp_path / "etcd")
    try:
        etcd.start()
    except EtcdError as exc:
        pytest.fail(f"cannot start a 3-member etcd: {exc}", pytrace=False)
    yield etcd
    etcd.stop()


@pytest.fixture
async def store(cluster: EtcdCluster) -> AsyncIterator[EtcdStorage]:
    storage = EtcdStorage(cluster.client_urls, prefix=f"/t-{uuid.uuid4().hex[:8]}")
    await storage.start()
    yield storage
    await storage.close()


@pytest.fixture
async def pinned(cluster: EtcdCluster, store: EtcdStorage) -> AsyncIterator[tuple[EtcdStorage, EtcdMember]]:
    """A second store on the same keys that uses a follower (first in its list) until it dies."""
    leader = await asyncio.to_thread(cluster.wait_leader)
    follower = next(m for m in cluster.members if m is not leader)
    order = [follower, leader] + [m for m in cluster.members if m not in (follower, leader)]
    storage = EtcdStorage([m.client_url for m in order], prefix=store.prefix, balancing="pick_first")
    await storage.start()
    yield storage, follower
    await storage.close()


@dataclass
class Ledger:
    """What the writers were told: acknowledged revisions per key, and failures."""

    acks: list[tuple[float, float, int, str]] = field(default_factory=list)  # (sent, answered, revision, key)
    last: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def ack(self, revision: int, key: str, started: float) -> None:
        now = time.monotonic()
        self.acks.append((started, now, revision, key))
        self.last[key] = revision
        self.slowest = max(self.slowest, now - started)

    def first_ack_after(self, moment: float, *, pinned: bool | None = None) -> float | None:
        """Seconds from ``moment`` to the answer of the first write sent after it (of the pinned
        writers only, or of the others)."""
        done = [t for sent, t, _, key in self.acks if sent >= moment and pinned in (None, _pinned_writer(key))]
        return min(done) - moment if done else None


def _pinned_writer(key: str) -> bool:
    return int(key.split("/")[1][1:]) % 2 == 1


async def write_forever(store: EtcdStorage, writer: int, ledger: Ledger, stop: asyncio.Event) -> None:
    """Create a key, update it once, move on; every answer is recorded."""
    for i in itertools.count():
        if stop.is_set():
            return
        key = f"/w{writer}/{i:05d}"
        started = time.monotonic()
        try:
            rev = await store.create(key, f"{key}@0".encode())
            ledger.ack(rev, key, started)
            started = time.monotonic()
            rev = await store.update(key, f"{key}@1".encode(), expected_revision=rev)
            ledger.ack(rev, key, started)
        except StorageError as exc:
            ledger.errors.append(f"{key}: {exc!r}")
            await asyncio.sleep(0.05)


async def watch_into(store: EtcdStorage, after: int, seen: list[int]) -> None:
    async for event in store.watch("/", after_revision=after):
        seen.append(event.revision)


async def wait_for(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def kill_and_measure(cluster: EtcdCluster, member: EtcdMember, ledger: Ledger) -> dict[str, float]:
    """SIGKILL ``member`` under load; seconds until each group of writers has a write acknowledged."""
    floor = len(ledger.acks) + WRITES_BETWEEN_KILLS
    await asyncio.to_thread(cluster.kill, member)
    killed = time.monotonic()
    await wait_for(lambda: ledger.first_ack_after(killed, pinned=True) is not None
                   and ledger.first_ack_after(killed, pinned=False) is not None,
                   timeout=30, what="writes after the kill")
    await wait_for(lambda: len(ledger.acks) >= floor, timeout=60, what=f"{WRITES_BETWEEN_KILLS} writes after the kill")
    return {group: round(ledger.first_ack_after(killed, pinned=group == "pinned") or 0.0, 3)
            for group in ("pinned", "balanced")}


@pytest.mark.slow
async def test_a_member_and_then_the_leader_die_under_writes(
        cluster: EtcdCluster, store: EtcdStorage, pinned: tuple[EtcdStorage, EtcdMember],
        caplog: pytest.LogCaptureFixture) -> None:
    """Half the writers and the watch use the member killed first (then the leader, likely)."""
    caplog.set_level(logging.WARNING, logger="apiserver.storage.etcd")
    pinned_store, follower = pinned
    start = await store.current_revision()
    seen: list[int] = []
    watcher = asyncio.create_task(watch_into(pinned_store, start, seen), name="cluster-test-watch")
    ledger = Ledger()
    stop = asyncio.Event()
    writers = [asyncio.create_task(write_forever(pinned_store if w % 2 else store, w, ledger, stop), name=f"writer-{w}")
               for w in range(WRITERS)]
    try:
        await wait_for(lambda: len(ledger.acks) >= WRITES_BETWEEN_KILLS, timeout=60, what="writes before the kills")
        recovered = {"follower": await kill_and_measure(cluster, follower, ledger)}
        await asyncio.to_thread(cluster.restart, follower)
        leader = await asyncio.to_thread(cluster.wait_leader)
        recovered["leader"] = await kill_and_measure(cluster, leader, ledger)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    print(f"recovery after kill: {recovered}; slowest write {ledger.slowest:.2f} s; {len(ledger.acks)} writes")

    assert ledger.errors == []
    assert all(seconds < RECOVERY_LIMIT for by_group in recovered.values() for seconds in by_group.values()), recovered

    final = await store.list("/")
    assert {kv.key: kv.mod_revision for kv in final.items} == ledger.last

    acked = sorted(rev for _, _, rev, _ in ledger.acks)
    await wait_for(lambda: bool(seen) and seen[-1] >= acked[-1], timeout=30, what="the watch to catch up")
    assert not watcher.done(), "the watch ended"
    assert any("resuming after revision" in r.getMessage() for r in caplog.records), "the watch never moved"
    watcher.cancel()
    assert seen == sorted(set(seen)), "the watch repeated or reordered revisions"
    assert seen == acked, f"missed {sorted(set(acked) - set(seen))[:10]}, extra {sorted(set(seen) - set(acked))[:10]}"


async def test_start_with_a_member_down(cluster: EtcdCluster) -> None:
    await asyncio.to_thread(cluster.kill, cluster.members[0])
    storage = EtcdStorage(cluster.client_urls, prefix="/down")
    await storage.start()
    try:
        rev = await storage.create("/a", b"1")
        assert (await storage.get("/a")) is not None
        assert await storage.current_revision() >= rev
    finally:
        await storage.close()


# -- a write that landed although its reply was lost ------------------------------------------


class LostReplies:
    """Wraps ``EtcdChannel.unary``: every write is sent twice and answered with the second
    reply, marked ambiguous, as when a connection breaks after etcd applied the first.
    ``between`` (if set) runs once between the two, like a rival client writing meanwhile."""

    def __init__(self, channel: EtcdChannel) -> None:
        self.unary = channel.unary
        self.between: Callable[[], Awaitable[object]] | None = None

    async def __call__(self, method: Any, request: Any, *, write: bool = False, bulk: bool = False,
                      budget: float | None = None) -> Reply:
        if not write:
            return await self.unary(method, request, bulk=bulk, budget=budget)
        await self.unary(method, request, write=True)
        between, self.between = self.between, None
        if between is not None:
            await between()
        again = await self.unary(method, request, write=True)
        return Reply(again.response, ambiguous=True)


@pytest.fixture
async def lossy(etcd_server: EtcdServer) -> AsyncIterator[tuple[EtcdStorage, EtcdStorage, LostReplies]]:
    """A store whose write replies get lost, a plain one on the same keys, and the fault."""
    prefix = f"/lossy-{uuid.uuid4().hex[:8]}"
    faulty, plain = EtcdStorage([etcd_server.client_url], prefix), EtcdStorage([etcd_server.client_url], prefix)
    await faulty.start()
    await plain.start()
    channel = faulty._channel
    assert channel is not None
    fault = LostReplies(channel)
    channel.unary = fault  # type: ignore[method-assign]
    yield faulty, plain, fault
    await faulty.close()
    await plain.close()


async def current(store: EtcdStorage, key: str) -> KeyValue:
    kv = await store.get(key)
    assert kv is not None
    return kv


async def test_lost_replies_are_settled_from_history(lossy: tuple[EtcdStorage, EtcdStorage, LostReplies]) -> None:
    faulty, plain, fault = lossy
    created = await faulty.create("/k", b"v0")
    assert (await current(plain, "/k")).mod_revision == created
    updated = await faulty.update("/k", b"v1", expected_revision=created)
    assert (await current(plain, "/k")).value == b"v1"
    assert (await current(plain, "/k")).mod_revision == updated

    def rival_update(key: str) -> Callable[[], Awaitable[int]]:
        async def write() -> int:
            kv = await current(plain, key)
            return await plain.update(key, kv.value + b"+rival", expected_revision=kv.mod_revision)
        return write

    # Our write landed, then a rival's: still ours, at the revision it got.
    fault.between = rival_update("/k")
    again = await faulty.update("/k", b"v2", expected_revision=updated)
    assert (await current(plain, "/k")).value == b"v2+rival"
    assert again == (await current(plain, "/k")).mod_revision - 1
    fault.between = rival_update("/other")
    other = await faulty.create("/other", b"o0")
    assert (await current(plain, "/other")).create_revision == other
    assert (await current(plain, "/other")).value == b"o0+rival"

    last = await current(plain, "/k")
    deleted = await faulty.delete("/k", expected_revision=last.mod_revision)
    assert (deleted.value, deleted.create_revision) == (b"v2+rival", created)
    assert await plain.get("/k") is None
    assert deleted.mod_revision == await plain.current_revision()


@pytest.mark.parametrize("rival", ["create", "update", "delete"])
async def test_lost_replies_do_not_hide_a_rival_write(
        lossy: tuple[EtcdStorage, EtcdStorage, LostReplies], rival: str) -> None:
    faulty, plain, _ = lossy
    base = await plain.create("/r", b"theirs")
    if rival == "create":
        with pytest.raises(KeyExistsError):
            await faulty.create("/r", b"mine")
    elif rival == "update":
        await plain.update("/r", b"theirs-2", expected_revision=base)
        with pytest.raises(RevisionConflictError):
            await faulty.update("/r", b"mine", expected_revision=base)
    else:
        await plain.delete("/r", expected_revision=base)
        with pytest.raises(KeyNotFoundError):
            await faulty.update("/r", b"mine", expected_revision=base)
