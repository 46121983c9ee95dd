"""Authentication: who is calling, from the TLS client certificate (CN user, O groups).

The TLS layer already verified the certificate against the cluster CA; here we only read the
subject. Anonymous callers may read the public endpoints (``/healthz``, ``/livez``,
``/readyz``, ``/version``), as Kubernetes' ``system:public-info-viewer`` allows; anything else
without a certificate is refused with a 401 Status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from machinery.errors import UnauthorizedError

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


@dataclass(frozen=True)
class UserInfo:
    """The authenticated caller."""

    name: str
    groups: tuple[str, ...]


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


def user_from_peercert(peercert: dict[str, Any] | None) -> UserInfo | None:
    """The user named by a verified certificate (``ssl.getpeercert()`` form)."""
    if not peercert:
        return None
    name = ""
    groups: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    if not name:
        return None
    return UserInfo(name, (*groups, "system:authenticated"))


def authenticate(request: web.Request) -> UserInfo:
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    user = user_from_peercert(peercert)
    if user is not None:
        return user
    path = request.path.rstrip("/") or "/"
    if path in PUBLIC_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
        return ANONYMOUS
    raise UnauthorizedError("Unauthorized")
