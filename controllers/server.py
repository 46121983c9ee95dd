"""The ``kubelab controller-manager`` process: client, optional /healthz + /metrics, the manager.

Called by the CLI (``run``) and by launchers/tests (``serve``). ``serve`` runs until cancelled and
closes everything it opened; ``run`` blocks until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controllers.manager import ControllerManager
from controllers.settings import ControllerManagerSettings
from machinery.client import ApiClient

log = logging.getLogger(__name__)


def _health_app(manager: ControllerManager) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def leader(_request: web.Request) -> web.Response:
        return web.Response(text="leader" if manager.is_leader else "follower")

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/leader", leader)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(settings: ControllerManagerSettings) -> None:
    """Run the controller-manager until cancelled."""
    if settings.kubeconfig is None:
        raise ValueError("controller-manager needs a kubeconfig")
    client = ApiClient.from_kubeconfig(settings.kubeconfig, user_agent="kube-controller-manager",
                                       qps=settings.qps, burst=settings.burst)
    manager = ControllerManager(client, settings)
    runner: web.AppRunner | None = None
    try:
        if settings.port:
            runner = web.AppRunner(_health_app(manager), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", settings.port).start()
        await manager.run()
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.close()


def run(settings: ControllerManagerSettings) -> None:
    """Serve in the foreground until SIGTERM or SIGINT."""

    async def main() -> None:
        task = asyncio.create_task(serve(settings), name="controller-manager")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(main())
    else:
        uvloop.run(main())
