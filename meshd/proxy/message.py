"""The HTTP exchange as the proxy's filters see it, whatever the wire: requests, responses, hop-by-hop headers.

Built by the HTTP/1.1 and HTTP/2 codecs (:mod:`meshd.proxy.http1`, :mod:`meshd.proxy.http1_client`,
:mod:`meshd.proxy.http2`) as soon as a message head is in, its body streaming on through a
:class:`~meshd.proxy.body.Body`; handled by a :data:`Handler` (:mod:`meshd.proxy.httpproxy`,
:mod:`meshd.proxy.health`). Header names are lower-case and kept in order, as Envoy's header map
holds them.

A :class:`Response` calls its ``on_end`` once, when the downstream codec has written it whole or
given up on it (the error): telemetry is recorded there, so durations cover the whole exchange.
:func:`forwardable_headers` drops the hop-by-hop headers (RFC 9110 §7.6.1 and those named in
``Connection``) when a message crosses the proxy, keeping the ``Upgrade``/``Connection`` pair of a
WebSocket upgrade.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from meshd.proxy.body import Body

if TYPE_CHECKING:
    from meshd.proxy.http1_client import ClientProtocol

__all__ = ["HOP_BY_HOP", "Handler", "Request", "Response", "forwardable_headers"]

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-authenticate", "proxy-authorization", "content-length"})
"""Dropped when forwarding (``content-length`` is set again from the body that is sent)."""


class Request:
    """An HTTP request; ``headers`` keep order and case-folded names; ``body`` streams."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "upgrade", "version")

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | Body = b"",
                 version: str = "1.1", keep_alive: bool = True) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body if isinstance(body, Body) else Body.of(body)
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade = ""
        """The protocol a WebSocket upgrade asks for (``websocket``), else empty."""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Response:
    """An HTTP response; ``body`` streams; ``on_end`` is called once it was written (or failed)."""

    __slots__ = ("body", "headers", "keep_alive", "on_end", "status", "tunnel")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes | Body = b"",
                 keep_alive: bool = True) -> None:
        self.status = status
        self.headers = headers
        self.body = body if isinstance(body, Body) else Body.of(body)
        self.keep_alive = keep_alive
        self.tunnel: ClientProtocol | None = None
        """After a ``101``: the upstream connection to join with the downstream one."""
        self.on_end: Callable[[BaseException | None], None] | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def ended(self, error: BaseException | None = None) -> None:
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end(error)


def forwardable_headers(headers: list[tuple[str, str]], upgrade: bool = False) -> list[tuple[str, str]]:
    """``headers`` without the hop-by-hop ones; with ``upgrade``, the ``Upgrade``/``Connection`` pair kept."""
    connection = ""
    for key, value in headers:
        if key == "connection":
            connection = value.lower()
    if not connection:
        out = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
    else:
        named = {n.strip() for n in connection.split(",")} - {"upgrade"}
        out = [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]
    if upgrade:
        out.extend((k, v) for k, v in headers if k == "upgrade")
        out.append(("connection", "upgrade"))
    return out


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
"""``handler(request, connection)``: the connection (HTTP/1.1 or HTTP/2) carries ``context``."""
