"""machinery.spdy: frame round-trips, header blocks under the shared zlib dictionary stream, and
the server session (SYN_REPLY before the handler, PING echo, FIN and GOAWAY ends reads)."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Callable

import pytest

from machinery.spdy import (
    FLAG_FIN,
    MAX_BUFFERED,
    SPDY_DICTIONARY,
    DataFrame,
    Frame,
    FrameReader,
    FrameWriter,
    GoAway,
    Headers,
    Ping,
    RstStream,
    Settings,
    SpdyError,
    SpdySession,
    SpdyStream,
    SynReply,
    SynStream,
    WindowUpdate,
)


@pytest.mark.parametrize("frame", [
    pytest.param(DataFrame(1, b"hello"), id="data"),
    pytest.param(DataFrame(3, b"", FLAG_FIN), id="data-fin"),
    pytest.param(SynStream(5, {"streamtype": ["data"], "port": ["8080"], "requestid": ["0"]}, priority=2),
                 id="syn-stream"),
    pytest.param(SynReply(5, {}), id="syn-reply-empty"),
    pytest.param(Headers(7, {"x": ["a", "b"]}, FLAG_FIN), id="headers-multivalue"),
    pytest.param(RstStream(9, 5), id="rst"),
    pytest.param(Settings(((0, 7, 65536), (1, 4, 100))), id="settings"),
    pytest.param(Ping(11), id="ping"),
    pytest.param(GoAway(13, 0), id="goaway"),
    pytest.param(WindowUpdate(15, 4096), id="window-update"),
])
def test_frames_round_trip(frame: Frame) -> None:
    assert FrameReader().feed(FrameWriter().encode(frame)) == [frame]


def test_bytes_split_anywhere_and_shared_compression_state() -> None:
    writer, reader = FrameWriter(), FrameReader()
    frames: list[Frame] = [SynStream(2 * i + 1, {"streamtype": ["error" if i % 2 else "data"], "port": ["80"],
                                                 "requestid": [str(i // 2)]}) for i in range(6)]
    frames.insert(3, DataFrame(3, bytes(range(256)) * 10))
    wire = b"".join(writer.encode(f) for f in frames)
    decoded: list[Frame] = []
    for at in range(0, len(wire), 7):
        decoded += reader.feed(wire[at:at + 7])
    assert decoded == frames
    # Later blocks lean on the earlier ones: a fresh decoder cannot read the last block alone.
    last = writer.encode(SynStream(99, {"streamtype": ["data"]}))
    with pytest.raises(SpdyError):
        FrameReader().feed(last)


def test_header_blocks_use_the_spdy3_dictionary() -> None:
    assert len(SPDY_DICTIONARY) == 1423
    assert SPDY_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert SPDY_DICTIONARY.endswith(b"utf-,*,enq=0.")
    block = FrameWriter().encode(SynReply(1, {"status": ["200 OK"]}))[12:]
    # zlib header: FDICT set, then the dictionary's Adler-32, as any SPDY/3 peer checks.
    assert block[1] & 0x20
    assert struct.unpack(">I", block[2:6])[0] == zlib.adler32(SPDY_DICTIONARY)


@pytest.mark.parametrize(("wire", "message"), [
    pytest.param(struct.pack(">HHI", 0x8002, 1, 0), "unsupported SPDY version 2", id="version-2"),
    pytest.param(struct.pack(">HHI", 0x8003, 3, 2) + b"\x00\x01", "malformed control frame", id="short-rst"),
    pytest.param(struct.pack(">HHI", 0x8003, 2, 8) + struct.pack(">I", 1) + b"junk", "cannot inflate",
                 id="bad-zlib"),
])
def test_malformed_input_raises(wire: bytes, message: str) -> None:
    with pytest.raises(SpdyError, match=message):
        FrameReader().feed(wire)


def test_unknown_control_frames_are_ignored() -> None:
    wire = struct.pack(">HHI", 0x8003, 0x42, 4) + b"abcd" + FrameWriter().encode(Ping(1))
    assert FrameReader().feed(wire) == [Ping(1)]


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


class _Pipe:
    """The client's side of a session: frames in, frames out."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[bytes] = asyncio.Queue()
        self.outbound = FrameReader()
        self.sent: list[Frame] = []
        self.writer = FrameWriter()
        self.arrived = asyncio.Event()

    def client_sends(self, *frames: Frame) -> None:
        for frame in frames:
            self.inbound.put_nowait(self.writer.encode(frame))

    async def read(self) -> bytes:
        return await self.inbound.get()

    async def write(self, data: bytes) -> None:
        self.sent += self.outbound.feed(data)
        self.arrived.set()

    async def wait_sent(self, predicate: object) -> None:
        assert callable(predicate)
        while not predicate(self.sent):
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)


async def test_session_replies_echoes_and_relays() -> None:
    pipe = _Pipe()
    opened: list[SpdyStream] = []
    session = SpdySession(pipe.read, pipe.write, opened.append)
    running = asyncio.create_task(session.run())
    pipe.client_sends(SynStream(1, {"streamtype": ["data"]}), DataFrame(1, b"abc"), Ping(7), Ping(8),
                      Settings(((0, 7, 1),)), WindowUpdate(1, 10), DataFrame(1, b"def", FLAG_FIN))
    await pipe.wait_sent(lambda sent: Ping(7) in sent)
    assert pipe.sent[0] == SynReply(1, {})  # before the handler saw the stream
    assert Ping(8) not in pipe.sent  # even ids are the server's own pings: not echoed
    stream = opened[0]
    assert stream.header("streamType") == "data"
    assert [await stream.read(), await stream.read(), await stream.read()] == [b"abc", b"def", b""]
    await stream.write(b"x" * 70000)
    await stream.close()
    await pipe.wait_sent(lambda sent: DataFrame(1, b"", FLAG_FIN) in sent)
    data = b"".join(f.data for f in pipe.sent if isinstance(f, DataFrame))
    assert data == b"x" * 70000
    assert max(len(f.data) for f in pipe.sent if isinstance(f, DataFrame)) <= 32 * 1024
    pipe.client_sends(GoAway(1))
    await asyncio.wait_for(running, 10)


async def test_session_end_unblocks_readers_and_refuses_bad_ids() -> None:
    pipe = _Pipe()
    opened: list[SpdyStream] = []
    session = SpdySession(pipe.read, pipe.write, opened.append)
    running = asyncio.create_task(session.run())
    pipe.client_sends(SynStream(3, {}), SynStream(2, {}), SynStream(1, {}))
    await pipe.wait_sent(lambda sent: len(sent) >= 3)
    assert pipe.sent[1:] == [RstStream(2, 1), RstStream(1, 1)]  # even, then not increasing
    reader = asyncio.create_task(opened[0].read())
    pipe.inbound.put_nowait(b"")  # the connection ended
    await asyncio.wait_for(running, 10)
    assert await asyncio.wait_for(reader, 10) == b""
    await session.close()
    with pytest.raises(ConnectionResetError):
        await opened[0].write(b"late")


async def test_unread_data_holds_the_session_until_read_or_abandoned() -> None:
    pipe = _Pipe()
    opened: list[SpdyStream] = []
    session = SpdySession(pipe.read, pipe.write, opened.append)
    running = asyncio.create_task(session.run())
    chunk = b"z" * 32 * 1024
    pipe.client_sends(SynStream(1, {}), SynStream(3, {}), *[DataFrame(1, chunk)] * 40, Ping(1))
    await pipe.wait_sent(lambda sent: len(sent) >= 2)  # both replies
    stream = opened[0]
    await _until(lambda: stream.buffered >= MAX_BUFFERED)
    assert Ping(1) not in pipe.sent  # held: the next data frame waits for room, the ping behind it
    assert pipe.inbound.qsize() > 0
    received = 0
    while received < len(chunk) * 40:
        received += len(await asyncio.wait_for(stream.read(), 10))
    await pipe.wait_sent(lambda sent: Ping(1) in sent)  # reading released it
    pipe.client_sends(*[DataFrame(3, chunk)] * 40, Ping(3))
    await _until(lambda: opened[1].buffered >= MAX_BUFFERED)
    assert Ping(3) not in pipe.sent
    opened[1].abandon()  # nobody will read stream 3: its data is dropped, the session goes on
    await pipe.wait_sent(lambda sent: Ping(3) in sent)
    pipe.client_sends(GoAway(3))
    await asyncio.wait_for(running, 10)
