"""The reflector over real HTTP against a tiny scripted server: a watch that goes silent without
closing is reconnected from the last resourceVersion; a 410 Expired (as an ERROR event or as the
answer to the watch request) makes it re-list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from machinery.client.informer import SharedInformer
from machinery.client.rest import ApiClient
from machinery.resources import NAMESPACES

EXPIRED = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
           "message": "too old resource version: 7 (9)"}


def namespace(name: str, rv: str) -> dict[str, Any]:
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name, "resourceVersion": rv}}


def line(type_: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": type_, "object": obj}) + b"\n"


class ScriptedServer:
    """``/api/v1/namespaces``: lists answer ``lists`` in turn (the last one repeats); each watch
    runs the next step of ``watches``: a list of lines to send and pauses (seconds), then
    ``"silent"`` (keep the connection open, send nothing), ``"close"`` or ``"410"`` (answer the
    request with a 410)."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[list[bytes | str | float]]) -> None:
        self.lists = lists
        self.watches = watches
        self.list_calls = 0
        self.watch_from: list[str] = []
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            items = self.lists[min(self.list_calls, len(self.lists) - 1)]
            self.list_calls += 1
            self.changed.set()
            rv = max(int(i["metadata"]["resourceVersion"]) for i in items)
            return web.json_response({"kind": "NamespaceList", "apiVersion": "v1", "items": items,
                                      "metadata": {"resourceVersion": str(rv)}})
        self.watch_from.append(request.query.get("resourceVersion", ""))
        self.changed.set()
        step = self.watches.pop(0) if self.watches else ["silent"]
        if step == ["410"]:
            return web.json_response(EXPIRED, status=410)
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        for item in step:
            if item == "silent":
                await asyncio.sleep(3600)
            elif item == "close":
                break
            elif isinstance(item, float):
                await asyncio.sleep(item)
            else:
                assert isinstance(item, bytes)
                await response.write(item)
        return response


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[ScriptedServer], Any]]:
    runners: list[web.AppRunner] = []

    async def start(server: ScriptedServer) -> ApiClient:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces", server.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return ApiClient(f"http://127.0.0.1:{port}", timeout=10)

    yield start
    for runner in runners:
        await runner.cleanup()


async def wait_until(server: ScriptedServer, check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            server.changed.clear()
            await server.changed.wait()


async def test_silent_watch_is_reconnected_from_last_resource_version(
        serve: Callable[[ScriptedServer], Any]) -> None:
    server = ScriptedServer(lists=[[namespace("a", "5")]],
                            watches=[[line("MODIFIED", namespace("a", "7")), "silent"],
                                     [line("ADDED", namespace("b", "8")), "silent"]])
    client = await serve(server)
    informer = SharedInformer(client, NAMESPACES, inactivity_timeout=0.5)
    try:
        await informer.start()
        await wait_until(server, lambda: len(server.watch_from) >= 3)
    finally:
        await informer.stop()
        await client.close()
    assert server.watch_from[:3] == ["5", "7", "8"], "each reconnect resumes from the last event seen"
    assert server.list_calls == 1, "a silent watch is resumed, not re-listed"
    assert informer.inactive_watches >= 2
    assert sorted(informer.store.keys()) == ["a", "b"]


async def test_a_watch_that_keeps_talking_is_not_cut(serve: Callable[[ScriptedServer], Any]) -> None:
    """Events closer together than the inactivity timeout keep the watch, for longer than it."""
    step: list[bytes | str | float] = []
    for rv in range(6, 46):
        step += [line("MODIFIED", namespace("a", str(rv))), 0.1]
    server = ScriptedServer(lists=[[namespace("a", "5")]], watches=[[*step, "close"]])
    client = await serve(server)
    informer = SharedInformer(client, NAMESPACES, inactivity_timeout=1.5)
    try:
        await informer.start()
        await wait_until(server, lambda: len(server.watch_from) >= 2)
    finally:
        await informer.stop()
        await client.close()
    assert server.watch_from[:2] == ["5", "45"], "one watch carried all 40 events (4 s: past the timeout)"
    assert informer.inactive_watches == 0


@pytest.mark.parametrize("expired", [
    pytest.param([line("ERROR", EXPIRED)], id="error-event"),
    pytest.param(["410"], id="http-410"),
])
async def test_expired_watch_relists(serve: Callable[[ScriptedServer], Any],
                                     expired: list[bytes | str | float]) -> None:
    server = ScriptedServer(lists=[[namespace("a", "5"), namespace("b", "6")], [namespace("a", "20")]],
                            watches=[[line("MODIFIED", namespace("a", "7")), "close"], expired])
    client = await serve(server)
    informer = SharedInformer(client, NAMESPACES)
    deleted: list[str] = []
    informer.add_handler(on_delete=lambda o: deleted.append(o["metadata"]["name"]))
    try:
        await informer.start()
        await wait_until(server, lambda: len(server.watch_from) >= 3)
    finally:
        await informer.stop()
        await client.close()
    assert server.list_calls == 2, "410 Expired means re-list"
    assert server.watch_from[:3] == ["6", "7", "20"], "then watch from the new list's resourceVersion"
    assert deleted == ["b"], "the re-list reports what vanished meanwhile"
    assert informer.store.keys() == ["a"]
