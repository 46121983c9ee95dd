"""Integration-test helpers: an embedded apiserver + client + controller-manager, fake "nodes".

There is no kubelet in these tests: ``mark_ready`` plays the node, setting pods Running+Ready
through the status subresource.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from controllers.manager import ControllerManager
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import ApiClient, InformerFactory
from machinery.meta import now_rfc3339
from machinery.resources import PODS
from tests.apiserver.conftest import embedded_api

Obj = dict[str, Any]


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with embedded_api(tmp_path) as api:
        client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        try:
            yield client
        finally:
            await client.close()


def settings(**kw: Any) -> ControllerManagerSettings:
    base: dict[str, Any] = {"leader_elect": False, "controllers": ("replicaset", "deployment"),
                            "lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
    base.update(kw)
    return ControllerManagerSettings(**base)


@contextlib.asynccontextmanager
async def manager(client: ApiClient, **kw: Any) -> AsyncIterator[ControllerManager]:
    mgr = ControllerManager(client, settings(**kw))
    task = asyncio.create_task(mgr.run(), name="test-controller-manager")
    try:
        yield mgr
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


async def pods(client: ApiClient, selector: str, namespace: str = "default", *, active: bool = True) -> list[Obj]:
    items: list[Obj] = (await client.list(PODS, namespace=namespace, label_selector=selector))["items"]
    if active:
        items = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    return items


async def mark_ready(client: ApiClient, pod: Obj, *, ready: bool = True) -> None:
    """Play the node: phase Running, Ready condition (status subresource)."""
    now = now_rfc3339()
    status = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": now},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]}
    with contextlib.suppress(errors.NotFoundError):
        await client.patch(PODS, pod["metadata"]["name"], {"status": status},
                           namespace=pod["metadata"]["namespace"], subresource="status")


async def ready_all(client: ApiClient, selector: str, namespace: str = "default") -> int:
    """Mark every not-yet-ready active pod ready; how many were marked."""
    count = 0
    for pod in await pods(client, selector, namespace):
        if (pod.get("status") or {}).get("phase") != "Running":
            await mark_ready(client, pod)
            count += 1
    return count


def template(labels: dict[str, str], image: str = "nginx:1") -> Obj:
    return {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}}


@contextlib.asynccontextmanager
async def fake_nodes(client: ApiClient, selector: str, namespace: str = "default",
                     period: float = 0.05) -> AsyncIterator[None]:
    """Keep marking the selected pods Running+Ready, like kubelets would."""
    async def loop() -> None:
        while True:
            with contextlib.suppress(errors.ApiError):
                await ready_all(client, selector, namespace)
            await asyncio.sleep(period)

    task = asyncio.create_task(loop(), name="fake-nodes")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class PodHistory:
    """Watches pods and records (active, ready) counts after every event."""

    def __init__(self, client: ApiClient, selector: str, namespace: str = "default") -> None:
        self.client = client
        self.selector = selector
        self.namespace = namespace
        self.pods: dict[str, Obj] = {}
        self.samples: list[tuple[int, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodHistory:
        listing = await self.client.list(PODS, namespace=self.namespace, label_selector=self.selector)
        for pod in listing["items"]:
            self.pods[pod["metadata"]["name"]] = pod
        rv = listing["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv), name="pod-history")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self, rv: str) -> None:
        async for event in self.client.watch(PODS, namespace=self.namespace, label_selector=self.selector,
                                             resource_version=rv):
            name = event.object.get("metadata", {}).get("name")
            if event.type in ("ADDED", "MODIFIED"):
                self.pods[name] = event.object
            elif event.type == "DELETED":
                self.pods.pop(name, None)
            else:
                continue
            active = [p for p in self.pods.values() if not p["metadata"].get("deletionTimestamp")]
            ready = [p for p in active if any(c.get("type") == "Ready" and c.get("status") == "True"
                                              for c in (p.get("status") or {}).get("conditions") or [])]
            self.samples.append((len(active), len(ready)))


Controller = Any
MakeController = Callable[[ApiClient, InformerFactory], Controller]


@contextlib.asynccontextmanager
async def running_controller(tmp_path: Path, make: MakeController, *, workers: int = 1,
                             name: str = "controller") -> AsyncIterator[ApiClient]:
    """One controller over the embedded apiserver: synced informers, ``run(workers)`` as a task."""
    async with embedded_api(tmp_path) as api:
        client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        factory = InformerFactory(client)
        controller = make(client, factory)
        await factory.start()
        await factory.wait_synced()
        task = asyncio.create_task(controller.run(workers), name=f"test-{name}")
        try:
            yield client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await factory.stop()
            await client.close()
