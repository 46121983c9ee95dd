"""Fixtures for the sidecar proxy tests: a loopback mesh (fake meshd, sidecars, apps)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from tests.meshd.proxy.harness import Mesh


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    m = await Mesh(tmp_path).start()
    try:
        yield m
    finally:
        await m.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """The sidecar runs on uvloop in pods: its tests run there too (uvloop's transports differ)."""
    return {"uvloop": uvloop.new_event_loop}
