"""The resource metrics pipeline of the apiserver: scrape every kubelet, keep the latest samples.

Kubernetes runs metrics-server as an aggregated API server that scrapes each kubelet every 15 s
and answers ``metrics.k8s.io`` from memory. kubelab does the same inside the apiserver:
:class:`MetricsScraper` is one background task (named, guarded, started and stopped with the
application) that, every ``ApiServerSettings.metrics_resolution`` seconds, reads the nodes from
the watch cache and fetches ``GET /stats/summary`` from each node's kubelet endpoint
(``status.addresses`` InternalIP + ``daemonEndpoints.kubeletEndpoint.Port``, as ``pods/log``
does: the apiserver's kubelet-client certificate, the cluster CA, and only addresses
``machinery.netguard`` allows). Nodes are scraped concurrently (at most
:data:`MAX_CONCURRENT_SCRAPES` at once, each within ``timeout``). The answers replace the
previous ones node by node: a node that does not answer keeps no samples, so its node and pod
metrics disappear (metrics-server does the same), and a node that was deleted is forgotten.

Nothing is written to the store: ``apiserver.metrics_api`` serves what :attr:`nodes` and
:attr:`pods` hold. Usage is kept as Kubernetes prints it: CPU in nano-cores (``12345n``),
memory (the working set) in KiB (``2048Ki``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from apiserver.context import ApiContext
from apiserver.proxy import kubelet_client_ssl_context
from machinery.netguard import check_destination, guarded_connector
from machinery.resources import NODES

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MAX_CONCURRENT_SCRAPES = 64
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class NodeSample:
    """A node's usage at ``timestamp``."""

    name: str
    timestamp: str
    usage: dict[str, str]


@dataclass(frozen=True)
class PodSample:
    """A pod's per-container usage at ``timestamp``."""

    namespace: str
    name: str
    node: str
    timestamp: str
    containers: tuple[tuple[str, dict[str, str]], ...]


def go_duration(seconds: float) -> str:
    """``15s``, ``1.5s``, ``1m0s`` -- how metrics-server writes its window."""
    if seconds >= 60 and float(seconds).is_integer():
        return f"{int(seconds) // 60}m{int(seconds) % 60}s"
    return f"{seconds:g}s"


def _usage(cpu: Obj | None, memory: Obj | None) -> dict[str, str] | None:
    if not cpu or not memory or cpu.get("usageNanoCores") is None or memory.get("workingSetBytes") is None:
        return None
    return {"cpu": f"{int(cpu['usageNanoCores'])}n", "memory": f"{int(memory['workingSetBytes']) // 1024}Ki"}


def parse_summary(node: str, summary: Obj) -> tuple[NodeSample | None, list[PodSample]]:
    """The samples of one Summary API document (pods with a container lacking data are left out)."""
    node_stats = summary.get("node") or {}
    usage = _usage(node_stats.get("cpu"), node_stats.get("memory"))
    node_sample = None
    if usage is not None:
        node_sample = NodeSample(node, str((node_stats.get("cpu") or {}).get("time") or ""), usage)
    pods: list[PodSample] = []
    for pod in summary.get("pods") or []:
        ref = pod.get("podRef") or {}
        containers: list[tuple[str, dict[str, str]]] = []
        complete = True
        timestamp = ""
        for c in pod.get("containers") or []:
            container_usage = _usage(c.get("cpu"), c.get("memory"))
            if container_usage is None:
                complete = False
                break
            containers.append((str(c.get("name", "")), container_usage))
            timestamp = max(timestamp, str((c.get("cpu") or {}).get("time") or ""))
        if complete and containers:
            pods.append(PodSample(str(ref.get("namespace", "")), str(ref.get("name", "")), node, timestamp,
                                  tuple(sorted(containers))))
    return node_sample, pods


class MetricsScraper:
    """Scrapes every kubelet's ``/stats/summary`` (see the module docstring)."""

    def __init__(self, ctx: ApiContext, *, resolution: float, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.ctx = ctx
        self.resolution = resolution
        self.timeout = min(timeout, max(resolution, 1.0))
        self.nodes: dict[str, NodeSample] = {}
        self.pods: dict[tuple[str, str], PodSample] = {}
        self.scrapes = 0
        """Completed rounds (tests wait on it)."""
        self.round_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ssl: ssl.SSLContext | None = None

    @property
    def window(self) -> str:
        return go_duration(self.resolution)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-scraper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await self.ctx.caches.ready.wait()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.scrape_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("metrics scrape failed; trying again in %.0f s", self.resolution)
            await asyncio.sleep(max(self.resolution - (loop.time() - started), 0.1))

    async def scrape_once(self) -> None:
        """One round over every node."""
        nodes = list(self.ctx.caches.get(NODES).decoded())
        if nodes and self._ssl is None:
            self._ssl = await asyncio.to_thread(kubelet_client_ssl_context, self.ctx.settings.pki_dir)
        limit = asyncio.Semaphore(MAX_CONCURRENT_SCRAPES)
        connector = guarded_connector(self.ctx.settings.dial_networks, ssl=self._ssl,
                                      limit=MAX_CONCURRENT_SCRAPES)
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 5.0))
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            results = await asyncio.gather(*(self._scrape(session, limit, node) for node in nodes))
        node_samples: dict[str, NodeSample] = {}
        pod_samples: dict[tuple[str, str], PodSample] = {}
        for name, (node_sample, pods) in zip((n["metadata"]["name"] for n in nodes), results, strict=True):
            if node_sample is not None:
                node_samples[name] = node_sample
            for pod in pods:
                pod_samples[(pod.namespace, pod.name)] = pod
        self.nodes, self.pods = node_samples, pod_samples
        self.scrapes += 1
        self.round_done.set()
        self.round_done = asyncio.Event()

    async def _scrape(self, session: aiohttp.ClientSession, limit: asyncio.Semaphore,
                      node: Obj) -> tuple[NodeSample | None, list[PodSample]]:
        name = str(node["metadata"]["name"])
        status = node.get("status") or {}
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0
        address = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"),
                       None)
        if not port or not address:
            return None, []
        try:
            checked = check_destination(str(address), self.ctx.settings.dial_networks,
                                        what=f"the kubelet of node {name}")
        except Exception as err:
            log.info("not scraping node %s: %s", name, err)
            return None, []
        host = f"[{checked}]" if checked.version == 6 else str(checked)
        async with limit:
            try:
                async with session.get(f"https://{host}:{int(port)}/stats/summary") as resp:
                    if resp.status != 200:
                        log.info("node %s: /stats/summary answered %d", name, resp.status)
                        return None, []
                    summary = orjson.loads(await resp.read())
            except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError) as err:
                log.info("node %s: cannot read /stats/summary: %s", name, err)
                return None, []
        return parse_summary(name, summary)
