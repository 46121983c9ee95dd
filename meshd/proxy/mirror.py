"""Traffic mirroring (Istio's ``mirror`` / ``mirrors``, Envoy's ``request_mirror_policies``).

Called by the router (:mod:`meshd.proxy.router`) once a request has its route and destination cluster,
before the first try: :meth:`Mirroring.shadow` draws each of the route's
:class:`~meshd.api.resources.Mirror` policies against its percentage and, for each one drawn,
starts a fire-and-forget copy of the request to an endpoint of the mirror cluster:

* the copy's ``Host`` (``:authority`` on HTTP/2) has ``-shadow`` appended to its host part, the
  port kept (``reviews:9080`` → ``reviews-shadow:9080``), as Envoy does, so the mirror's logs
  tell shadow traffic apart;
* it goes the way any outbound try goes (the mirror cluster's balancer and TLS mode, the peer
  metadata header to a meshed endpoint) but only once -- no retries, no timeout of the route;
  its response is read and thrown away, and its failure (no endpoint, refused, reset, slow) is
  only logged at debug level: the client sees the primary's response alone;
* a request body is copied: it is read whole first when it is known to fit
  :data:`MIRROR_BODY_LIMIT` (or has already arrived), and the primary then streams the same
  bytes. A larger or open-ended body is not mirrored (counted in :attr:`Mirroring.skipped`)
  rather than held in memory, where Envoy would stream it to both.

Each shadow is a task held in :attr:`Mirroring.tasks` until it ends (so it is not collected
mid-flight, and :meth:`Mirroring.close` can cancel stragglers at shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from meshd.api.resources import Mirror
from meshd.proxy.body import Body, Replay
from meshd.proxy.config import ConfigStore
from meshd.proxy.http1 import Request, Response, forwardable_headers
from meshd.proxy.peers import PEER_METADATA_HEADER
from meshd.proxy.upstream import wants_mtls

__all__ = ["MIRROR_BODY_LIMIT", "SHADOW_TIMEOUT", "Mirroring", "shadow_host"]

log = logging.getLogger(__name__)

MIRROR_BODY_LIMIT = 64 * 1024
SHADOW_TIMEOUT = 30.0
"""The most a shadow request may take, response body included (nobody waits for it)."""

Send = Callable[..., Awaitable[Response]]
"""The proxy's single try: ``send(req, replay, headers, host, port, mtls, identity, connect_timeout,
per_try_timeout, h2=...)``."""


def shadow_host(authority: str) -> str:
    """``reviews:9080`` → ``reviews-shadow:9080``; ``[::1]:80`` → ``[::1]-shadow:80``."""
    host, sep, port = authority.rpartition(":")
    if not sep or not port.isdigit() or (host.startswith("[") is not host.endswith("]")):
        return f"{authority}-shadow"
    return f"{host}-shadow:{port}"


class Mirroring:
    """Starts and keeps track of shadow requests."""

    def __init__(self, store: ConfigStore, send: Send, peer_header: Callable[[str], str], *,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.send = send
        self.peer_header = peer_header
        self.rng = rng or random.Random()
        self.tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0
        self.skipped = 0

    async def shadow(self, mirrors: Sequence[Mirror], req: Request) -> None:
        """Draw ``mirrors`` and start a copy of ``req`` for each one drawn (``req.body`` may be
        replaced by an equal, complete body once read for the copies)."""
        chosen = [m for m in mirrors if self.rng.random() * 100 < m.percentage]
        if not chosen or req.upgrade:  # a WebSocket upgrade becomes a tunnel: nothing to copy
            return
        body = req.body
        if not body.complete:
            if body.length is None or body.length > MIRROR_BODY_LIMIT or body.error is not None:
                self.skipped += len(chosen)
                return
            try:
                data = await body.read_all()
            except ConnectionError:
                return  # the downstream went away: the primary will find out
            req.body = Body.of(data)
        elif body.buffered > MIRROR_BODY_LIMIT:
            self.skipped += len(chosen)
            return
        else:
            data = body.take()
            req.body = Body.of(data)
        for mirror in chosen:
            copy = Request(req.method, req.path, self._shadow_headers(req.headers), data, req.version)
            task = asyncio.get_running_loop().create_task(self._send(mirror.cluster, copy),
                                                          name=f"mirror {mirror.cluster}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    def _shadow_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, shadow_host(v) if k in ("host", ":authority") else v) for k, v in headers]

    async def _send(self, name: str, req: Request) -> None:
        try:
            async with asyncio.timeout(SHADOW_TIMEOUT):
                await self._try(name, req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # nobody waits for a shadow: its failure is only noted
            self.failed += 1
            log.debug("mirror to %s failed: %s", name, exc)
        else:
            self.sent += 1

    async def _try(self, name: str, req: Request) -> None:
        balancer: Any = self.store.snapshot.clusters.get(name)
        if balancer is None:
            raise LookupError(f"no cluster {name}")
        endpoint = balancer.pick()
        if endpoint is None:
            raise LookupError(f"no healthy endpoint in {name}")
        cluster = balancer.cluster
        mtls = wants_mtls(cluster, endpoint)
        headers = forwardable_headers(req.headers)
        if mtls:
            headers = [*headers, (PEER_METADATA_HEADER, self.peer_header(cluster.service))]
        balancer.started(endpoint)
        try:
            resp = await self.send(req, Replay(req.body, 0), headers, endpoint.address, endpoint.port, mtls,
                                   endpoint.identity, cluster.connect_timeout_ms / 1000, 0.0,
                                   h2=cluster.protocol in ("http2", "grpc"))
            await resp.body.read_all()  # read to the end so the connection can serve again
        finally:
            balancer.finished(endpoint)

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
