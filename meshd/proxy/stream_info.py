"""What the proxy knows about one HTTP request's connection and handling, for telemetry and the access log.

:class:`ConnContext` is per downstream connection, made by the listener (:mod:`meshd.proxy.listeners`)
when it accepts: direction, addresses, the verified peer. :class:`StreamInfo` (Envoy's name) is
created per request by :mod:`meshd.proxy.httpproxy`, filled in by it and by the router
(:mod:`meshd.proxy.router`: the cluster, each try's endpoint), read once the response has ended
by :mod:`meshd.proxy.request_telemetry`. ``flags`` are Envoy's response flags, ``-`` when none:

* ``NR`` no route; ``NC`` no such cluster; ``UH`` no healthy upstream endpoint;
* ``FI`` a fault abort; ``DI`` a fault delay (listed before any other flag, ``DI,UF``);
* ``UF`` upstream connect failure; ``UC`` upstream connection closed before the response head;
  ``UT`` upstream (route or per-try) timeout; ``URX`` retries exhausted on a retriable response;
* ``UR`` the upstream reset the response body; ``DC`` the downstream went away first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshd.api.resources import Endpoint, Listener

__all__ = ["ConnContext", "StreamInfo"]


@dataclass(slots=True)
class ConnContext:
    """What a downstream connection knows about itself."""

    direction: str
    listener: Listener | None = None
    port: int = 0
    protocol: str = "http"
    """Inbound: the port's protocol (``http2``/``grpc``: HTTP/2 to the app)."""
    peer_identity: str = ""
    ssl_object: Any = None
    xfcc: str = ""
    """The ``X-Forwarded-Client-Cert`` value for this connection's verified peer (computed once)."""
    local: str = "-"
    remote: str = "-"


class StreamInfo:
    """Response flags, details and upstream of one request."""

    __slots__ = ("cluster", "delayed", "details", "endpoint", "flags", "upstream")

    def __init__(self) -> None:
        self.flags = "-"
        self.details = ""
        """Envoy's response code details when the proxy answered itself without a flag (an RBAC denial)."""
        self.delayed = False
        """A fault delay was applied (``DI`` is added to the flags when the request is recorded)."""
        self.cluster = "-"
        self.endpoint: Endpoint | None = None
        self.upstream = "-"
        """The upstream host (``address:port``) of the last try, ``-`` when none was made."""
