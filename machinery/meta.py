"""Small helpers on Kubernetes JSON objects (plain dicts): timestamps, names, keys.

Used by every component that handles objects as dicts; no I/O, no state.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

# Kubernetes' generateName alphabet: no vowels (no words), no confusable characters.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the default clock of controllers and leader election)."""
    return datetime.now(UTC)


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it: ``2024-01-01T00:00:00Z`` (seconds precision)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime:
    """Parse a Kubernetes timestamp (``Z`` or offset, optional fraction)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def random_suffix(length: int = 5) -> str:
    """The random part Kubernetes appends to ``generateName``."""
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(length))


def metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's metadata dict, created if missing."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def object_key(obj: dict[str, Any]) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), the workqueue key."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))
