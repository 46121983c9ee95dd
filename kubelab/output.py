"""Output helpers of the ``kubelab`` command: kubectl-style column tables and ages."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows as left-aligned columns three spaces apart, as kubectl does."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def human_duration(seconds: float) -> str:
    """A duration the way kubectl prints ages: ``45s``, ``3m12s``, ``25m``, ``5h3m``, ``20h``, ``3d4h``, ``90d``.

    Precision shrinks as the duration grows (seconds below 10 minutes, minutes below 8 hours,
    hours below 8 days); a small negative value (clock skew) is ``0s``.
    """
    total = int(seconds)
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"
