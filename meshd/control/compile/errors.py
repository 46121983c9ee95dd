"""Config errors found while compiling: which Istio object, and what is wrong with it.

Produced by :mod:`meshd.control.compile.routes` (a route to a subset no DestinationRule defines, a
destination host that is no Service) and surfaced by :mod:`meshd.control.status` on the object's
status and as Events, where users look, instead of as silent 503s.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError"]


@dataclass(frozen=True, order=True)
class ConfigError:
    kind: str
    """``VirtualService``, ``DestinationRule`` ..."""
    namespace: str
    name: str
    code: str
    """Istio's analyzer code, e.g. ``IST0101`` (ReferencedResourceNotFound)."""
    reason: str
    """Istio's analyzer name (``ReferencedResourceNotFound``), used as the Event reason."""
    message: str
