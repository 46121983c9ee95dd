"""An apiserver embedded in the test's event loop (memory store, port 0) and a small client.

For API-semantics tests that need no external process; the kubectl and etcd suites in
tests/e2e start real processes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from apiserver.server import serve
from apiserver.settings import ApiServerSettings
from machinery.kubeconfig import load_kubeconfig


class Api:
    """Thin JSON client: ``await api.request("POST", path, body) -> (status, json)``."""

    def __init__(self, session: aiohttp.ClientSession, server: str, settings: ApiServerSettings) -> None:
        self.session = session
        self.server = server
        self.settings = settings

    async def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                      headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        hdrs = dict(headers or {})
        if data is not None and content_type:
            hdrs["Content-Type"] = content_type
        skip = ["Content-Type"] if not content_type else []
        async with self.session.request(method, self.server + path, data=data, headers=hdrs,
                                        skip_auto_headers=skip) as resp:
            text = await resp.read()
            try:
                return resp.status, orjson.loads(text)
            except orjson.JSONDecodeError:
                return resp.status, text.decode()

    async def response(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.session.request(method, self.server + path, **kwargs)


@contextlib.asynccontextmanager
async def embedded_api(state_dir: Path, store: str = "memory", **overrides: Any) -> AsyncIterator[Api]:
    """``overrides``: more ApiServerSettings fields (``etcd_servers``, ``etcd_prefix`` …)."""
    settings = ApiServerSettings(state_dir=state_dir, store=store, port=0, **overrides)
    started = asyncio.Event()
    task = asyncio.create_task(serve(settings, started=started), name="test-apiserver")
    done, _ = await asyncio.wait({task, asyncio.create_task(started.wait())}, timeout=30,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    entry = load_kubeconfig(settings.kubeconfig_path)
    connector = aiohttp.TCPConnector(ssl=entry.ssl_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            yield Api(session, entry.server, settings)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with embedded_api(tmp_path) as client:
        yield client
