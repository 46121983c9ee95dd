"""The vocabulary of the protobuf schema tables: what one field of a Kubernetes message is.

The ``tables_*`` modules describe Kubernetes messages with the short constructors below
(``s("name")``, ``msg("spec", "PodSpec")``, ...); :mod:`machinery.protobuf.decode` walks the wire
data with them. A :class:`Field` says how to turn one protobuf field into its Kubernetes JSON
form: the JSON name, the value kind, whether it repeats, the nested message it holds, and
whether a zero value is kept (Go pointer fields and fields without ``omitempty`` keep it; the
Go protobuf encoder writes every non-pointer scalar, so ``omitempty`` is applied here).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FieldKind(enum.Enum):
    """How a field's wire value becomes JSON."""

    STRING = "string"
    BYTES = "bytes"
    """Raw bytes, rendered base64 as Go's encoding/json does."""
    INT = "int"
    """int32/int64 varint, two's complement for negatives."""
    BOOL = "bool"
    MESSAGE = "message"
    INLINE = "inline"
    """An embedded Go struct: its fields land in the parent JSON object."""
    INT_OR_STRING = "int-or-string"
    QUANTITY = "quantity"
    TIME = "time"
    """metav1.Time: RFC 3339 seconds in UTC, ``None`` for the zero time."""
    MICRO_TIME = "micro-time"
    STRING_MAP = "string-map"
    BYTES_MAP = "bytes-map"
    QUANTITY_MAP = "quantity-map"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message table, keyed by its protobuf field number."""

    json: str
    """The JSON (camelCase) name; empty for :attr:`FieldKind.INLINE`."""
    kind: FieldKind
    repeated: bool = False
    message: str = ""
    """The nested message's table name, for MESSAGE and INLINE fields."""
    keep_zero: bool = False
    """Keep ``""``/``0``/``false`` (pointer or non-``omitempty`` fields in Go)."""


MessageTable = dict[int, Field]
"""Field number -> field, for one message."""


def s(json: str, *, keep: bool = False) -> Field:
    """A string field."""
    return Field(json, FieldKind.STRING, keep_zero=keep)


def i(json: str, *, keep: bool = False) -> Field:
    """An int32/int64 field."""
    return Field(json, FieldKind.INT, keep_zero=keep)


def b(json: str, *, keep: bool = False) -> Field:
    """A bool field."""
    return Field(json, FieldKind.BOOL, keep_zero=keep)


def raw(json: str, *, keep: bool = False) -> Field:
    """A bytes field (base64 in JSON)."""
    return Field(json, FieldKind.BYTES, keep_zero=keep)


def slist(json: str) -> Field:
    """A repeated string field."""
    return Field(json, FieldKind.STRING, repeated=True)


def ilist(json: str) -> Field:
    """A repeated integer field (packed or not)."""
    return Field(json, FieldKind.INT, repeated=True)


def msg(json: str, message: str, *, repeated: bool = False) -> Field:
    """A nested message field, or a list of them."""
    return Field(json, FieldKind.MESSAGE, repeated=repeated, message=message)


def inline(message: str) -> Field:
    """An embedded message whose fields are flattened into the parent."""
    return Field("", FieldKind.INLINE, message=message)


def ios(json: str) -> Field:
    """An IntOrString field (targetPort, maxSurge)."""
    return Field(json, FieldKind.INT_OR_STRING)


def qty(json: str) -> Field:
    """A resource Quantity field."""
    return Field(json, FieldKind.QUANTITY)


def time(json: str) -> Field:
    """A metav1.Time field."""
    return Field(json, FieldKind.TIME)


def microtime(json: str) -> Field:
    """A metav1.MicroTime field."""
    return Field(json, FieldKind.MICRO_TIME)


def smap(json: str) -> Field:
    """A map<string, string> field."""
    return Field(json, FieldKind.STRING_MAP)


def bmap(json: str) -> Field:
    """A map<string, bytes> field (base64 values in JSON)."""
    return Field(json, FieldKind.BYTES_MAP)


def qmap(json: str) -> Field:
    """A map<string, Quantity> field (resource lists)."""
    return Field(json, FieldKind.QUANTITY_MAP)
