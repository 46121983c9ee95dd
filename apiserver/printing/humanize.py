"""Small formatting helpers shared by every printer: ages, label maps, label selectors, host:port.

Called by the per-kind printers in this package. Each helper reproduces the text Kubernetes'
own printers produce for the same input (``duration.HumanDuration``, ``labels.FormatLabels``,
``metav1.FormatLabelSelector``, ``net.JoinHostPort``), so kubectl shows the same strings it
shows against a real cluster. Every helper is pure and takes "now" explicitly when time matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

UNKNOWN = "<unknown>"
NONE = "<none>"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``2024-05-01T10:00:00Z``, micro-time too) as an aware datetime.

    Anything missing, empty or malformed is ``None``: Kubernetes treats those as the zero time.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _whole_seconds(delta: timedelta) -> int:
    """Seconds in ``delta``, truncated toward zero as Go's ``int(d.Seconds())`` does."""
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // 1_000_000 if micros >= 0 else -((-micros) // 1_000_000)


def human_duration(delta: timedelta) -> str:
    """About two significant figures of a duration: ``45s``, ``3m20s``, ``61m``, ``5h3m``, ``2d3h``.

    Up to one second in the future reads ``0s`` (clock skew between machines); further in the
    future reads ``<invalid>``.
    """
    seconds = _whole_seconds(delta)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d" if rest == 0 else f"{days}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y" if rest == 0 else f"{years}y{rest}d"
    return f"{years}y"


def since(timestamp: Any, now: datetime) -> str:
    """The age of ``timestamp`` at ``now`` (``<unknown>`` when the timestamp is missing)."""
    parsed = parse_time(timestamp)
    if parsed is None:
        return UNKNOWN
    return human_duration(now - parsed)


def format_labels(labels: Mapping[str, Any] | None) -> str:
    """``a=1,b=2`` sorted by key, or ``<none>`` for no labels."""
    if not labels:
        return NONE
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def label_selector_string(selector: Mapping[str, Any] | None) -> str:
    """A ``metav1.LabelSelector`` in selector syntax (``app=web,tier in (a,b),!gone``).

    Requirements are sorted by key and set values sorted, as Kubernetes prints them; an empty
    or missing selector is the empty string.
    """
    if not selector:
        return ""
    requirements: list[tuple[str, str]] = []
    match_labels = selector.get("matchLabels") or {}
    for key, value in match_labels.items():
        requirements.append((key, f"{key}={value}"))
    for expression in selector.get("matchExpressions") or []:
        key = str(expression.get("key", ""))
        operator = expression.get("operator", "")
        values = ",".join(sorted(str(v) for v in expression.get("values") or []))
        if operator == "In":
            requirements.append((key, f"{key} in ({values})"))
        elif operator == "NotIn":
            requirements.append((key, f"{key} notin ({values})"))
        elif operator == "Exists":
            requirements.append((key, key))
        elif operator == "DoesNotExist":
            requirements.append((key, f"!{key}"))
        else:
            return "<error>"
    requirements.sort(key=lambda item: item[0])
    return ",".join(text for _, text in requirements)


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """Like :func:`label_selector_string`, but ``<none>`` when it selects by nothing."""
    return label_selector_string(selector) or NONE


def join_host_port(host: str, port: Any) -> str:
    """``10.0.0.1:80``, with IPv6 hosts bracketed (``[fd00::1]:80``)."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def container_cells(containers: list[dict[str, Any]] | None) -> tuple[str, str]:
    """Comma-joined container names and images of a pod template (the wide columns)."""
    containers = containers or []
    names = ",".join(str(c.get("name", "")) for c in containers)
    images = ",".join(str(c.get("image", "")) for c in containers)
    return names, images


def dig(obj: Mapping[str, Any], *path: str) -> Any:
    """``obj[path[0]][path[1]]...``, or ``None`` as soon as a step is missing or not a dict."""
    current: Any = obj
    for step in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(step)
    return current
