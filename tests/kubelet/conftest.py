"""Fixtures for kubelet tests: an embedded apiserver, an ApiClient on it, and a kubelet group factory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kubelet.hollow import KubeletGroup
from kubelet.settings import KubeletSettings
from machinery.client.rest import ApiClient
from tests.apiserver.conftest import embedded_api


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with embedded_api(tmp_path) as api:
        api_client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        try:
            yield api_client
        finally:
            await api_client.close()


GroupFactory = Callable[..., Awaitable[KubeletGroup]]


@pytest.fixture
async def start_group(client: ApiClient, tmp_path: Path) -> AsyncIterator[GroupFactory]:
    groups: list[KubeletGroup] = []

    async def start(**overrides: Any) -> KubeletGroup:
        fields: dict[str, Any] = {"kubeconfig": tmp_path / "kubeconfig", "node_name": "node-a",
                                  "fake_start_delay": 0.05, "fake_crash_after": 0.1,
                                  "crash_loop_base_delay": 0.3, "crash_loop_max_delay": 1.2,
                                  "lease_renew_interval": 0.3}
        fields.update(overrides)
        group = KubeletGroup(client, KubeletSettings(**fields))
        groups.append(group)
        await group.start()
        await group.wait_registered(30)
        return group

    yield start
    for group in groups:
        await group.stop()


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy without raising; return it."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
        except (AssertionError, KeyError) as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last error: {last!r})")
