"""An admission webhook served by the test process itself (envtest's pattern).

:class:`HookServer` is an aiohttp HTTPS server on 127.0.0.1 (ephemeral port) with a CA of its
own, unknown to the apiserver until a configuration names it in ``caBundle``. Each path answers
with a behaviour the test picks (allow, deny, patch, hang, garbage …); every review received is
recorded per path so tests can check what the apiserver sent. :func:`hook_server_thread` runs
one on an event loop of its own thread, for synchronous tests that drive kubectl.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from machinery.pki import ensure_cluster_pki, write_private_file

Obj = dict[str, Any]
Behaviour = Callable[[Obj], Awaitable[Any]]


def answer(review: Obj, *, allowed: bool = True, patch: list[Obj] | None = None, status: Obj | None = None,
           warnings: list[str] | None = None, raw_patch: str | None = None) -> Obj:
    """An AdmissionReview response to ``review``."""
    response: Obj = {"uid": review["request"]["uid"], "allowed": allowed}
    if patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    if raw_patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = raw_patch
    if status is not None:
        response["status"] = status
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


class HookServer:
    """Paths → behaviours; ``reviews[path]`` lists the reviews received there."""

    def __init__(self, pki_dir: Path) -> None:
        pki = ensure_cluster_pki(pki_dir)
        cert, key = pki.issue_serving_certificate(["127.0.0.1", "localhost", "hooks.default.svc"])
        write_private_file(pki_dir / "hook.crt", cert, mode=0o644)
        write_private_file(pki_dir / "hook.key", key)
        self.ca_bundle = base64.b64encode(pki.ca_pem).decode()
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(str(pki_dir / "hook.crt"), str(pki_dir / "hook.key"))
        self.behaviours: dict[str, Behaviour] = {}
        self.reviews: dict[str, list[Obj]] = {}
        self.release = asyncio.Event()  # hanging behaviours wait for this
        self.port = 0

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        review = orjson.loads(await request.read())
        self.reviews.setdefault(request.path, []).append(review)
        behaviour = self.behaviours.get(request.path)
        result = await behaviour(review) if behaviour is not None else answer(review)
        if isinstance(result, bytes):
            return web.Response(body=result, content_type="application/json")
        return web.Response(body=orjson.dumps(result), content_type="application/json")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HookServer]:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = runner.addresses[0][1]
        try:
            yield self
        finally:
            self.release.set()
            await runner.cleanup()


async def hang(server: HookServer) -> Any:
    await server.release.wait()
    return b"{}"


@contextlib.contextmanager
def hook_server_thread(pki_dir: Path) -> Iterator[HookServer]:
    """A running :class:`HookServer` served from a thread of its own (its behaviours run there)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-webhook-server", daemon=True)
    thread.start()

    async def start() -> tuple[HookServer, contextlib.AbstractAsyncContextManager[HookServer]]:
        server = HookServer(pki_dir)
        running = server.running()
        await running.__aenter__()
        return server, running

    try:
        server, running = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(running.__aexit__(None, None, None), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
