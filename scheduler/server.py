"""The ``kubelab scheduler`` process: settings -> client -> (leader election) -> :class:`Scheduler`.

``serve`` runs until cancelled (tests embed it); ``run`` blocks and stops on SIGTERM/SIGINT. The CLI
calls ``run(SchedulerSettings(...))``.
"""

from __future__ import annotations

import logging
import socket

from aiohttp import web

from machinery.client import ApiClient, LeaderElector
from machinery.meta import random_suffix
from machinery.process import run_until_signalled
from scheduler.metrics import SchedulerMetrics, start_metrics_server
from scheduler.profile import load_profile
from scheduler.scheduler import Scheduler
from scheduler.settings import SchedulerSettings

log = logging.getLogger(__name__)


async def serve(settings: SchedulerSettings) -> None:
    """Run the scheduler until cancelled."""
    profile = load_profile(settings.config)
    metrics = SchedulerMetrics()
    client = ApiClient.from_kubeconfig(settings.kubeconfig, user_agent="kube-scheduler/kubelab")
    runner: web.AppRunner | None = None
    try:
        if settings.metrics_port:
            runner = await start_metrics_server(metrics, settings.metrics_port)

        async def lead() -> None:
            scheduler = Scheduler(client, profile=profile, metrics=metrics,
                                  percentage_of_nodes_to_score=settings.percentage_of_nodes_to_score,
                                  bind_concurrency=settings.bind_concurrency)
            await scheduler.run()

        if settings.leader_elect:
            identity = settings.identity or f"{socket.gethostname()}_{random_suffix(8)}"
            await LeaderElector(client, lease_name=settings.lease_name, identity=identity).run(lead)
        else:
            await lead()
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.close()


def run(settings: SchedulerSettings) -> None:
    """Blocking entry point; SIGTERM/SIGINT stop the scheduler cleanly."""
    run_until_signalled(lambda: serve(settings), name="scheduler")
