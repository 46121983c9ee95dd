"""SPDY/3.1 framing and a small server-side session: what kubectl's streams travel in.

kubectl opens ``pods/exec``, ``pods/attach`` and ``pods/portforward`` as SPDY/3.1 sessions: over
a plain HTTP upgrade (``Upgrade: SPDY/3.1``; kubectl <= 1.29 for exec/attach/cp, <= 1.30 for
port-forward, and the fallback of later ones), or -- port-forward of kubectl 1.31+ -- inside the
binary messages of a WebSocket with subprotocol ``SPDY/3.1+portforward.k8s.io``. The apiserver
serves both (``apiserver.spdy_streams``); this module knows nothing of HTTP or WebSocket: a
:class:`SpdySession` reads and writes bytes through two callables.

Frames (all integers big-endian)::

    control:  1 | version(15)=3 | type(16) | flags(8) | length(24) | payload
    data:     0 | stream-id(31)            | flags(8) | length(24) | data

    SYN_STREAM(1)    stream-id, associated-id, priority(3)+unused(5), slot(8), header block
    SYN_REPLY(2)     stream-id, header block
    RST_STREAM(3)    stream-id, status
    SETTINGS(4)      count, count x (flags(8) id(24) value(32))
    PING(6)          id
    GOAWAY(7)        last-good-stream-id, status
    HEADERS(8)       stream-id, header block
    WINDOW_UPDATE(9) stream-id, delta(31)

Flags: FIN (0x01) ends the sender's half of a stream; UNIDIRECTIONAL (0x02) on SYN_STREAM.
Header blocks are ``count(32)`` then ``name-len(32) name value-len(32) value`` pairs (several
values of one name joined by NUL), compressed with ONE zlib stream per direction for the whole
session, primed with the protocol's dictionary (:data:`SPDY_DICTIONARY`) and flushed with
``Z_SYNC_FLUSH`` after each block: the decoder must see every block in order.

Flow control: SPDY/3.1 defines windows, but Kubernetes' peer (moby/spdystream) neither sends
WINDOW_UPDATE nor honours windows, so the session ignores SETTINGS and WINDOW_UPDATE and never
waits for a window; back-pressure comes from the transport: ``write`` is awaited, and a stream
holding :data:`MAX_BUFFERED` unread bytes stops the session's reading until it is read (or
:meth:`SpdyStream.abandon` ed), as spdystream's unbuffered stream channels do.

Guarantees: :class:`FrameReader` accepts bytes split anywhere and raises :class:`SpdyError`
on a malformed frame; a :class:`SpdySession` answers every client SYN_STREAM with a SYN_REPLY
before its handler sees the stream, echoes the client's PINGs, and on GOAWAY or end of input
ends every stream's reads (``b""``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "FLAG_FIN",
    "FLAG_UNIDIRECTIONAL",
    "MAX_BUFFERED",
    "SPDY_DICTIONARY",
    "DataFrame",
    "Frame",
    "FrameReader",
    "FrameWriter",
    "GoAway",
    "HeaderBlock",
    "Headers",
    "Ping",
    "RstStream",
    "Settings",
    "SpdyError",
    "SpdySession",
    "SpdyStream",
    "SynReply",
    "SynStream",
    "WindowUpdate",
]

log = logging.getLogger(__name__)

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_DATA = 32 * 1024
"""Largest data frame written (the format allows 16 MiB; small frames keep streams interleaved)."""
MAX_BUFFERED = 1 << 20
"""Unread bytes a stream holds before the session stops reading (see :meth:`SpdyStream._deliver`)."""

_SYN_STREAM, _SYN_REPLY, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _HEADERS, _WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, RST_CANCEL = 1, 3, 5

_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location",
    "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
    "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
    "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
    "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
SPDY_DICTIONARY: bytes = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + \
    _DICTIONARY_TAIL.encode()
"""The zlib dictionary of SPDY/3 header compression (section 2.6.10.1 of the draft): the
length-prefixed common header words, then common values."""

HeaderBlock = dict[str, list[str]]
"""Decoded headers: lower-case name → values."""


class SpdyError(Exception):
    """A malformed frame or header block (the session ends)."""


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: HeaderBlock
    flags: int = 0
    associated_id: int = 0
    priority: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: HeaderBlock = field(default_factory=dict)
    flags: int = 0


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()
    """(flags, id, value) triples."""
    flags: int = 0


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class Headers:
    stream_id: int
    headers: HeaderBlock
    flags: int = 0


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | Headers | WindowUpdate


def _encode_block(headers: Mapping[str, Sequence[str]]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        key, value = name.lower().encode(), "\x00".join(values).encode()
        out.append(struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value)
    return b"".join(out)


def _decode_block(raw: bytes) -> HeaderBlock:
    try:
        (count,), at = struct.unpack_from(">I", raw), 4
        headers: HeaderBlock = {}
        for _ in range(count):
            (size,) = struct.unpack_from(">I", raw, at)
            name, at = raw[at + 4:at + 4 + size].decode().lower(), at + 4 + size
            (size,) = struct.unpack_from(">I", raw, at)
            value, at = raw[at + 4:at + 4 + size].decode(), at + 4 + size
            if at > len(raw):
                raise SpdyError("header block truncated")
            headers.setdefault(name, []).extend(value.split("\x00"))
        return headers
    except (struct.error, UnicodeDecodeError) as err:
        raise SpdyError(f"malformed header block: {err}") from err


class FrameWriter:
    """Encodes frames; owns this direction's header compressor (encode in sending order)."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, zdict=SPDY_DICTIONARY)

    def _block(self, headers: Mapping[str, Sequence[str]]) -> bytes:
        raw = _encode_block(headers)
        return self._zlib.compress(raw) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            if len(frame.data) > 0xFFFFFF:
                raise SpdyError("data frame too large")
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (frame.flags << 24) | len(frame.data)) + \
                frame.data
        if isinstance(frame, SynStream):
            head = struct.pack(">IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5, 0)
            return self._control(_SYN_STREAM, frame.flags, head + self._block(frame.headers))
        if isinstance(frame, SynReply | Headers):
            kind = _SYN_REPLY if isinstance(frame, SynReply) else _HEADERS
            return self._control(kind, frame.flags, struct.pack(">I", frame.stream_id) + self._block(frame.headers))
        if isinstance(frame, RstStream):
            return self._control(_RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (flags << 24) | ident, value) for flags, ident, value in frame.entries)
            return self._control(_SETTINGS, frame.flags, body)
        if isinstance(frame, Ping):
            return self._control(_PING, 0, struct.pack(">I", frame.ping_id))
        if isinstance(frame, GoAway):
            return self._control(_GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        return self._control(_WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta & 0x7FFFFFFF))


class FrameReader:
    """Decodes frames from bytes split anywhere; owns this direction's header decompressor."""

    MAX_FRAME = 0xFFFFFF

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._zlib = zlib.decompressobj(zdict=SPDY_DICTIONARY)

    def _block(self, data: bytes) -> HeaderBlock:
        if not data:
            return {}
        try:
            raw = self._zlib.decompress(data)
        except zlib.error as err:
            raise SpdyError(f"cannot inflate a header block: {err}") from err
        return _decode_block(raw)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame now complete."""
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer)
            flags, length = second >> 24, second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            if not first & 0x80000000:
                frames.append(DataFrame(first & 0x7FFFFFFF, payload, flags))
                continue
            version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
            if version != VERSION:
                raise SpdyError(f"unsupported SPDY version {version}")
            frame = self._control(kind, flags, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _control(self, kind: int, flags: int, payload: bytes) -> Frame | None:
        try:
            if kind == _SYN_STREAM:
                stream_id, associated, priority = struct.unpack_from(">IIB", payload)
                return SynStream(stream_id & 0x7FFFFFFF, self._block(payload[10:]), flags, associated & 0x7FFFFFFF,
                                 priority >> 5)
            if kind in (_SYN_REPLY, _HEADERS):
                (stream_id,) = struct.unpack_from(">I", payload)
                block = self._block(payload[4:])
                cls = SynReply if kind == _SYN_REPLY else Headers
                return cls(stream_id & 0x7FFFFFFF, block, flags)
            if kind == _RST_STREAM:
                stream_id, status = struct.unpack_from(">II", payload)
                return RstStream(stream_id & 0x7FFFFFFF, status)
            if kind == _SETTINGS:
                (count,) = struct.unpack_from(">I", payload)
                entries = []
                for index in range(count):
                    head, value = struct.unpack_from(">II", payload, 4 + 8 * index)
                    entries.append((head >> 24, head & 0xFFFFFF, value))
                return Settings(tuple(entries), flags)
            if kind == _PING:
                return Ping(struct.unpack_from(">I", payload)[0])
            if kind == _GOAWAY:
                last, status = struct.unpack_from(">II", payload) if len(payload) >= 8 else \
                    (struct.unpack_from(">I", payload)[0], 0)
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == _WINDOW_UPDATE:
                stream_id, delta = struct.unpack_from(">II", payload)
                return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as err:
            raise SpdyError(f"malformed control frame of type {kind}: {err}") from err
        return None  # unknown control frames are ignored, as the protocol asks


# ---------------------------------------------------------------------------------------------
# The session (server side: the client opens odd-numbered streams)

ReadBytes = Callable[[], Awaitable[bytes]]
"""Returns the next bytes of the session, ``b""`` at the end."""
WriteBytes = Callable[[bytes], Awaitable[None]]


class SpdyStream:
    """One stream the client opened: its headers, its data, our half to write."""

    def __init__(self, session: SpdySession, stream_id: int, headers: HeaderBlock, *, remote_closed: bool) -> None:
        self.session = session
        self.stream_id = stream_id
        self.headers = headers
        self.remote_closed = remote_closed
        self.local_closed = False
        self.abandoned = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._readable = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return self._buffered

    async def read(self) -> bytes:
        """The next data the client sent, ``b""`` once it closed its half (or the session ended)."""
        while not self._chunks:
            if self.remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = self._chunks.popleft()
        self._buffered -= len(data)
        self._space.set()
        return data

    async def _deliver(self, data: bytes) -> None:
        """Queue the client's data; past :data:`MAX_BUFFERED` unread bytes this waits, which
        stops the session's reading: the transport's back-pressure, as spdystream has it."""
        while self._buffered >= MAX_BUFFERED and not self.abandoned:
            self._space.clear()
            await self._space.wait()
        if data and not self.abandoned and not self.remote_closed:
            self._chunks.append(data)
            self._buffered += len(data)
            self._readable.set()

    def _finish(self) -> None:
        """The client's half ended (FIN, RST, GOAWAY or end of input)."""
        self.remote_closed = True
        self._readable.set()

    def abandon(self) -> None:
        """Nobody reads this stream any more: drop what comes (the session must not wait for it)."""
        self.abandoned = True
        self._chunks.clear()
        self._buffered = 0
        self._space.set()

    async def write(self, data: bytes) -> None:
        if self.local_closed or self.session.closed:
            raise ConnectionResetError(f"SPDY stream {self.stream_id} is closed")
        view = memoryview(data)
        for start in range(0, len(view), MAX_DATA):
            await self.session.send(DataFrame(self.stream_id, bytes(view[start:start + MAX_DATA])))

    async def close(self) -> None:
        """Close our half (FIN); idempotent."""
        if not self.local_closed:
            self.local_closed = True
            with contextlib.suppress(ConnectionError):
                await self.session.send(DataFrame(self.stream_id, b"", FLAG_FIN))

    async def reset(self, status: int = RST_CANCEL) -> None:
        self.local_closed = True
        self._finish()
        self.abandon()
        with contextlib.suppress(ConnectionError):
            await self.session.send(RstStream(self.stream_id, status))


StreamHandler = Callable[[SpdyStream], Awaitable[None] | None]


class SpdySession:
    """The server side of one SPDY/3.1 session over ``read``/``write`` (see the module docstring).

    ``on_stream`` is called (on the reading task) with each new stream after its SYN_REPLY went
    out; it must not block (start a task for long work). :meth:`run` returns when the input ends
    or the client sent GOAWAY."""

    def __init__(self, read: ReadBytes, write: WriteBytes, on_stream: Callable[[SpdyStream], None]) -> None:
        self._read = read
        self._write = write
        self._on_stream = on_stream
        self._reader = FrameReader()
        self._writer = FrameWriter()
        self._lock = asyncio.Lock()
        self.streams: dict[int, SpdyStream] = {}
        self.closed = False
        self._last_client_stream = 0

    async def send(self, frame: Frame) -> None:
        if self.closed and not isinstance(frame, GoAway):
            raise ConnectionResetError("the SPDY session is closed")
        async with self._lock:  # encoding order must be sending order (shared zlib stream)
            await self._write(self._writer.encode(frame))

    async def run(self) -> None:
        try:
            while data := await self._read():
                for frame in self._reader.feed(data):
                    if not await self._dispatch(frame):
                        return
        finally:
            self._end_streams()

    async def _dispatch(self, frame: Frame) -> bool:
        if isinstance(frame, DataFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                await stream._deliver(frame.data)
                if frame.flags & FLAG_FIN:
                    stream._finish()
        elif isinstance(frame, SynStream):
            await self._open(frame)
        elif isinstance(frame, RstStream):
            stream = self.streams.pop(frame.stream_id, None)
            if stream is not None:
                stream.local_closed = True
                stream._finish()
        elif isinstance(frame, Headers):
            stream = self.streams.get(frame.stream_id)
            if stream is not None and frame.flags & FLAG_FIN:
                stream._finish()
        elif isinstance(frame, Ping):
            if frame.ping_id % 2 == 1:  # the client's ping (odd ids): echo it
                await self.send(frame)
        elif isinstance(frame, GoAway):
            return False
        return True  # SETTINGS, WINDOW_UPDATE, SYN_REPLY: nothing to do (see the module docstring)

    async def _open(self, frame: SynStream) -> None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self._last_client_stream:
            await self.send(RstStream(frame.stream_id, RST_PROTOCOL_ERROR))
            return
        self._last_client_stream = frame.stream_id
        stream = SpdyStream(self, frame.stream_id, frame.headers, remote_closed=bool(frame.flags & FLAG_FIN))
        self.streams[frame.stream_id] = stream
        await self.send(SynReply(frame.stream_id))
        self._on_stream(stream)

    def _end_streams(self) -> None:
        for stream in self.streams.values():
            stream._finish()

    async def close(self) -> None:
        """Send GOAWAY (once); reads of every stream end."""
        if not self.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send(GoAway(self._last_client_stream))
            self.closed = True
        self._end_streams()
