"""The /metrics and /healthz endpoints of a scheduler instance."""

from __future__ import annotations

import aiohttp

from scheduler.metrics import SchedulerMetrics, start_metrics_server


async def test_metrics_endpoint_reports_attempts_and_queues() -> None:
    metrics = SchedulerMetrics()
    metrics.observe("scheduled", 0.002)
    metrics.set_pending_source(lambda: {"active": 3, "backoff": 1, "unschedulable": 2})
    runner = await start_metrics_server(metrics, 0)
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 200
    finally:
        await runner.cleanup()
    assert 'scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"} 1.0' in text
    assert 'scheduler_pending_pods{queue="unschedulable"} 2.0' in text
    assert "scheduler_scheduling_attempt_duration_seconds_bucket" in text
