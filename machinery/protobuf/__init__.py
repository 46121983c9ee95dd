"""Decoding of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

The apiserver calls :func:`decode_object` on bodies kubectl >= 1.32 sends for imperative
writes; the result is the object's Kubernetes JSON form. Layout: :mod:`.wire` (generic
protobuf reader), :mod:`.fields` and ``tables_*`` (the declarative schema), :mod:`.schema`
(message tables and root kinds), :mod:`.decode` (envelope and object decoding). Errors are
always :class:`machinery.errors.BadRequestError`.

The names below load :mod:`.decode` (and its message tables) on first use, so a process that
only needs :mod:`.wire` (the apiserver's ``/openapi/v2`` encoder) does not build the tables at
start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from machinery.protobuf.decode import (
        MAGIC,
        PROTOBUF_CONTENT_TYPE,
        Envelope,
        decode_object,
        is_protobuf_content_type,
        unwrap,
    )

__all__ = [
    "MAGIC",
    "PROTOBUF_CONTENT_TYPE",
    "Envelope",
    "decode_object",
    "is_protobuf_content_type",
    "unwrap",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("machinery.protobuf.decode"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
