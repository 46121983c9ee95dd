"""meshd's debug and monitoring endpoint (istiod's 15014), on 127.0.0.1 only.

* ``GET /metrics`` -- Prometheus metrics (:mod:`meshd.control.metrics`);
* ``GET /debug/syncz`` -- one record per connected proxy: per type the status word (SYNCED, NOT
  SENT, STALE, NACKED), versions and the last NACK's message (``kubelab mesh proxy-status``);
* ``GET /debug/config_dump?proxy=<pod>.<namespace>`` -- the resources last sent to that proxy;
* ``GET /ready`` -- 200 once meshd serves.

The port actually bound is written to ``<state dir>/debug.port`` so the CLI finds it when
``--debug-port 0`` picked one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from aiohttp import web

from meshd.control.metrics import MeshdMetrics
from meshd.control.push import DiscoveryServer

__all__ = ["DEBUG_PORT_FILE", "DebugServer"]

DEBUG_PORT_FILE = "debug.port"


class DebugServer:
    def __init__(self, discovery: DiscoveryServer, metrics: MeshdMetrics, *, port: int, state_dir: Path,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.discovery = discovery
        self.metrics = metrics
        self.port = port
        self.state_dir = state_dir
        self.ready = ready
        self.runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/debug/syncz", self._syncz)
        app.router.add_get("/debug/config_dump", self._config_dump)
        app.router.add_get("/ready", self._ready)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.port = int(self.runner.addresses[0][1])
        (self.state_dir / DEBUG_PORT_FILE).write_text(f"{self.port}\n")
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), content_type="text/plain", charset="utf-8")

    async def _syncz(self, _request: web.Request) -> web.Response:
        records = sorted((r.to_json() for r in self.discovery.records()), key=lambda r: (r["namespace"], r["pod"]))
        return web.Response(body=orjson.dumps(records), content_type="application/json")

    async def _config_dump(self, request: web.Request) -> web.Response:
        wanted = request.query.get("proxy", "")
        for connection in self.discovery.connections.values():
            if f"{connection.node.pod}.{connection.node.namespace}" == wanted or connection.node.id == wanted:
                dump = {t: list(c.resources.get(t, ())) for t, c in connection.sent.items()}
                return web.Response(body=orjson.dumps(dump), content_type="application/json")
        return web.Response(status=404, text=f"proxy {wanted!r} is not connected")

    async def _ready(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok") if self.ready() else web.Response(status=503, text="not ready")
