"""One conformance suite for every storage backend (memory, sqlite, etcd; see conftest.py).

Revisions are compared relatively (etcd's is shared by the whole session and starts at 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apiserver.storage import memory as memory_module
from apiserver.storage import open_storage
from apiserver.storage import sqlite as sqlite_module
from apiserver.storage.benchmark import measure_create_rate
from apiserver.storage.interface import (
    CompactedError,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
    Storage,
    StorageEvent,
)
from apiserver.storage.memory import MemoryStorage
from apiserver.storage.sqlite import SqliteStorage

TIMEOUT = 10.0


async def take(it: AsyncIterator[StorageEvent], n: int) -> list[StorageEvent]:
    """The next ``n`` events of a watch (fails after TIMEOUT)."""
    return [await asyncio.wait_for(anext(it), TIMEOUT) for _ in range(n)]


async def close(it: AsyncIterator[StorageEvent]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


async def test_create_get_update_delete(storage: Storage) -> None:
    rev1 = await storage.create("/registry/pods/ns/a", b"v1")
    kv = await storage.get("/registry/pods/ns/a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"v1", rev1, rev1)
    rev2 = await storage.update("/registry/pods/ns/a", b"v2", expected_revision=rev1)
    assert rev2 > rev1
    kv = await storage.get("/registry/pods/ns/a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"v2", rev1, rev2)
    assert await storage.current_revision() >= rev2
    deleted = await storage.delete("/registry/pods/ns/a", expected_revision=rev2)
    assert deleted.value == b"v2" and deleted.mod_revision > rev2
    assert deleted.create_revision == rev1
    assert await storage.get("/registry/pods/ns/a") is None
    assert await storage.get("/registry/pods/ns/never") is None


async def test_create_on_existing_key_fails(storage: Storage) -> None:
    await storage.create("/k", b"1")
    with pytest.raises(KeyExistsError):
        await storage.create("/k", b"2")
    kv = await storage.get("/k")
    assert kv is not None and kv.value == b"1"


async def test_recreate_after_delete_is_a_new_key(storage: Storage) -> None:
    first = await storage.create("/k", b"1")
    await storage.delete("/k")
    second = await storage.create("/k", b"2")
    kv = await storage.get("/k")
    assert kv is not None and kv.create_revision == second > first


@pytest.mark.parametrize(
    "op",
    [
        pytest.param("update", id="update"),
        pytest.param("delete", id="delete"),
    ],
)
async def test_stale_revision_conflicts_and_carries_current(storage: Storage, op: str) -> None:
    rev1 = await storage.create("/k", b"1")
    rev2 = await storage.update("/k", b"2", expected_revision=rev1)
    with pytest.raises(RevisionConflictError) as err:
        if op == "update":
            await storage.update("/k", b"3", expected_revision=rev1)
        else:
            await storage.delete("/k", expected_revision=rev1)
    assert err.value.key == "/k"
    assert err.value.current is not None
    assert (err.value.current.value, err.value.current.mod_revision) == (b"2", rev2)
    kv = await storage.get("/k")
    assert kv is not None and kv.value == b"2"


@pytest.mark.parametrize(
    "op",
    [
        pytest.param("update", id="update"),
        pytest.param("delete", id="delete"),
        pytest.param("delete-unconditional", id="delete-unconditional"),
    ],
)
async def test_missing_key_is_not_found(storage: Storage, op: str) -> None:
    with pytest.raises(KeyNotFoundError):
        if op == "update":
            await storage.update("/missing", b"x", expected_revision=5)
        elif op == "delete":
            await storage.delete("/missing", expected_revision=5)
        else:
            await storage.delete("/missing")


async def test_concurrent_writers_exactly_one_wins(storage: Storage) -> None:
    rev = await storage.create("/contended", b"0")
    barrier = asyncio.Event()

    async def writer(i: int) -> int | None:
        kv = await storage.get("/contended")
        assert kv is not None and kv.mod_revision == rev
        await barrier.wait()
        try:
            return await storage.update("/contended", f"{i}".encode(), expected_revision=kv.mod_revision)
        except RevisionConflictError as exc:
            assert exc.current is not None and exc.current.mod_revision > rev
            return None

    tasks = [asyncio.create_task(writer(i)) for i in range(20)]
    await asyncio.sleep(0.05)
    barrier.set()
    results = await asyncio.gather(*tasks)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    kv = await storage.get("/contended")
    assert kv is not None and kv.mod_revision == winners[0]


async def test_revisions_increase_globally_across_keys(storage: Storage) -> None:
    revs = []
    for i in range(10):
        revs.append(await storage.create(f"/a/{i}", b"x"))
        revs.append(await storage.create(f"/b/{i}", b"y"))
    revs.append(await storage.update("/a/0", b"z", expected_revision=revs[0]))
    revs.append((await storage.delete("/b/0")).mod_revision)
    assert revs == sorted(revs) and len(set(revs)) == len(revs)
    concurrent = await asyncio.gather(*(storage.create(f"/c/{i}", b"c") for i in range(30)))
    assert len(set(concurrent)) == 30 and min(concurrent) > revs[-1]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("/registry/pods/a/", ["/registry/pods/a/x", "/registry/pods/a/y"], id="ns-a"),
        pytest.param("/registry/pods/ab/", ["/registry/pods/ab/z"], id="ns-ab-not-in-a"),
        pytest.param(
            "/registry/pods/",
            ["/registry/pods/a/x", "/registry/pods/a/y", "/registry/pods/ab/z"],
            id="all-pods",
        ),
        pytest.param("/registry/pods/c/", [], id="empty"),
    ],
)
async def test_list_sorted_and_prefix_isolated(storage: Storage, prefix: str, expected: list[str]) -> None:
    for key in ["/registry/pods/ab/z", "/registry/pods/a/y", "/registry/services/a/s", "/registry/pods/a/x"]:
        await storage.create(key, key.encode())
    result = await storage.list(prefix)
    assert [kv.key for kv in result.items] == expected
    assert all(kv.value == kv.key.encode() for kv in result.items)
    assert result.revision == await storage.current_revision()
    assert not result.more
    assert await storage.count(prefix) == len(expected)


async def test_list_pages_with_limit_and_start_after(storage: Storage) -> None:
    keys = [f"/registry/pods/ns/p{i:02d}" for i in range(7)]
    for key in reversed(keys):
        await storage.create(key, b"x")
    await storage.create("/registry/pods/other/p", b"x")
    first = await storage.list("/registry/pods/ns/", limit=3)
    seen, page, pages = [kv.key for kv in first.items], first, 1
    while page.more:
        page = await storage.list(
            "/registry/pods/ns/", limit=3, start_after=seen[-1], revision=first.revision
        )
        assert page.revision == first.revision
        seen += [kv.key for kv in page.items]
        pages += 1
    assert seen == keys and pages == 3
    exact = await storage.list("/registry/pods/ns/", limit=7)
    assert len(exact.items) == 7 and not exact.more


async def test_list_at_older_revision_sees_old_state(storage: Storage) -> None:
    r_a = await storage.create("/r/a", b"a1")
    r_b = await storage.create("/r/b", b"b1")
    old = await storage.current_revision()
    await storage.update("/r/a", b"a2", expected_revision=r_a)
    await storage.delete("/r/b", expected_revision=r_b)
    await storage.create("/r/c", b"c1")
    then = await storage.list("/r/", revision=old)
    assert then.revision == old
    assert [(kv.key, kv.value, kv.mod_revision) for kv in then.items] == [
        ("/r/a", b"a1", r_a),
        ("/r/b", b"b1", r_b),
    ]
    now = await storage.list("/r/")
    assert [(kv.key, kv.value) for kv in now.items] == [("/r/a", b"a2"), ("/r/c", b"c1")]
    with pytest.raises(FutureRevisionError):
        await storage.list("/r/", revision=now.revision + 1000)


async def test_watch_reports_writes_in_order(storage: Storage) -> None:
    start = await storage.current_revision()
    it = storage.watch("/w/", after_revision=start)
    await storage.create("/w/ready", b"")
    await take(it, 1)  # the watch delivered a write: it is subscribed, the next writes go live
    first = asyncio.create_task(take(it, 4))
    r1 = await storage.create("/w/a", b"1")
    await storage.create("/other/a", b"ignored")
    r2 = await storage.update("/w/a", b"2", expected_revision=r1)
    r3 = await storage.create("/w/b", b"b")
    r4 = (await storage.delete("/w/a")).mod_revision
    events = await first
    await close(it)
    assert [(e.type, e.key, e.value, e.revision, e.prev_value, e.created) for e in events] == [
        (EventType.PUT, "/w/a", b"1", r1, None, True),
        (EventType.PUT, "/w/a", b"2", r2, b"1", False),
        (EventType.PUT, "/w/b", b"b", r3, None, True),
        (EventType.DELETE, "/w/a", b"2", r4, b"2", False),
    ]


async def test_watch_replays_then_goes_live_without_gaps_or_duplicates(storage: Storage) -> None:
    origin = await storage.current_revision()
    written: list[int] = []
    for i in range(30):
        written.append(await storage.create(f"/race/{i:03d}", b"x"))

    async def writer() -> None:
        for i in range(30, 130):
            written.append(await storage.create(f"/race/{i:03d}", b"x"))
            if i % 10 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)  # writes race with the subscription and the replay
    it = storage.watch("/race/", after_revision=origin)
    events = await take(it, 130)
    await task
    await close(it)
    revisions = [e.revision for e in events]
    assert revisions == sorted(written)
    assert [e.key for e in events] == [f"/race/{i:03d}" for i in range(130)]


async def test_watch_replays_history_longer_than_one_chunk(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory_module, "REPLAY_CHUNK", 7)
    monkeypatch.setattr(sqlite_module, "REPLAY_CHUNK", 7)
    origin = await storage.current_revision()
    written = [await storage.create(f"/long/{i:02d}", b"x") for i in range(40)]
    it = storage.watch("/long/", after_revision=origin)
    events = await take(it, 40)
    written.append(await storage.create("/long/live", b"x"))
    events += await take(it, 1)
    await close(it)
    assert [e.revision for e in events] == written


async def test_watch_from_the_middle_replays_only_later_writes(storage: Storage) -> None:
    r1 = await storage.create("/m/a", b"1")
    r2 = await storage.update("/m/a", b"2", expected_revision=r1)
    r3 = await storage.update("/m/a", b"3", expected_revision=r2)
    it = storage.watch("/m/", after_revision=r1)
    events = await take(it, 2)
    await close(it)
    assert [(e.revision, e.value, e.prev_value) for e in events] == [(r2, b"2", b"1"), (r3, b"3", b"2")]


async def test_compaction_expires_old_revisions(storage: Storage) -> None:
    r1 = await storage.create("/c/a", b"1")
    r2 = await storage.update("/c/a", b"2", expected_revision=r1)
    await storage.create("/c/gone", b"g")
    await storage.delete("/c/gone")
    r3 = await storage.update("/c/a", b"3", expected_revision=r2)
    await storage.compact(r3)
    r4 = await storage.update("/c/a", b"4", expected_revision=r3)
    assert await storage.compacted_revision() >= r3
    with pytest.raises(CompactedError):
        await storage.list("/c/", revision=r2)
    with pytest.raises(CompactedError):
        await anext(storage.watch("/c/", after_revision=r1))
    live = await storage.list("/c/")
    assert [(kv.key, kv.value, kv.create_revision) for kv in live.items] == [("/c/a", b"4", r1)]
    it = storage.watch("/c/", after_revision=r3)
    events = await take(it, 1)
    await close(it)
    assert [(e.revision, e.value, e.prev_value) for e in events] == [(r4, b"4", b"3")]
    assert await storage.count("/c/") == 1


async def test_count_follows_creates_and_deletes(storage: Storage) -> None:
    assert await storage.count("/n/") == 0
    for i in range(5):
        await storage.create(f"/n/{i}", b"x")
    await storage.create("/nn/0", b"x")
    await storage.delete("/n/3")
    assert await storage.count("/n/") == 4


async def test_delete_returns_last_value_with_delete_revision(storage: Storage) -> None:
    r1 = await storage.create("/d/a", b"1")
    r2 = await storage.update("/d/a", b"last", expected_revision=r1)
    it = storage.watch("/d/", after_revision=r2)
    deleted = await storage.delete("/d/a")
    assert (deleted.key, deleted.value, deleted.create_revision) == ("/d/a", b"last", r1)
    assert deleted.mod_revision > r2
    assert await storage.current_revision() >= deleted.mod_revision
    (event,) = await take(it, 1)
    await close(it)
    assert (event.type, event.value, event.revision) == (EventType.DELETE, b"last", deleted.mod_revision)


async def test_close_ends_open_watches(storage: Storage) -> None:
    it = storage.watch("/x/", after_revision=await storage.current_revision())
    pending = asyncio.create_task(take(it, 1))
    await asyncio.sleep(0.2)
    await storage.close()
    with pytest.raises(StopAsyncIteration):
        await pending


async def test_sqlite_restart_keeps_data_revision_and_history(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStorage(path)
    await store.start()
    r1 = await store.create("/p/a", b"1")
    r2 = await store.update("/p/a", b"2", expected_revision=r1)
    await store.close()

    store = SqliteStorage(path)
    await store.start()
    try:
        assert await store.current_revision() == r2
        kv = await store.get("/p/a")
        assert kv is not None and (kv.value, kv.mod_revision) == (b"2", r2)
        r3 = await store.create("/p/b", b"b")
        assert r3 == r2 + 1
        it = store.watch("/p/", after_revision=0)
        events = await take(it, 3)
        await close(it)
        assert [(e.revision, e.key, e.value) for e in events] == [
            (r1, "/p/a", b"1"),
            (r2, "/p/a", b"2"),
            (r3, "/p/b", b"b"),
        ]
    finally:
        await store.close()


async def test_sqlite_groups_concurrent_writes_into_few_commits(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "state.db")
    await store.start()
    try:
        rate = await measure_create_rate(store, count=2000, concurrency=32)
        assert store.writes == 2000
        assert store.commits < 1000  # group commit: many writes per transaction
        assert rate > 300  # measured ~50,000/s here; a loose floor against CI noise
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("kind", "kwargs", "expected"),
    [
        pytest.param("memory", {}, MemoryStorage, id="memory"),
        pytest.param("sqlite", {"sqlite_path": Path("/tmp/x.db")}, SqliteStorage, id="sqlite"),
        pytest.param("sqlite", {}, ValueError, id="sqlite-without-path"),
        pytest.param("etcd", {}, ValueError, id="etcd-without-servers"),
        pytest.param("mysql", {}, ValueError, id="unknown"),
    ],
)
def test_open_storage(kind: str, kwargs: dict[str, Any], expected: type) -> None:
    if issubclass(expected, Exception):
        with pytest.raises(expected):
            open_storage(kind, **kwargs)
    else:
        assert isinstance(open_storage(kind, **kwargs), expected)
