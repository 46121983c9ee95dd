"""The ``kubelab controller-manager`` process: client, optional /healthz + /metrics, the manager.

Called by the CLI (``run``) and by launchers/tests (``serve``). ``serve`` runs until cancelled and
closes everything it opened; ``run`` blocks until SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controllers.manager import ControllerManager
from controllers.settings import ControllerManagerSettings
from machinery.client import ApiClient
from machinery.process import run_until_signalled

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
    run_until_signalled(lambda: serve(settings), name="controller-manager")
