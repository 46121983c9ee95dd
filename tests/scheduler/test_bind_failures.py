"""A bind that fails in an unexpected way (not an answer of the apiserver) is retried: the pod is
never left assumed and in flight, which would keep it from being scheduled again."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from machinery.client import ApiClient
from machinery.resources import NODES, PODS
from scheduler.scheduler import Scheduler
from tests.apiserver.conftest import embedded_api
from tests.scheduler.helpers import node, pod


class FirstBindBreaks(ApiClient):
    """The first bind fails with an error that is not an ``ApiError``."""

    binds = 0

    async def bind(self, namespace: str, pod_name: str, node_name: str) -> None:
        self.binds += 1
        if self.binds == 1:
            raise RuntimeError("connection state lost")
        await super().bind(namespace, pod_name, node_name)


async def test_unexpected_bind_failure_is_retried(tmp_path: Path) -> None:
    async with embedded_api(tmp_path) as api:
        client = FirstBindBreaks.from_kubeconfig(api.settings.kubeconfig_path)
        assert isinstance(client, FirstBindBreaks)
        scheduler = Scheduler(client)
        task = asyncio.create_task(scheduler.run())
        try:
            await client.create(NODES, node("n1"))
            await asyncio.wait_for(scheduler.ready.wait(), 30)
            await client.create(PODS, pod("web"))
            async with asyncio.timeout(60):
                while not (await client.get(PODS, "web", namespace="default"))["spec"].get("nodeName"):
                    await asyncio.sleep(0.05)
            assert client.binds == 2
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
