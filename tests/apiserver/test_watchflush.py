"""The paced watch flusher: coalescing, pacing, backed-up clients, and event order on the wire."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from apiserver import watch
from apiserver.watchcache import CacheEvent
from apiserver.watchflush import BACKED_UP_BYTES, StreamSink, WatchFlusher
from tests.apiserver.conftest import embedded_api


class FakeTransport:
    """Records writes; ``backlog`` is what get_write_buffer_size reports; ``delay`` makes writes slow."""

    def __init__(self, *, backlog: int = 0, delay: float = 0.0) -> None:
        self.writes: list[bytes] = []
        self.backlog = backlog
        self.delay = delay
        self.closing = False

    def write(self, data: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.closing


def event(revision: int) -> CacheEvent:
    obj = {"metadata": {"name": f"cm-{revision}", "resourceVersion": str(revision)}}
    return CacheEvent("ADDED", revision, orjson.dumps(obj))


def sink_on(flusher: WatchFlusher, transport: FakeTransport, counted: list[int]) -> StreamSink:
    return flusher.sink(transport, counted.append)  # type: ignore[arg-type]


def chunks(transport: FakeTransport) -> list[list[int]]:
    """Each write parsed as one HTTP chunk: the revisions of the events it carries."""
    out = []
    for data in transport.writes:
        size, rest = data.split(b"\r\n", 1)
        assert int(size, 16) == len(rest) - 2 and rest.endswith(b"\r\n")
        out.append([int(orjson.loads(line)["object"]["metadata"]["resourceVersion"])
                    for line in rest[:-2].splitlines()])
    return out


async def test_events_offered_together_go_out_as_one_chunk_on_the_next_loop_turn() -> None:
    flusher, transport = WatchFlusher(), FakeTransport()
    counted: list[int] = []
    sink = sink_on(flusher, transport, counted)
    assert sink(event(1)) and sink(event(2))
    assert transport.writes == []  # nothing is written inside the fan-out itself
    await asyncio.sleep(0)
    assert chunks(transport) == [[1, 2]]
    assert counted == [2]


async def test_each_client_gets_one_write_per_flush() -> None:
    flusher = WatchFlusher()
    transports = [FakeTransport() for _ in range(3)]
    counted: list[int] = []  # one counter for the three (a resource's metric)
    sinks = [sink_on(flusher, t, counted) for t in transports]
    for revision in (5, 6):
        for sink in sinks:
            sink(event(revision))
    await asyncio.sleep(0)
    assert [chunks(t) for t in transports] == [[[5, 6]]] * 3
    assert (flusher.flushes, flusher.writes) == (1, 3)
    assert counted == [6], "the metric is updated once per flush"


async def until_chunks(transport: FakeTransport, expected: list[list[int]], *, within: float) -> None:
    """Wait until ``transport`` received exactly the ``expected`` chunks; fail after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while chunks(transport) != expected:
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"after {within}s the chunks were {chunks(transport)}, not {expected}") from None


async def test_a_costly_flush_delays_the_next_by_its_cost_over_the_duty() -> None:
    flusher = WatchFlusher(duty=0.5, max_pause=1.0)
    slow = FakeTransport(delay=0.2)  # each flush costs ~200 ms: the next waits ~200 ms
    sink = sink_on(flusher, slow, [])
    sink(event(1))
    await asyncio.sleep(0)
    assert chunks(slow) == [[1]]
    sink(event(2))
    sink(event(3))
    slow.delay = 0
    await asyncio.sleep(0.02)
    assert chunks(slow) == [[1]], "the second flush came before the pause"
    await until_chunks(slow, [[1], [2, 3]], within=5.0)


async def test_the_pause_is_capped() -> None:
    flusher = WatchFlusher(duty=0.01, max_pause=0.02)
    slow = FakeTransport(delay=0.02)  # uncapped, the pause would be ~2 s
    sink = sink_on(flusher, slow, [])
    sink(event(1))
    await asyncio.sleep(0)
    slow.delay = 0
    sink(event(2))
    await until_chunks(slow, [[1], [2]], within=1.5)  # uncapped: ~2 s


async def test_a_backed_up_client_is_declined_until_it_drains() -> None:
    flusher, transport = WatchFlusher(), FakeTransport(backlog=BACKED_UP_BYTES + 1)
    sink = sink_on(flusher, transport, [])
    assert sink(event(1)) is False
    transport.backlog = 0
    assert sink(event(2)) is True
    transport.backlog = BACKED_UP_BYTES + 1
    assert sink(event(3)) is True, "with events pending, declining would reorder them"
    await asyncio.sleep(0)
    assert chunks(transport) == [[2, 3]]


async def test_flush_discard_and_a_closing_client() -> None:
    flusher, transport = WatchFlusher(), FakeTransport()
    counted: list[int] = []
    sink = sink_on(flusher, transport, counted)
    sink(event(1))
    assert sink.flush() == 1 and chunks(transport) == [[1]]
    sink(event(2))
    sink.discard()
    await asyncio.sleep(0)
    assert chunks(transport) == [[1]] and counted == [1]
    transport.closing = True
    assert sink(event(3)) is False
    assert sink.flush() == 0


async def test_events_and_bookmarks_arrive_in_revision_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bookmarks written by the watch's task never overtake events still held by its sink."""
    monkeypatch.setattr(watch, "BOOKMARK_INTERVAL_SECONDS", 0.005)
    # Long pauses between flushes, so bookmarks come due while the sink holds events.
    monkeypatch.setattr(WatchFlusher, "__init__", functools.partialmethod(WatchFlusher.__init__, duty=0.001,
                                                                           max_pause=0.03))
    path = "/api/v1/namespaces/default/configmaps"
    async with embedded_api(tmp_path) as api:
        seen: list[tuple[str, int]] = []

        async def read() -> None:
            resp = await api.response("GET", f"{path}?watch=true&allowWatchBookmarks=true&timeoutSeconds=3")
            async for line in resp.content:
                ev: dict[str, Any] = orjson.loads(line)
                seen.append((ev["type"], int(ev["object"]["metadata"]["resourceVersion"])))

        reader = asyncio.create_task(read())
        async with asyncio.timeout(10):
            while not seen:  # the first bookmark shows the watch is live
                await asyncio.sleep(0.01)
        for i in range(60):
            status, _ = await api.request("POST", path, {"metadata": {"name": f"c{i}"}})
            assert status == 201
            if i % 7 == 0:
                await asyncio.sleep(0.01)
        await reader
    revisions = [rv for _, rv in seen]
    assert sum(1 for t, _ in seen if t == "ADDED") == 60
    assert any(t == "BOOKMARK" for t, _ in seen)
    assert revisions == sorted(revisions), seen
