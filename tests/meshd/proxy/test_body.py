"""Body: backpressure on the producer, errors after buffered data; Replay: the retry buffer's limit."""

from __future__ import annotations

import asyncio

import pytest

from meshd.proxy.body import HIGH_WATER, Body, Replay, StreamAbandoned


class Reader:
    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False


async def test_producer_is_paused_above_the_high_water_mark_and_resumed_once_read() -> None:
    reader = Reader()
    body = Body(reader=reader)
    chunk = b"x" * 65536
    fed = 0
    while not reader.paused:
        body.feed(chunk)
        fed += len(chunk)
    assert HIGH_WATER < fed <= HIGH_WATER + len(chunk)
    assert await body.read() == chunk * (fed // len(chunk))
    assert not reader.paused and reader.pauses == 1


async def test_reader_waits_for_data_and_gets_the_error_after_what_was_buffered() -> None:
    body = Body()
    pending = asyncio.ensure_future(body.read())
    await asyncio.sleep(0)
    assert not pending.done()
    body.feed(b"abc")
    assert await pending == b"abc"
    body.feed(b"def")
    body.fail(ConnectionResetError("upstream reset"))
    assert await body.read() == b"def"
    with pytest.raises(ConnectionResetError, match="upstream reset"):
        await body.read()


async def test_abort_tells_the_producer_and_fails_the_body() -> None:
    cancelled: list[bool] = []
    body = Body()
    body.cancel = lambda: cancelled.append(True)
    body.abort()
    assert cancelled == [True]
    assert isinstance(body.error, StreamAbandoned)


async def test_h2_style_consumption_is_reported_as_read() -> None:
    consumed: list[int] = []
    body = Body(consumed=consumed.append)
    body.feed(b"12345")
    body.feed(b"678")
    assert consumed == []
    assert body.take() == b"12345678"
    assert consumed == [8]


async def test_replay_sends_a_small_body_again() -> None:
    body = Body()
    replay = Replay(body, limit=100)
    body.feed(b"a" * 40)
    assert await replay.read() == b"a" * 40
    body.feed(b"b" * 40)
    body.end()
    assert await replay.read() == b"b" * 40
    assert await replay.read() == b""
    assert replay.retriable
    replay.restart()
    assert replay.whole() == b"a" * 40 + b"b" * 40  # a retry of a complete body: one write
    replay.restart()
    assert [await replay.read(), await replay.read(), await replay.read()] == [b"a" * 40, b"b" * 40, b""]


async def test_replay_past_the_limit_is_not_retriable() -> None:
    body = Body()
    replay = Replay(body, limit=100)
    body.feed(b"a" * 60)
    assert await replay.read() == b"a" * 60
    assert replay.retriable
    body.feed(b"b" * 60)
    assert await replay.read() == b"b" * 60
    assert not replay.retriable


def test_whole_body_at_once_when_complete() -> None:
    body = Body.of(b"hello")
    replay = Replay(body, limit=100)
    assert replay.whole() == b"hello"
    assert replay.retriable
    big = Replay(Body.of(b"x" * 200), limit=100)
    assert big.whole() == b"x" * 200  # sent once, whole
    assert not big.retriable
