"""One kubelet process running one node or many (hollow) nodes: the shared machinery.

``kubelet.server.serve`` builds a :class:`KubeletGroup`; tests build one directly. The group
owns what the nodes of one process share, so a thousand hollow nodes stay cheap:

* ONE :class:`~machinery.client.rest.ApiClient`;
* ONE pod informer — for a single node it watches ``spec.nodeName=<node>`` only, for many it
  watches every pod and routes each event by ``spec.nodeName`` to the node's syncer;
* ONE :class:`~kubelet.podworkers.PodWorkers` (one serialized worker per pod, bounded
  concurrency across the process) and one write semaphore for node heartbeats;
* per node: a :class:`~kubelet.node.NodeAgent` task, a :class:`~kubelet.sync.PodSyncer` and a
  runtime (the fake one for hollow nodes; ``runtime_factory`` plugs in another).

Node ``i`` (0-based, plus ``node_index_offset``) gets pod CIDR ``/24`` number ``i`` of the
settings' pod CIDR range. Hollow nodes live on loopback: host IP (InternalIP) ``127.200.0.0 + i + 1``
(``kubelet.settings.HOLLOW_NODE_NETWORK``), pod IPs from ``127.128.0.0/12``; with the cluster PKI
(``settings.pki_dir``) the process serves their kubelet endpoints on those addresses
(:class:`~kubelet.hollow_endpoints.HollowEndpoints`, ephemeral ports reported in each Node's
``daemonEndpoints``), without it they report port 0 and ``kubectl logs`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelet.hollow_endpoints import HollowEndpoints
from kubelet.node import NodeAgent, NodeConfig
from kubelet.podfeatures import EventSink
from kubelet.podworkers import PodWorkers
from kubelet.runtime.fake import FakeRuntime, FakeRuntimeSettings
from kubelet.runtime.interface import ContainerRuntime, Prober, RuntimeEvent
from kubelet.settings import HOLLOW_NODE_NETWORK, KubeletSettings
from kubelet.sync import CrashLoopBackoff, PodSyncer
from machinery.client.informer import SharedInformer
from machinery.client.rest import ApiClient
from machinery.meta import object_key
from machinery.resources import PODS

__all__ = ["KubeletGroup", "NodeHandle", "RuntimeFactory", "host_ip_for", "pod_cidr_for"]

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[str, str], tuple[ContainerRuntime, Prober]]
"""(node name, pod CIDR) → the node's runtime and prober."""

_HOLLOW_NODES = ipaddress.ip_network(HOLLOW_NODE_NETWORK)


def pod_cidr_for(base: str, index: int) -> str:
    """The ``index``-th /24 of ``base`` (ValueError when ``base`` has no room for it)."""
    network = ipaddress.ip_network(base)
    if network.prefixlen > 24 or index >= 2 ** (24 - network.prefixlen):
        raise ValueError(f"pod CIDR {base} has no /24 number {index}")
    return f"{network.network_address + index * 256}/24"


def host_ip_for(settings: KubeletSettings, index: int) -> str:
    """Node ``index``'s InternalIP: its own loopback address when hollow, else 127.0.0.1."""
    if not settings.hollow:
        return "127.0.0.1"
    if not 0 <= index < _HOLLOW_NODES.num_addresses - 2:
        raise ValueError(f"hollow node index {index} does not fit in {HOLLOW_NODE_NETWORK}")
    return str(_HOLLOW_NODES.network_address + index + 1)


@dataclass
class NodeHandle:
    """Everything one node of the group has."""

    name: str
    agent: NodeAgent
    syncer: PodSyncer
    runtime: ContainerRuntime
    task: asyncio.Task[None] | None = None


class KubeletGroup:
    """The nodes of one kubelet process, sharing a client, a pod informer and pod workers."""

    def __init__(
        self,
        client: ApiClient,
        settings: KubeletSettings,
        *,
        runtime_factory: RuntimeFactory | None = None,
        events_factory: Callable[[str], EventSink | None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.workers = PodWorkers(self._sync, concurrency=settings.write_concurrency)
        self._writes = asyncio.Semaphore(settings.write_concurrency)
        self._runtime_factory = runtime_factory or self._fake_runtime
        self._events_factory = events_factory or (lambda _node: None)
        self._pod_nodes: dict[str, str] = {}
        self.nodes: dict[str, NodeHandle] = {}
        self.endpoints: HollowEndpoints | None = None
        names = settings.node_names
        selector = f"spec.nodeName={names[0]}" if len(names) == 1 else ""
        self.informer = SharedInformer(client, PODS, field_selector=selector, resync_seconds=settings.sync_frequency)
        self.informer.add_handler(on_add=self._on_pod, on_update=lambda _old, new: self._on_pod(new),
                                  on_delete=self._on_pod_deleted)
        for index, name in enumerate(names):
            self.nodes[name] = self._make_node(name, index + settings.node_index_offset)

    def _fake_runtime(self, _node: str, pod_cidr: str) -> tuple[ContainerRuntime, Prober]:
        s = self.settings
        runtime = FakeRuntime(pod_cidr=pod_cidr, settings=FakeRuntimeSettings(
            start_delay=s.fake_start_delay, crash_after=s.fake_crash_after, stop_delay=s.fake_stop_delay))
        return runtime, runtime

    def _make_node(self, name: str, index: int) -> NodeHandle:
        s = self.settings
        pod_cidr = pod_cidr_for(s.pod_cidrs, index)
        host_ip = host_ip_for(s, index)
        runtime, prober = self._runtime_factory(name, pod_cidr)
        config = NodeConfig(
            name=name, host_ip=host_ip, pod_cidr=pod_cidr, runtime_version=runtime.version(), cpu=s.cpu,
            memory=s.memory, pods=s.pods, labels=dict(s.labels), taints=list(s.taints), hollow=s.hollow,
            lease_duration_seconds=s.lease_duration_seconds, lease_renew_interval=s.lease_renew_interval,
            status_report_frequency=s.node_status_report_frequency, kubelet_port=0 if s.hollow else 10250,
        )
        syncer = PodSyncer(
            self.client, runtime, prober, node_name=name, host_ip=host_ip,
            backoff=CrashLoopBackoff(base=s.crash_loop_base_delay, maximum=s.crash_loop_max_delay),
            requeue=self.workers.update_after, events=self._events_factory(name),
        )
        runtime.set_event_handler(lambda event: self._on_runtime_event(syncer, event))
        return NodeHandle(name=name, agent=NodeAgent(self.client, config, writes=self._writes), syncer=syncer,
                          runtime=runtime)

    # -- event routing --------------------------------------------------------------------
    def _on_pod(self, pod: dict[str, Any]) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in self.nodes:
            key = object_key(pod)
            self._pod_nodes[key] = node
            self.workers.update(key)

    def _on_pod_deleted(self, pod: dict[str, Any]) -> None:
        key = object_key(pod)
        if key in self._pod_nodes:
            self.workers.update(key)

    def _on_runtime_event(self, syncer: PodSyncer, event: RuntimeEvent) -> None:
        key = syncer.key_of(event.pod_uid)
        if key is not None:
            self.workers.update(key)

    async def _sync(self, key: str) -> None:
        node = self._pod_nodes.get(key)
        if node is None:
            return
        pod = self.informer.store.get(key)
        if pod is not None and (pod.get("spec") or {}).get("nodeName") != node:
            pod = None
        await self.nodes[node].syncer.sync(key, pod)
        if pod is None and self._pod_nodes.get(key) == node and not self._on_node(key, node):
            # A new pod of the same name bound while the old one was cleaned up keeps its entry.
            self._pod_nodes.pop(key, None)

    def _on_node(self, key: str, node: str) -> bool:
        """Whether the informer holds a pod ``key`` bound to ``node``."""
        pod = self.informer.store.get(key)
        return pod is not None and (pod.get("spec") or {}).get("nodeName") == node

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, *, timeout: float = 60.0) -> None:
        """Start every node's agent and the pod informer; once it has synced, remove runtime pods
        whose API pod is gone (a restarted kubelet over a persistent runtime). Hollow nodes'
        endpoints listen before the first Node status reports their ports."""
        if self.settings.hollow:
            await self._serve_hollow_endpoints()
        for handle in self.nodes.values():
            handle.task = asyncio.create_task(handle.agent.run(), name=f"node-agent {handle.name}")
            handle.task.add_done_callback(self._guard)
        await self.informer.start()
        await self.informer.wait_synced(timeout)
        for handle in self.nodes.values():
            live = {str(p["metadata"].get("uid")) for p in self.informer.store.list()
                    if (p.get("spec") or {}).get("nodeName") == handle.name}
            for uid in await handle.syncer.cleanup_orphans(live):
                log.info("node %s: removed the containers of deleted pod %s", handle.name, uid)

    async def _serve_hollow_endpoints(self) -> None:
        if self.settings.pki_dir is None:
            log.warning("hollow nodes serve no kubelet endpoints (logs) without the cluster PKI (--pki-dir)")
            return
        nodes = {name: (h.agent.config.host_ip, h.runtime) for name, h in self.nodes.items()
                 if isinstance(h.runtime, FakeRuntime)}
        self.endpoints = HollowEndpoints(nodes, pki_dir=self.settings.pki_dir,
                                         pod_lookup=lambda ns, name: self.informer.store.get(f"{ns}/{name}"))
        for name, port in (await self.endpoints.start()).items():
            self.nodes[name].agent.config.kubelet_port = port

    @staticmethod
    def _guard(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s died", task.get_name(), exc_info=task.exception())

    async def wait_registered(self, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            for handle in self.nodes.values():
                await handle.agent.registered.wait()

    async def stop(self) -> None:
        """Stop heartbeats, the informer, the pod workers and the hollow endpoints (containers of the
        fake vanish)."""
        tasks = [h.task for h in self.nodes.values() if h.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.informer.stop()
        await self.workers.close()
        if self.endpoints is not None:
            await self.endpoints.stop()
