"""Prometheus metrics of one scheduler instance (own ``CollectorRegistry``) and the /metrics server.

:class:`SchedulerMetrics` is updated by :mod:`scheduler.scheduler`; :func:`start_metrics_server`
(called by :mod:`scheduler.server`) serves ``/metrics`` and ``/healthz`` on 127.0.0.1.
Names follow kube-scheduler: ``scheduler_schedule_attempts_total{result,profile}``,
``scheduler_scheduling_attempt_duration_seconds{result,profile}``, ``scheduler_pending_pods{queue}``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

RESULTS = ("scheduled", "unschedulable", "error")
QUEUES = ("active", "backoff", "unschedulable")


class SchedulerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.attempts = Counter("scheduler_schedule_attempts", "Scheduling attempts by result.",
                                ["result", "profile"], registry=self.registry)
        self.duration = Histogram("scheduler_scheduling_attempt_duration_seconds",
                                  "Scheduling attempt latency (algorithm + assume), by result.",
                                  ["result", "profile"], registry=self.registry,
                                  buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
                                           0.512, 1.024))
        self.pending = Gauge("scheduler_pending_pods", "Pending pods by queue.", ["queue"], registry=self.registry)
        self._pending_source: Callable[[], dict[str, int]] | None = None

    def observe(self, result: str, seconds: float, profile: str = "default-scheduler") -> None:
        self.attempts.labels(result=result, profile=profile).inc()
        self.duration.labels(result=result, profile=profile).observe(seconds)

    def set_pending_source(self, source: Callable[[], dict[str, int]]) -> None:
        """Where the pending-pods gauge is read from at scrape time (the queue's counts)."""
        self._pending_source = source

    def render(self) -> bytes:
        if self._pending_source is not None:
            for queue, count in self._pending_source().items():
                self.pending.labels(queue=queue).set(count)
        return bytes(generate_latest(self.registry))


async def start_metrics_server(metrics: SchedulerMetrics, port: int,
                               healthy: Callable[[], bool] = lambda: True) -> web.AppRunner:
    """Serve /metrics and /healthz on 127.0.0.1:``port``; the caller cleans the runner up."""

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok" if healthy() else "unhealthy", status=200 if healthy() else 500)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
