"""A mesh on loopback for the proxy tests and the local benchmark: fake meshd, sidecars, apps, config.

:class:`Mesh` starts a :class:`tests.meshd.fakes.FakeMeshd`, in-process sidecars
(:class:`meshd.proxy.proxy.Proxy` on 127.0.0.1 with ephemeral ports) and small aiohttp apps, and
builds the four resource types for a Service (:meth:`Mesh.http_service`). A client sidecar runs in
"explicit destination" mode: each request names the ClusterIP:port it would have dialled in
``x-kubelab-original-dst``; a server sidecar's inbound lookup names its app's port. ClusterIPs are
``127.96.x.y`` (never dialled: they are only keys of listeners).
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from meshd.api.identity import SpiffeId
from meshd.api.resources import (
    CLUSTERS,
    INBOUND,
    LISTENERS,
    ROUTES,
    Cluster,
    Endpoint,
    Inbound,
    Listener,
    Route,
    RouteConfig,
    VirtualHost,
    WeightedCluster,
    cluster_name,
)
from meshd.proxy.proxy import Proxy
from meshd.proxy.settings import ProxySettings
from tests.meshd.fakes import FakeMeshd, MeshCA

NAME = web.AppKey("name", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def echo(request: web.Request) -> web.Response:
    """The default app: who it is and what it saw."""
    body = await request.read()
    return web.json_response({"app": request.app[NAME], "path": request.path_qs, "method": request.method,
                              "headers": {k.lower(): v for k, v in request.headers.items()}, "body_len": len(body)})


class Mesh:
    def __init__(self, tmp_path: Path, *, leaf_seconds: float = 3600) -> None:
        self.tmp = tmp_path
        self.ca = MeshCA()
        self.meshd = FakeMeshd(self.ca, leaf_seconds=leaf_seconds)
        self.proxies: list[Proxy] = []
        self.runners: list[web.AppRunner] = []
        self.root_path = tmp_path / "root-cert.pem"
        self.root_path.write_text(self.ca.root_pem)
        self._ips = iter(range(10, 250))

    async def start(self) -> Mesh:
        await self.meshd.start()
        return self

    async def close(self) -> None:
        for proxy in self.proxies:
            await proxy.stop()
        for runner in self.runners:
            await runner.cleanup()
        await self.meshd.stop()

    async def app(self, name: str, handler: Handler = echo, *, routes: dict[str, Handler] | None = None) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[NAME] = name
        for path, h in (routes or {}).items():
            app.router.add_route("*", path, h)
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        return int(runner.addresses[0][1])

    def settings(self, name: str, *, namespace: str = "default", service_account: str = "", app_port: int = 0,
                 labels: dict[str, str] | None = None, **extra: Any) -> ProxySettings:
        account = service_account or name
        token = self.tmp / f"{name}-token"
        token.write_text(f"{namespace}/{account}")
        lookup = (lambda sock: ("127.0.0.1", app_port)) if app_port else (lambda sock: None)
        values: dict[str, Any] = dict(
            pod_name=f"{name}-pod", namespace=namespace, service_account=account, workload=name,
            labels=labels or {"app": name}, discovery_address=self.meshd.address, ca_address=self.meshd.address,
            token_path=str(token), root_cert_path=str(self.root_path), bind_address="127.0.0.1", outbound_port=0,
            inbound_port=0, admin_port=0, status_port=0, ready_port=0, explicit_destination_header=True,
            original_dst=lookup, install_signal_handlers=False, drain_seconds=5.0)
        values.update(extra)
        return ProxySettings(**values)

    async def proxy(self, name: str, *, seed: int = 1, **kwargs: Any) -> Proxy:
        proxy = Proxy(self.settings(name, **kwargs), rng=random.Random(seed), log_stream=io.StringIO())
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    async def ready(self) -> None:
        """Every sidecar has its certificate and configuration (as the kubelet's readiness gate ensures)."""
        for proxy in self.proxies:
            await proxy.wait_ready()

    def cluster_ip(self) -> str:
        return f"127.96.0.{next(self._ips)}"

    @staticmethod
    def endpoint(proxy: Proxy | None, port: int, *, name: str, version: str = "v1", namespace: str = "default",
                 meshed: bool = True) -> Endpoint:
        """An endpoint: the server sidecar's inbound port (meshed) or the app's port (plain)."""
        identity = SpiffeId(namespace, name).uri if meshed else ""
        return Endpoint(address="127.0.0.1", port=proxy.ports["inbound"] if proxy and meshed else port,
                        labels={"app": name, "version": version}, identity=identity, workload=f"{name}-{version}",
                        namespace=namespace)

    @staticmethod
    def http_service(name: str, ip: str, port: int, subsets: dict[str, list[Endpoint]],
                     routes: list[Route] | None = None, *, protocol: str = "http", **cluster_kw: Any,
                     ) -> tuple[list[Cluster], RouteConfig, Listener]:
        fqdn = f"{name}.default.svc.cluster.local"
        clusters = [Cluster(name=cluster_name(fqdn, port, subset), service=fqdn, port=port, protocol=protocol,  # type: ignore[arg-type]
                            subset=subset, endpoints=tuple(eps), **cluster_kw) for subset, eps in subsets.items()]
        default = Route(name="default", destinations=(WeightedCluster(clusters[0].name),))
        vhost = VirtualHost(name=f"{fqdn}:{port}", domains=(name, f"{name}:{port}", fqdn, f"{fqdn}:{port}", ip,
                                                            f"{ip}:{port}"),
                            routes=tuple(routes or [default]))
        rc = RouteConfig(name=str(port), virtual_hosts=(vhost,))
        listener = Listener(name=f"{ip}_{port}", address=ip, port=port, protocol=protocol,  # type: ignore[arg-type]
                            route_config=str(port) if protocol in ("http", "http2", "grpc") else "",
                            cluster=clusters[0].name if protocol in ("tcp", "tls") else "")
        return clusters, rc, listener

    def push(self, clusters: list[Cluster], routes: list[RouteConfig], listeners: list[Listener],
             inbound: Inbound | None = None) -> None:
        self.meshd.push(CLUSTERS, clusters)
        self.meshd.push(ROUTES, routes)
        self.meshd.push(LISTENERS, listeners)
        self.meshd.push(INBOUND, [inbound or Inbound()])


async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
