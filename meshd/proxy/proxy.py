"""The sidecar as one object: wiring, readiness, drain and exit.

:class:`Proxy` owns the parts -- certificates (:mod:`meshd.proxy.certs`), the xDS client
(:mod:`meshd.proxy.xds`) feeding the :class:`~meshd.proxy.config.ConfigStore`, the traffic
listeners (:mod:`meshd.proxy.listeners`), the local status servers (:mod:`meshd.proxy.health`)
and telemetry. Tests run it in-process (:meth:`Proxy.start` / :meth:`Proxy.stop`) with loopback
addresses and ephemeral ports; ``python -m meshd.proxy`` runs it with :func:`run` on uvloop.

Lifecycle:

* ready (``/healthz/ready`` 200) once a certificate is held and all four configuration types were
  applied once; it stays ready while meshd is away (last config and certificate keep serving);
  until it first is, a readiness request waits (at most ``ready_hold_seconds``) and is answered
  the moment the proxy becomes ready, so a startup probe arriving while the proxy starts passes
  then instead of one ``periodSeconds`` later; ``python -m meshd.proxy`` listens on the ready
  port before it imports the rest of itself;
* SIGTERM: drain -- stop accepting inbound connections, close idle inbound keep-alive connections,
  wait for in-flight requests (at most ``drain_seconds``, Istio's ``terminationDrainDuration``),
  exit 0;
* ``POST /quitquitquit``: exit 0 at once (Jobs whose app has finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
import time
from typing import TextIO

from meshd.proxy import outlier
from meshd.proxy.certs import CertManager
from meshd.proxy.config import ConfigStore
from meshd.proxy.health import StatusServers
from meshd.proxy.httpproxy import HttpProxy
from meshd.proxy.listeners import Listeners
from meshd.proxy.settings import ProxySettings
from meshd.proxy.telemetry import Telemetry
from meshd.proxy.xds import XdsClient

__all__ = ["Proxy", "run"]

log = logging.getLogger(__name__)


class Proxy:
    """A sidecar proxy in this process."""

    def __init__(self, settings: ProxySettings, *, rng: random.Random | None = None,
                 log_stream: TextIO | None = None, ready_socket: socket.socket | None = None) -> None:
        self.settings = settings
        self.rng = rng or random.Random()
        self.telemetry = Telemetry(log_stream=log_stream, access_log=settings.access_log)
        self.store = ConfigStore(rng=self.rng)
        self.certs = CertManager(settings, rng=self.rng)
        self.xds = XdsClient(settings, self.certs, self.store, rng=self.rng)
        self.http = HttpProxy(settings, self.store, self.certs, self.telemetry, rng=self.rng)
        self.listeners = Listeners(settings, self.store, self.certs, self.http, self.telemetry)
        self.status = StatusServers(self, ready_socket=ready_socket)
        self.telemetry.gauges["istio_agent_cert_expiry_seconds"] = self.certs.expiry_seconds
        self.telemetry.collectors.append(lambda: outlier.render(
            b.outlier for b in self.store.snapshot.clusters.values() if b.outlier is not None))
        self.exited = asyncio.Event()
        self.exit_code = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> bool:
        return self.certs.leaf is not None and self.store.complete

    def not_ready_reason(self) -> str:
        if self.certs.leaf is None:
            return "no workload certificate yet"
        missing = [t.rsplit(".", 1)[-1] for t in ("type.kubelab.dev/mesh.Cluster", "type.kubelab.dev/mesh.RouteConfig",
                                                  "type.kubelab.dev/mesh.Listener", "type.kubelab.dev/mesh.Inbound")
                   if t not in self.store.versions]
        return "no configuration yet for " + ", ".join(missing)

    @property
    def ports(self) -> dict[str, int]:
        """The bound ports (tests bind port 0)."""
        return {"outbound": self.listeners.outbound_port, "inbound": self.listeners.inbound_port, **self.status.ports}

    async def start(self) -> None:
        await self.listeners.start()
        await self.status.start()
        loop = asyncio.get_running_loop()
        for name, coro in (("certificates", self.certs.run()), ("discovery", self.xds.run()),
                           ("log-flush", self._flush_logs())):
            task = loop.create_task(coro, name=f"proxy-{name}")
            task.add_done_callback(self._task_done)
            self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped", task.get_name(), exc_info=task.exception())

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self.telemetry.flush()

    async def became_ready(self, timeout: float) -> bool:
        """Wait until the proxy is ready (a certificate and every configuration type), at most
        ``timeout`` seconds; whether it is."""
        async def ready() -> None:
            await self.certs.ready.wait()
            async with self.xds.changed:
                await self.xds.changed.wait_for(lambda: self.store.complete)
        if self.ready:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready(), timeout)
        return self.ready

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready:
            if time.monotonic() > deadline:
                raise TimeoutError(f"proxy not ready: {self.not_ready_reason()}")
            await asyncio.sleep(0.02)

    async def drain(self) -> None:
        """Stop taking inbound connections and wait for in-flight requests (bounded by ``drain_seconds``)."""
        log.info("draining for at most %.1fs", self.settings.drain_seconds)
        self.listeners.drain()
        deadline = time.monotonic() + self.settings.drain_seconds
        while self.listeners.in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def terminate(self) -> None:
        """SIGTERM: drain, then exit 0."""
        await self.drain()
        await self.quit()

    async def quit(self, code: int = 0) -> None:
        self.exit_code = code
        await self.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.http.mirroring.close()
        await self.listeners.close()
        await self.status.close()
        self.telemetry.flush()
        self.exited.set()


async def _main(settings: ProxySettings, ready_socket: socket.socket | None) -> int:
    proxy = Proxy(settings, ready_socket=ready_socket)
    await proxy.start()
    loop = asyncio.get_running_loop()
    if settings.install_signal_handlers:
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(proxy.terminate()))
        loop.add_signal_handler(signal.SIGINT, lambda: loop.create_task(proxy.quit()))
    log.info("proxy %s started: outbound %d, inbound %d, status %d, ready %d, admin %d", settings.identity.uri,
             *(proxy.ports[k] for k in ("outbound", "inbound", "status", "ready", "admin")))
    await proxy.exited.wait()
    return proxy.exit_code


def run(settings: ProxySettings, *, ready_socket: socket.socket | None = None) -> int:
    """Run the proxy until it exits (SIGTERM after draining, ``/quitquitquit``); the exit code.

    ``ready_socket``: the ready port, already listening (see :mod:`meshd.proxy.__main__`)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:  # pragma: no cover -- the image always has it
        return asyncio.run(_main(settings, ready_socket))
    return uvloop.run(_main(settings, ready_socket))
