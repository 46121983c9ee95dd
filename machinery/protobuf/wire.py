"""A small reader (and a smaller writer) for the protobuf wire format.

The reader handles varint, 64-bit, length-delimited, 32-bit and group fields and is used by
:mod:`machinery.protobuf.decode`; the writer (:func:`encode_varint`, :func:`varint_field`,
:func:`len_field`) builds the few messages the apiserver sends (``/openapi/v2``). Both know
nothing of Kubernetes. :func:`iter_fields`
yields ``(field number, wire type, value)`` for each field of one message. Any malformed input
(truncated data, an over-long varint, field number 0, a reserved wire type, unbalanced groups)
raises :class:`WireError`, a ``ValueError``; the caller maps it to an API error.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

_MAX_VARINT_BYTES = 10
_MAX_GROUP_DEPTH = 64


class WireError(ValueError):
    """The bytes are not well-formed protobuf."""


class WireType(enum.IntEnum):
    """The 3-bit wire type in every field key."""

    VARINT = 0
    I64 = 1
    LEN = 2
    SGROUP = 3
    EGROUP = 4
    I32 = 5


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode an unsigned varint at ``pos``; return (value, position after it)."""
    result = 0
    for index in range(_MAX_VARINT_BYTES):
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            if result >= 1 << 64:
                raise WireError("varint overflows 64 bits")
            return result, pos
    raise WireError("varint longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    """An unsigned varint (a negative ``value`` as its 64-bit two's complement, as protobuf does)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def varint_field(number: int, value: int) -> bytes:
    """Field ``number`` with a varint value (ints, bools, enums)."""
    return encode_varint(number << 3 | WireType.VARINT) + encode_varint(value)


def len_field(number: int, payload: bytes | str) -> bytes:
    """Field ``number`` with a length-delimited value (strings, bytes, embedded messages)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return encode_varint(number << 3 | WireType.LEN) + encode_varint(len(data)) + data


def to_signed64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as the two's-complement int64/int32 it encodes."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _take(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    end = pos + size
    if end > len(data):
        raise WireError("truncated field")
    return data[pos:end], end


def _skip_group(data: bytes, pos: int, number: int, depth: int) -> int:
    """Skip a (deprecated) group's contents; return the position after its end tag."""
    if depth > _MAX_GROUP_DEPTH:
        raise WireError("groups nested too deeply")
    while True:
        if pos >= len(data):
            raise WireError("unterminated group")
        key, pos = read_varint(data, pos)
        inner_number, wire_type = key >> 3, key & 7
        if wire_type == WireType.EGROUP:
            if inner_number != number:
                raise WireError("mismatched group end")
            return pos
        pos = _skip_value(data, pos, inner_number, wire_type, depth + 1)


def _skip_value(data: bytes, pos: int, number: int, wire_type: int, depth: int) -> int:
    if wire_type == WireType.VARINT:
        return read_varint(data, pos)[1]
    if wire_type == WireType.I64:
        return _take(data, pos, 8)[1]
    if wire_type == WireType.I32:
        return _take(data, pos, 4)[1]
    if wire_type == WireType.LEN:
        size, pos = read_varint(data, pos)
        return _take(data, pos, size)[1]
    if wire_type == WireType.SGROUP:
        return _skip_group(data, pos, number, depth)
    raise WireError(f"unexpected wire type {wire_type}")


def iter_fields(data: bytes) -> Iterator[tuple[int, WireType, int | bytes]]:
    """Yield each field of one message as ``(number, wire type, value)``.

    The value is an ``int`` for VARINT (unsigned), I64 and I32 (little-endian, unsigned), the
    payload ``bytes`` for LEN, and ``b""`` for a group (its contents are skipped).
    """
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0 or number >= 1 << 29:
            raise WireError(f"invalid field number {number}")
        value: int | bytes
        if wire_type == WireType.VARINT:
            value, pos = read_varint(data, pos)
        elif wire_type == WireType.I64:
            chunk, pos = _take(data, pos, 8)
            value = int.from_bytes(chunk, "little")
        elif wire_type == WireType.I32:
            chunk, pos = _take(data, pos, 4)
            value = int.from_bytes(chunk, "little")
        elif wire_type == WireType.LEN:
            size, pos = read_varint(data, pos)
            value, pos = _take(data, pos, size)
        elif wire_type == WireType.SGROUP:
            pos = _skip_group(data, pos, number, 0)
            value = b""
        else:
            raise WireError(f"unexpected wire type {wire_type}")
        yield number, WireType(wire_type), value


def iter_packed_varints(data: bytes) -> Iterator[int]:
    """Yield the unsigned varints of a packed repeated field's payload."""
    pos = 0
    while pos < len(data):
        value, pos = read_varint(data, pos)
        yield value
