"""The event recorder across an apiserver restart: events recorded while the apiserver is down
are written once it is back, in order, and the recorder keeps working afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apiserver.server import serve
from apiserver.settings import ApiServerSettings
from machinery.client.events import EventRecorder
from machinery.client.rest import ApiClient
from machinery.resources import EVENTS, PODS
from tests.machinery.client.conftest import pod


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def apiserver(state_dir: Path, port: int) -> AsyncIterator[ApiServerSettings]:
    """A real apiserver (sqlite store, so a restart keeps the data) on a fixed loopback port."""
    settings = ApiServerSettings(state_dir=state_dir, store="sqlite", port=port)
    started = asyncio.Event()
    task = asyncio.create_task(serve(settings, started=started), name="test-apiserver")
    waiter = asyncio.create_task(started.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task in done:
        task.result()
    assert started.is_set(), "apiserver did not start"
    try:
        yield settings
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def reasons(client: ApiClient) -> list[tuple[str, int]]:
    items: list[dict[str, Any]] = (await client.list(EVENTS, namespace="default"))["items"]
    items.sort(key=lambda e: (e["firstTimestamp"], e["metadata"]["name"]))
    return [(e["reason"], e["count"]) for e in items]


async def test_events_recorded_during_an_apiserver_restart_are_written(tmp_path: Path) -> None:
    port = free_port()
    async with apiserver(tmp_path, port) as settings:
        client = ApiClient.from_kubeconfig(settings.kubeconfig_path, timeout=10)
        p = await client.create(PODS, pod("web"))
        recorder = EventRecorder(client, component="replicaset-controller", retry_delay=0.2, max_tries=200)
        recorder.event(p, "Normal", "Before", "written before the restart")
        await asyncio.wait_for(recorder.flush(), 30)
    try:
        # The apiserver is down: these cannot be written now.
        recorder.event(p, "Normal", "During", "recorded while the apiserver was down")
        recorder.event(p, "Normal", "Before", "written before the restart")
        await asyncio.sleep(0)
        async with apiserver(tmp_path, port):
            await asyncio.wait_for(recorder.flush(), 60)
            recorder.event(p, "Warning", "After", "recorded after the restart")
            await asyncio.wait_for(recorder.flush(), 30)
            assert await reasons(client) == [("Before", 2), ("During", 1), ("After", 1)]
        await recorder.close()
    finally:
        await client.close()


async def test_events_dropped_during_an_outage_are_logged_once(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    async with apiserver(tmp_path, port) as settings:
        client = ApiClient.from_kubeconfig(settings.kubeconfig_path, timeout=10)
        p = await client.create(PODS, pod("web"))
    recorder = EventRecorder(client, component="kubelet", retry_delay=0.2, max_tries=200, max_pending=3)
    try:
        for i in range(10):
            recorder.event(p, "Normal", f"R{i}", "recorded while the apiserver was down")
        drops = [r for r in caplog.records if "dropping new ones" in r.getMessage()]
        assert len(drops) == 1, "one line for the whole outage, not one per dropped event"
        async with apiserver(tmp_path, port):
            await asyncio.wait_for(recorder.flush(), 60)
            written = await reasons(client)
        await recorder.close()
    finally:
        await client.close()
    dropped = 10 - len(written)
    assert dropped >= 6
    assert f"{dropped} events were dropped" in caplog.text
