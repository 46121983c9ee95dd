"""Turn a Kubernetes protobuf request body into the JSON-shaped object the rest of kubelab uses.

kubectl >= 1.32 sends typed-client writes (``kubectl create namespace|deployment|...``, drain's
DELETE fallback) as ``Content-Type: application/vnd.kubernetes.protobuf``: the magic bytes
``k8s\\x00``, then a ``runtime.Unknown`` {1: TypeMeta{1: apiVersion, 2: kind}, 2: raw object,
3: contentEncoding, 4: contentType}. The apiserver's body parsing calls :func:`decode_object`,
which returns exactly what the same object looks like as Kubernetes JSON (camelCase names,
``omitempty`` honoured, IntOrString/Quantity/Time in their JSON forms, bytes base64-encoded),
driven by the tables in :mod:`machinery.protobuf.schema`. Unknown field numbers are skipped.
Every failure raises :class:`machinery.errors.BadRequestError`, and nothing else.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from machinery.errors import BadRequestError
from machinery.protobuf.fields import Field, FieldKind, MessageTable
from machinery.protobuf.schema import MESSAGES, ROOT_KINDS
from machinery.protobuf.wire import WireError, WireType, iter_fields, iter_packed_varints, to_signed64

PROTOBUF_CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_VARINT_KINDS = frozenset({FieldKind.INT, FieldKind.BOOL})
_MAP_KINDS = frozenset({FieldKind.STRING_MAP, FieldKind.BYTES_MAP, FieldKind.QUANTITY_MAP})
_SCALAR_KINDS = frozenset({FieldKind.STRING, FieldKind.BYTES, FieldKind.INT, FieldKind.BOOL})


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of a ``runtime.Unknown`` envelope."""

    api_version: str
    kind: str
    raw: bytes
    content_encoding: str
    content_type: str


def is_protobuf_content_type(content_type: str | None) -> bool:
    """Whether a request's Content-Type announces a Kubernetes protobuf body."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == PROTOBUF_CONTENT_TYPE


def unwrap(body: bytes) -> Envelope:
    """Check the magic prefix and split the ``runtime.Unknown`` envelope into its parts."""
    if not body.startswith(MAGIC):
        raise BadRequestError("request body is not a Kubernetes protobuf envelope (missing k8s\\x00 prefix)")
    try:
        unknown = _decode_plain(body[len(MAGIC) :], _UNKNOWN)
        type_meta = _decode_plain(unknown.get(1, b""), _TYPE_META)
        return Envelope(
            api_version=_text(type_meta.get(1, b"")),
            kind=_text(type_meta.get(2, b"")),
            raw=unknown.get(2, b""),
            content_encoding=_text(unknown.get(3, b"")),
            content_type=_text(unknown.get(4, b"")),
        )
    except WireError as err:
        raise BadRequestError(f"malformed protobuf envelope: {err}") from err


def decode_object(body: bytes) -> dict[str, Any]:
    """Decode a whole ``application/vnd.kubernetes.protobuf`` request body into JSON form."""
    envelope = unwrap(body)
    if not envelope.kind:
        raise BadRequestError("protobuf envelope carries no kind")
    if envelope.content_encoding:
        raise BadRequestError(f"unsupported protobuf contentEncoding {envelope.content_encoding!r}")
    if envelope.content_type and not is_protobuf_content_type(envelope.content_type):
        raise BadRequestError(f"unsupported protobuf contentType {envelope.content_type!r}")
    root = ROOT_KINDS.get(f"{envelope.api_version}:{envelope.kind}") or ROOT_KINDS.get(envelope.kind)
    if root is None:
        raise BadRequestError(
            f"protobuf bodies of kind {envelope.kind!r} are not supported; send application/json"
        )
    if root.api_versions is not None and envelope.api_version not in root.api_versions:
        raise BadRequestError(
            f"protobuf body of kind {envelope.kind!r} has unsupported apiVersion {envelope.api_version!r}"
        )
    obj: dict[str, Any] = {"kind": envelope.kind, "apiVersion": envelope.api_version}
    try:
        obj.update(decode_message(envelope.raw, root.message))
    except (WireError, OverflowError) as err:
        raise BadRequestError(f"malformed protobuf {envelope.kind}: {err}") from err
    return obj


def decode_message(data: bytes, message: str) -> dict[str, Any]:
    """Decode one message of the schema (e.g. ``"PodSpec"``); raises ``WireError``."""
    out: dict[str, Any] = {}
    _decode_into(out, data, MESSAGES[message])
    return out


# Envelope messages: number -> expected wire type; their values are kept raw.
_UNKNOWN = {1: WireType.LEN, 2: WireType.LEN, 3: WireType.LEN, 4: WireType.LEN}
_TYPE_META = {1: WireType.LEN, 2: WireType.LEN}


def _decode_plain(data: bytes, expected: dict[int, WireType]) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for number, wire_type, value in iter_fields(data):
        if number in expected:
            found[number] = _payload(wire_type, value, f"field {number}")
    return found


def _payload(wire_type: WireType, value: int | bytes, where: str) -> bytes:
    if wire_type != WireType.LEN or not isinstance(value, bytes):
        raise WireError(f"{where}: expected length-delimited data, got wire type {int(wire_type)}")
    return value


def _varint(wire_type: WireType, value: int | bytes, where: str) -> int:
    if wire_type != WireType.VARINT or not isinstance(value, int):
        raise WireError(f"{where}: expected a varint, got wire type {int(wire_type)}")
    return value


def _text(data: bytes) -> str:
    # Go's encoding/json replaces invalid UTF-8 with U+FFFD; do the same.
    return data.decode("utf-8", errors="replace")


def _decode_into(out: dict[str, Any], data: bytes, table: MessageTable) -> None:
    for number, wire_type, value in iter_fields(data):
        field = table.get(number)
        if field is not None:
            _apply(out, field, wire_type, value)


def _apply(out: dict[str, Any], field: Field, wire_type: WireType, value: int | bytes) -> None:
    kind = field.kind
    if kind is FieldKind.INLINE:
        _decode_into(out, _payload(wire_type, value, field.message), MESSAGES[field.message])
        return
    if kind in _MAP_KINDS:
        key, item = _map_entry(field, _payload(wire_type, value, field.json))
        out.setdefault(field.json, {})[key] = item
        return
    if field.repeated:
        items = out.setdefault(field.json, [])
        if kind is FieldKind.INT and wire_type == WireType.LEN:  # packed encoding
            payload = _payload(wire_type, value, field.json)
            items.extend(to_signed64(v) for v in iter_packed_varints(payload))
        else:
            items.append(_convert(field, wire_type, value))
        return
    converted = _convert(field, wire_type, value)
    previous = out.get(field.json)
    if kind is FieldKind.MESSAGE and isinstance(previous, dict):
        previous.update(converted)  # a repeated non-repeated message merges, as in Go
    elif kind in _SCALAR_KINDS and not field.keep_zero and converted in ("", 0):
        out.pop(field.json, None)  # omitempty; note False == 0
    else:
        out[field.json] = converted


def _convert(field: Field, wire_type: WireType, value: int | bytes) -> Any:
    kind, where = field.kind, field.json
    if kind is FieldKind.INT:
        return to_signed64(_varint(wire_type, value, where))
    if kind is FieldKind.BOOL:
        return _varint(wire_type, value, where) != 0
    payload = _payload(wire_type, value, where)
    if kind is FieldKind.STRING:
        return _text(payload)
    if kind is FieldKind.BYTES:
        return base64.b64encode(payload).decode("ascii")
    if kind is FieldKind.MESSAGE:
        return decode_message(payload, field.message)
    if kind is FieldKind.INT_OR_STRING:
        return _int_or_string(payload, where)
    if kind is FieldKind.QUANTITY:
        return _quantity(payload)
    if kind is FieldKind.TIME:
        return _time(payload, micro=False)
    if kind is FieldKind.MICRO_TIME:
        return _time(payload, micro=True)
    raise WireError(f"{where}: unsupported field kind {kind.value}")


def _map_entry(field: Field, payload: bytes) -> tuple[str, Any]:
    key_bytes, value_bytes = b"", b""
    for number, wire_type, value in iter_fields(payload):
        if number == 1:
            key_bytes = _payload(wire_type, value, f"{field.json} key")
        elif number == 2:
            value_bytes = _payload(wire_type, value, f"{field.json} value")
    key = _text(key_bytes)
    if field.kind is FieldKind.BYTES_MAP:
        return key, base64.b64encode(value_bytes).decode("ascii")
    if field.kind is FieldKind.QUANTITY_MAP:
        return key, _quantity(value_bytes)
    return key, _text(value_bytes)


def _int_or_string(payload: bytes, where: str) -> int | str:
    type_, int_val, str_val = 0, 0, b""
    for number, wire_type, value in iter_fields(payload):
        if number == 1:
            type_ = to_signed64(_varint(wire_type, value, where))
        elif number == 2:
            int_val = to_signed64(_varint(wire_type, value, where))
        elif number == 3:
            str_val = _payload(wire_type, value, where)
    if type_ == 0:
        return int_val
    if type_ == 1:
        return _text(str_val)
    raise WireError(f"{where}: invalid IntOrString type {type_}")


def _quantity(payload: bytes) -> str:
    text = ""
    for number, wire_type, value in iter_fields(payload):
        if number == 1:
            text = _text(_payload(wire_type, value, "quantity"))
    return text or "0"


def _time(payload: bytes, *, micro: bool) -> str | None:
    if not payload:
        return None  # Go writes the zero time as an empty message; JSON says null
    seconds, nanos = 0, 0
    for number, wire_type, value in iter_fields(payload):
        if number == 1:
            seconds = to_signed64(_varint(wire_type, value, "time seconds"))
        elif number == 2:
            nanos = to_signed64(_varint(wire_type, value, "time nanos"))
    try:
        moment = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000 if micro else 0)
    except OverflowError as err:
        raise WireError(f"timestamp {seconds}s out of range") from err
    stamp = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if micro:
        stamp += f".{moment.microsecond:06d}"
    return stamp + "Z"
