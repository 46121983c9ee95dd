"""The proxy's own HTTP endpoints: readiness (15021), status and merged metrics (15020), admin (15000).

Served by the same HTTP/1.1 protocol as the data plane (:mod:`meshd.proxy.http1`), so the image
needs no web framework.

* 15021 ``GET /healthz/ready`` -- 200 once the proxy has a certificate and every configuration
  type was applied once; 503 before (the kubelet's startup and readiness probes of ``istio-proxy``).
  Until the proxy was ready once, a request waits up to ``ready_hold_seconds`` (below the injected
  probe's ``timeoutSeconds``) and gets its 200 the moment the proxy becomes ready.
* 15020 ``GET /stats/prometheus`` -- Istio's metrics (:mod:`meshd.proxy.telemetry`) followed by
  the app's own metrics when the pod had ``prometheus.io/scrape`` (``ISTIO_PROMETHEUS_ANNOTATIONS``:
  fetched from ``127.0.0.1:<port><path>``); ``GET /app-health/<container>/livez|readyz|startupz``
  -- the app's original probe (``ISTIO_KUBE_APP_PROBERS``: ``httpGet`` or ``tcpSocket``) run
  against the app on localhost, answered 200 or 503, so kubelet probes keep working under STRICT
  mTLS; ``GET /healthz/ready`` as on 15021.
* 15000 (127.0.0.1 only) ``GET /config_dump`` -- applied resources and versions (JSON);
  ``POST /quitquitquit`` -- exit 0 now; ``POST /drain`` -- stop accepting inbound connections;
  ``GET /ready`` -- ``LIVE`` / ``NOT READY`` text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from meshd.proxy.http1 import ClientProtocol, Request, Response, ServerProtocol, serialize_request
from meshd.proxy.upstream import ConnectFailure, open_stream

if TYPE_CHECKING:
    from meshd.proxy.proxy import Proxy

__all__ = ["StatusServers", "http_get"]

log = logging.getLogger(__name__)

_TEXT = [("content-type", "text/plain; charset=utf-8")]


async def http_get(host: str, port: int, path: str, *, headers: list[tuple[str, str]] | None = None,
                   timeout: float = 1.0, tls: bool = False) -> Response:
    """One GET on a fresh connection (probes, merged metrics); raises ConnectFailure/TimeoutError/ConnectionError."""
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # as the kubelet does for HTTPS probes
    transport, conn = await open_stream(ClientProtocol, host, port, tls=ctx, timeout=timeout)
    try:
        req = Request("GET", path, [("host", f"{host}:{port}"), ("user-agent", "kube-probe/1.30"),
                                    *(headers or [])], b"")
        async with asyncio.timeout(timeout):
            resp = await conn.send(serialize_request(req, req.headers))
            return Response(resp.status, resp.headers, await resp.body.read_all())
    finally:
        transport.close()


class StatusServers:
    """The three local HTTP servers of a proxy."""

    def __init__(self, proxy: Proxy, *, ready_socket: socket.socket | None = None) -> None:
        self.proxy = proxy
        self.servers: list[asyncio.AbstractServer] = []
        self.ports: dict[str, int] = {}
        self._ready_socket = ready_socket
        self._was_ready = False

    async def start(self) -> None:
        s = self.proxy.settings
        loop = asyncio.get_running_loop()
        for name, host, port, handler in (("ready", s.bind_address, s.ready_port, self._ready),
                                          ("status", s.bind_address, s.status_port, self._status),
                                          ("admin", "127.0.0.1", s.admin_port, self._admin)):
            if name == "ready" and self._ready_socket is not None:
                server = await loop.create_server(lambda h=handler: ServerProtocol(h),  # type: ignore[misc]
                                                  sock=self._ready_socket)
                self._ready_socket = None
            else:
                server = await loop.create_server(lambda h=handler: ServerProtocol(h), host, port)  # type: ignore[misc]
            self.servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()

    async def _readiness(self) -> Response:
        if not self._was_ready:
            self._was_ready = await self.proxy.became_ready(self.proxy.settings.ready_hold_seconds)
        if self.proxy.ready:
            return Response(200, _TEXT, b"")
        return Response(503, _TEXT, b"not ready: " + self.proxy.not_ready_reason().encode())

    async def _ready(self, req: Request, conn: ServerProtocol) -> Response:
        if req.path.split("?")[0] == "/healthz/ready":
            return await self._readiness()
        return Response(404, _TEXT, b"")

    async def _status(self, req: Request, conn: ServerProtocol) -> Response:
        path = req.path.split("?")[0]
        if path == "/healthz/ready":
            return await self._readiness()
        if path == "/stats/prometheus":
            body = self.proxy.telemetry.render().encode() + await self._app_metrics()
            return Response(200, [("content-type", "text/plain; version=0.0.4")], body)
        if path.startswith("/app-health/"):
            return await self._probe(path)
        return Response(404, _TEXT, b"")

    async def _app_metrics(self) -> bytes:
        prom = self.proxy.settings.prometheus_annotations
        if prom.get("scrape", "").lower() != "true" or not prom.get("port"):
            return b""
        try:
            resp = await http_get(self.proxy.settings.app_host, int(prom["port"]), prom.get("path") or "/metrics",
                                  timeout=5.0)
        except (ConnectFailure, OSError, TimeoutError, ValueError) as exc:
            log.debug("app metrics unavailable: %s", exc)
            return b""
        return resp.body.take() if resp.status == 200 else b""

    async def _probe(self, path: str) -> Response:
        spec = self.proxy.settings.app_probers.get(path)
        if not isinstance(spec, dict):
            return Response(404, _TEXT, f"no prober for {path}".encode())
        timeout = float(str(spec.get("timeoutSeconds") or 1))
        host = self.proxy.settings.app_host
        try:
            http = spec.get("httpGet")
            tcp = spec.get("tcpSocket")
            if isinstance(http, dict):
                headers = [(str(h.get("name", "")).lower(), str(h.get("value", "")))
                           for h in http.get("httpHeaders") or [] if isinstance(h, dict)]
                resp = await http_get(host, int(http.get("port", 80)), str(http.get("path") or "/"),
                                      headers=headers, timeout=timeout,
                                      tls=str(http.get("scheme", "HTTP")).upper() == "HTTPS")
                ok = 200 <= resp.status < 400
            elif isinstance(tcp, dict):
                transport, _ = await open_stream(asyncio.Protocol, host, int(tcp.get("port", 0)), tls=None,
                                                 timeout=timeout)
                transport.close()
                ok = True
            else:
                return Response(501, _TEXT, b"unsupported prober")
        except (ConnectFailure, OSError, TimeoutError, ValueError) as exc:
            return Response(503, _TEXT, str(exc).encode())
        return Response(200 if ok else 503, _TEXT, b"")

    async def _admin(self, req: Request, conn: ServerProtocol) -> Response:
        path = req.path.split("?")[0]
        proxy = self.proxy
        if path == "/config_dump" and req.method == "GET":
            dump = proxy.store.dump()
            dump["certificate"] = {"identity": proxy.settings.identity.uri,
                                   "expiry_seconds": proxy.certs.expiry_seconds()}
            return Response(200, [("content-type", "application/json")], orjson.dumps(dump))
        if path == "/ready":
            return Response(200 if proxy.ready else 503, _TEXT, b"LIVE\n" if proxy.ready else b"NOT READY\n")
        if req.method != "POST" and path in ("/quitquitquit", "/drain"):
            return Response(405, _TEXT, b"POST only\n")
        if path == "/quitquitquit":
            _later(proxy.quit)
            return Response(200, _TEXT, b"OK\n", keep_alive=False)
        if path == "/drain":
            proxy.listeners.drain()
            return Response(200, _TEXT, b"OK\n")
        return Response(404, _TEXT, b"")


def _later(action: Callable[[], Awaitable[Any] | None]) -> None:
    """Run ``action`` after the current response is written."""
    loop = asyncio.get_running_loop()

    def run() -> None:
        result = action()
        if asyncio.iscoroutine(result):
            task = loop.create_task(result)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    with contextlib.suppress(RuntimeError):
        loop.call_soon(run)
