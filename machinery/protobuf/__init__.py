"""Decoding of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

The apiserver calls :func:`decode_object` on bodies kubectl >= 1.32 sends for imperative
writes; the result is the object's Kubernetes JSON form. Layout: :mod:`.wire` (generic
protobuf reader), :mod:`.fields` and ``tables_*`` (the declarative schema), :mod:`.schema`
(message tables and root kinds), :mod:`.decode` (envelope and object decoding). Errors are
always :class:`machinery.errors.BadRequestError`.
"""

from __future__ import annotations

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
