"""Running the apiserver: storage, PKI, watch caches, bootstrap objects, the HTTPS listener.

``serve()`` is the whole lifecycle as one coroutine (tests embed it); ``run()`` is the
blocking entry point ``kubelab apiserver`` calls, stopping cleanly on SIGTERM/SIGINT.
On start the cluster PKI and the admin kubeconfig are created if missing; once the port is
bound it is written to ``state_dir/apiserver.port``. With an advertise address (the host's address
on the Docker pod network) the apiserver also listens there on the same port, its serving
certificate names it, and the ``default/kubernetes`` Service's endpoints point to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import ipaddress
import logging
import ssl
from typing import Any

from aiohttp import web

from apiserver.app import make_app
from apiserver.bootstrap import (
    ensure_default_storage_class,
    ensure_kubernetes_endpoints,
    ensure_kubernetes_service,
    ensure_system_identities,
    ensure_system_namespaces,
)
from apiserver.compaction import run_compactor
from apiserver.context import ApiContext
from apiserver.keylayout import migrate_key_layout
from apiserver.metrics import ApiMetrics
from apiserver.settings import ApiServerSettings
from apiserver.storage import open_storage
from apiserver.storage.instrumented import InstrumentedStorage
from apiserver.watchcache import WatchCaches
from machinery.kubeconfig import write_kubeconfig
from machinery.pki import ClusterPki, ensure_cluster_pki
from machinery.process import run_until_signalled
from machinery.resources import RESOURCES

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)
MEMORY_TRIM_SECONDS = 5.0


def server_ssl_context(settings: ApiServerSettings) -> tuple[ssl.SSLContext, ClusterPki]:
    hosts = {settings.bind_address, "127.0.0.1", "localhost",
             str(ipaddress.ip_network(settings.service_cidr).network_address + 1)}  # the kubernetes Service
    if settings.advertise_address:
        hosts.add(settings.advertise_address)
    pki = ensure_cluster_pki(settings.pki_dir, server_hosts=sorted(hosts - {"0.0.0.0", ""}))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.apiserver_cert), str(pki.apiserver_key))
    ctx.load_verify_locations(str(pki.ca_cert))
    # Optional: anonymous callers still reach /healthz and /version; the rest answer 401.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx, pki


async def serve(settings: ApiServerSettings, *, started: asyncio.Event | None = None) -> None:
    """Serve until cancelled."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ssl_ctx, pki = server_ssl_context(settings)
    metrics = ApiMetrics()
    storage = InstrumentedStorage(
        open_storage(settings.store, sqlite_path=settings.sqlite_path, etcd_servers=settings.etcd_servers,
                     etcd_prefix=settings.etcd_prefix),
        metrics,
    )
    await storage.start()
    await migrate_key_layout(storage)  # before anything reads the store by key
    caches = WatchCaches(RESOURCES, storage, capacity=settings.watch_cache_events)
    ctx = ApiContext(settings=settings, storage=storage, caches=caches, metrics=metrics)
    runner: web.AppRunner | None = None
    compactor: asyncio.Task[None] | None = None
    trimmer: asyncio.Task[None] | None = None
    try:
        await ensure_system_namespaces(ctx)
        await ctx.apiextensions.restore()  # established CRDs are served from the caches' first list on
        await caches.start()
        await caches.wait_ready()
        ctx.apiextensions.start()
        app = make_app(ctx)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, settings.bind_address, settings.port, ssl_context=ssl_ctx,
                           backlog=1024, reuse_address=True)
        await site.start()
        port = _bound_port(runner, settings.port)
        if settings.advertise_address and settings.bind_address not in ("0.0.0.0", settings.advertise_address):
            pods_site = web.TCPSite(runner, settings.advertise_address, port, ssl_context=ssl_ctx,
                                    backlog=1024, reuse_address=True)
            await pods_site.start()
        host = "127.0.0.1" if settings.bind_address in ("0.0.0.0", "") else settings.bind_address
        ctx.server_address = f"{host}:{port}"
        _write_client_files(settings, pki, host, port)
        await ensure_kubernetes_service(ctx, port)
        await ensure_kubernetes_endpoints(ctx, port)
        await ensure_system_identities(ctx)
        await ensure_default_storage_class(ctx)
        compactor = asyncio.create_task(run_compactor(storage, settings), name="compactor")
        trimmer = asyncio.create_task(run_memory_trimmer(), name="memory-trimmer")
        _tune_gc()
        _tune_malloc()
        log.info("apiserver serving on https://%s:%d (store %s)", host, port, settings.store)
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        for task in (compactor, trimmer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if runner is not None:
            await runner.cleanup()
        await ctx.apiextensions.stop()
        await caches.stop()
        await storage.close()


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # glibc only


def _tune_malloc() -> None:
    """Fix glibc's mmap threshold at 128 KiB. By default glibc raises it after large blocks are
    freed, so the multi-megabyte bodies of big lists end up on the heap and are never given
    back: RSS grew by the size of every large list answered."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


async def run_memory_trimmer(interval: float = MEMORY_TRIM_SECONDS) -> None:
    """Give freed heap pages back to the kernel every ``interval`` seconds (glibc's malloc_trim).

    A large list (thousands of objects decoded from an etcd range, then freed) leaves the heap
    full of free chunks between live ones; glibc only returns the top of the heap by itself.
    Go's runtime scavenges the same way. A trim of a ~150 MB heap takes a few milliseconds.
    """
    libc = _libc()
    if libc is None:
        return
    while True:
        await asyncio.sleep(interval)
        libc.malloc_trim(0)


def _tune_gc() -> None:
    """Keep the cyclic GC off the request path: everything alive after start-up is frozen out of
    collections, and young-generation collections run less often (the caches hold many objects,
    and full collections over them were the source of 100+ ms pauses)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        for sock in sockets:
            return int(sock.getsockname()[1])
    return requested


def _write_client_files(settings: ApiServerSettings, pki: ClusterPki, host: str, port: int) -> None:
    write_kubeconfig(
        settings.kubeconfig_path,
        server=f"https://{host}:{port}",
        ca_pem=pki.ca_cert.read_bytes(),
        client_cert_pem=pki.admin_cert.read_bytes(),
        client_key_pem=pki.admin_key.read_bytes(),
    )
    port_file = settings.state_dir / "apiserver.port"
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)


def run(settings: ApiServerSettings) -> None:
    """Serve in the foreground until SIGTERM or SIGINT."""
    run_until_signalled(lambda: serve(settings), name="apiserver")
