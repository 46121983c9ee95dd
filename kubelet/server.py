"""The ``kubelab kubelet`` process: one node, or ``--hollow --count N`` simulated nodes.

``serve(settings)`` runs until cancelled (tests embed it); ``run(settings)`` is the blocking
entry point the CLI calls, stopping cleanly on SIGTERM/SIGINT. The work is done by
:class:`kubelet.hollow.KubeletGroup`; this module only owns the process: the API client, the
event recorders, start-up and shutdown.

Without ``--hollow`` the node is real (:func:`_real_node`): a ``DockerRuntime`` on the cluster's
pod network giving pods IPs from the node's ``spec.podCIDR`` (:mod:`kubelet.network.ipam`),
:class:`~kubelet.sync.PodFeatures` (volumes, env, probes, hooks, pod DNS from
``resolv_conf_for_pod``), node status from the host (cpu count, ``/proc/meminfo``, images, the
runtime version, the kubelet server port), the HTTPS streaming server (logs, exec, attach,
port-forward; Docker streams limited to this node's containers of this cluster, listening on the
node's InternalIP: its own address on the pod network's bridge (:mod:`kubelet.network.node_address`),
which the apiserver dials; probes may reach the pod's IP, loopback and the pod network only, through
``machinery.netguard``), and in the network-agent role the ``ServiceProxy``, the
``NetworkPolicyAgent`` and (``run_dns``) ``ClusterDNS``. ``kubelab up`` gives both roles to one node
only: the nodes of a laptop cluster share the host's netfilter. With ``--hollow`` the group serves the
hollow nodes' kubelet endpoints itself, on their loopback addresses (``kubelet.hollow_endpoints``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kubelet.docker_streams import DockerStreams
from kubelet.envvars import NodeAllocatable
from kubelet.hollow import KubeletGroup, NodeHandle
from kubelet.node import NodeAgent
from kubelet.podfeatures import EventSink, PodFeatures
from kubelet.prober import ProbeManager
from kubelet.runtime.docker_spec import (
    LABEL_ATTEMPT,
    LABEL_CLUSTER,
    LABEL_CONTAINER,
    LABEL_NAMESPACE,
    LABEL_NODE,
    LABEL_POD_NAME,
)
from kubelet.runtime.interface import ContainerNotFoundError, ContainerRuntime, Prober
from kubelet.settings import KubeletSettings
from machinery.client.events import EventRecorder
from machinery.client.rest import ApiClient
from machinery.netguard import AllowedNetworks

if TYPE_CHECKING:
    from kubelet.network.node_address import NodeNetwork

__all__ = ["HostNodeAgent", "RealKubeletGroup", "host_memory", "run", "serve"]

log = logging.getLogger(__name__)


def host_memory(path: Path = Path("/proc/meminfo")) -> str:
    """``MemTotal`` of the host as a quantity (``8Gi`` when unreadable)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1])}Ki"
    except (OSError, ValueError, IndexError):
        pass
    return "8Gi"


class HostNodeAgent(NodeAgent):
    """A node agent whose status also carries the kubelet port and the runtime's images."""

    port = 10250
    images: list[dict[str, Any]] = []

    def status(self, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        status = super().status(previous)
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.port}}
        status["nodeInfo"]["osImage"] = "kubelab on Docker"
        if self.images:
            status["images"] = self.images
        return status


class RealKubeletGroup(KubeletGroup):
    """A :class:`KubeletGroup` whose nodes run real containers with the pod-level features."""

    def __init__(self, client: ApiClient, settings: KubeletSettings, *,
                 runtime_factory: Callable[[str, str], tuple[ContainerRuntime, Prober]],
                 events_factory: Callable[[str], EventSink | None] | None = None,
                 dns: Callable[[dict[str, Any]], tuple[list[str], list[str], list[str]]] | None = None) -> None:
        self._dns = dns
        self._probe_managers: list[ProbeManager] = []
        super().__init__(client, settings, runtime_factory=runtime_factory, events_factory=events_factory)

    def _make_node(self, name: str, index: int) -> NodeHandle:
        handle = super()._make_node(name, index)
        s, syncer = self.settings, handle.syncer
        features = PodFeatures.for_client(
            self.client, handle.runtime, s.root_dir / name,
            on_change=lambda uid: self._probe_changed(syncer.key_of(uid)), events=syncer._events,
            probe_time_scale=s.probe_time_scale, allocatable=NodeAllocatable(cpu=s.cpu, memory=s.memory),
            dns=self._dns)
        syncer.features, syncer.prober = features, features.probes
        features.probes.allowed_networks = AllowedNetworks.of([s.pod_subnet])
        self._probe_managers.append(features.probes)
        agent = HostNodeAgent(self.client, handle.agent.config, writes=self._writes)
        handle.agent = agent
        return handle

    async def stop(self) -> None:
        """Stop the nodes, then their probe workers (they would keep probing otherwise)."""
        await super().stop()
        for probes in self._probe_managers:
            await probes.close()

    def _probe_changed(self, key: str | None) -> None:
        if key is not None:
            self.workers.update(key)


async def serve(settings: KubeletSettings, *, started: asyncio.Event | None = None) -> None:
    """Run the nodes of ``settings`` until cancelled."""
    client = ApiClient.from_kubeconfig(settings.kubeconfig, user_agent="kubelab-kubelet", qps=settings.qps,
                                       burst=int(settings.qps * 2))
    recorders: list[EventRecorder] = []

    def events_for(node: str) -> EventSink | None:
        if not settings.emit_events:
            return None
        recorder = EventRecorder(client, component="kubelet", host=node)
        recorders.append(recorder)
        return recorder

    cleanups: list[Callable[[], Any]] = []
    group = KubeletGroup(client, settings, events_factory=events_for) if settings.hollow else \
        await _real_node(client, settings, events_for, cleanups)
    try:
        await group.start()
        log.info("kubelet running %d node(s): %s", len(group.nodes), ", ".join(list(group.nodes)[:5]))
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        await group.stop()
        for cleanup in reversed(cleanups):
            with contextlib.suppress(Exception):
                await cleanup()
        for recorder in recorders:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(recorder.close(), 2.0)
        await client.close()


def run(settings: KubeletSettings) -> None:
    """Serve in a fresh event loop until SIGTERM or SIGINT."""

    async def main() -> None:
        task = asyncio.create_task(serve(settings), name="kubelet")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


async def _real_node(client: ApiClient, settings: KubeletSettings, events_for: Callable[[str], EventSink | None],
                     cleanups: list[Callable[[], Any]]) -> KubeletGroup:
    """Build the Docker-backed node and start what it serves (see the module docstring)."""
    import docker

    from kubelet.network import ClusterDNS, ServiceProxy, host_upstream, resolv_conf_for_pod
    from kubelet.network.node_address import node_addresses_block
    from kubelet.runtime.docker import DockerRuntime, DockerRuntimeSettings

    docker_client = await asyncio.to_thread(docker.from_env)
    place, gateway = await asyncio.to_thread(_node_place, docker_client, settings)
    runtime = DockerRuntime(docker_client, DockerRuntimeSettings(
        cluster=settings.cluster_name, node_name=settings.node_name, pod_subnet=settings.pod_subnet,
        pod_cidr=place.pod_cidr))
    await runtime.start()
    cleanups.append(runtime.close)

    # Pods resolve through the kube-dns ClusterIP, as on Kubernetes (--cluster-dns); the service proxy
    # DNATs it to the cluster DNS listening on the node (dns_ip), which is the fallback.
    cluster_dns = await _cluster_dns_ip(client) if settings.dns_ip else ""

    def dns_for(pod: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
        policy = (pod.get("spec") or {}).get("dnsPolicy") or "ClusterFirst"
        if not settings.dns_ip or policy not in ("ClusterFirst", "ClusterFirstWithHostNet"):
            return [], [], []
        conf = resolv_conf_for_pod(str(pod["metadata"].get("namespace") or "default"),
                                   cluster_dns or settings.dns_ip)
        return list(conf.nameservers), list(conf.searches), list(conf.options)

    settings.cpu = str(os.cpu_count() or 1)
    settings.memory = host_memory()
    # cast: DockerRuntime is being completed (exec_sync) in parallel; drop it once it conforms.
    node_runtime = cast(ContainerRuntime, runtime)
    group_ = RealKubeletGroup(client, settings, runtime_factory=lambda _n, _c: (node_runtime, _NoProber()),
                              events_factory=events_for, dns=dns_for)
    handle = group_.nodes[settings.node_name]
    agent = handle.agent
    assert isinstance(agent, HostNodeAgent)
    agent.config.host_ip, agent.config.pod_cidr = place.ip, place.pod_cidr
    images = await asyncio.to_thread(docker_client.images.list)
    agent.images = [{"names": [*i.tags, i.id], "sizeBytes": int(i.attrs.get("Size") or 0)}
                    for i in images if i.tags]
    handle.syncer.host_ip = agent.config.host_ip
    if place.ip != gateway:
        from kubelet.network.node_address import bridge_interface, keep_node_address
        from kubelet.runtime.docker_network import network_name

        def bridge() -> str:
            return bridge_interface(docker_client.api.inspect_network(network_name(settings.cluster_name)))
        keeper = asyncio.create_task(keep_node_address(bridge, place.ip), name=f"node-address {settings.node_name}")
        cleanups.append(lambda: _cancel(keeper))
    if settings.pki_dir is not None:
        from kubelet.httpserver import kubelet_server_tls, start_kubelet_server
        from kubelet.stats import DockerStats
        from machinery.pki import ClusterPki

        tls = kubelet_server_tls(ClusterPki.at(settings.pki_dir), hosts=["127.0.0.1", agent.config.host_ip],
                                 cert_dir=settings.root_dir / settings.node_name)
        # The apiserver dials the node's InternalIP (its own address on the pod network's bridge).
        runner, port = await start_kubelet_server(
            _NodeDockerStreams(docker_client, cluster=settings.cluster_name, node=settings.node_name,
                               allowed=AllowedNetworks.of([settings.pod_subnet])),
            node_name=settings.node_name, host=agent.config.host_ip, port=settings.server_port, tls=tls,
            pod_lookup=lambda ns, name: group_.informer.store.get(f"{ns}/{name}"),
            stats=DockerStats(docker_client, cluster=settings.cluster_name, node=settings.node_name))
        agent.port = port
        cleanups.append(runner.cleanup)
    else:
        log.warning("node %s: no pki_dir, kubelet HTTPS server (logs/exec) not started", settings.node_name)
    if settings.network_agent:
        proxy = ServiceProxy(client, cluster=settings.cluster_name, node_ip=agent.config.host_ip,
                             cluster_cidr=settings.pod_subnet)
        task = asyncio.create_task(proxy.run(), name=f"service-proxy {settings.node_name}")
        cleanups.append(proxy.stop)
        cleanups.append(lambda: _cancel(task))
        from kubelet.network.netpol import NetworkPolicyAgent

        node_ips = tuple(ip for ip in dict.fromkeys((gateway, agent.config.host_ip,
                                                      node_addresses_block(settings.pod_subnet))) if ip)
        policies = NetworkPolicyAgent(client, cluster=settings.cluster_name, node_ips=node_ips)
        policy_task = asyncio.create_task(policies.run(), name=f"network-policies {settings.node_name}")
        cleanups.append(policies.stop)
        cleanups.append(lambda: _cancel(policy_task))
    if settings.run_dns:
        dns = ClusterDNS(client, listen=(settings.dns_ip or "127.0.0.1", settings.dns_port),
                         upstream=host_upstream())
        await dns.start()
        cleanups.append(dns.stop)
    return group_


async def _cluster_dns_ip(client: ApiClient) -> str:
    """The ClusterIP of ``kube-system/kube-dns`` ("" when there is none or the apiserver does not answer)."""
    from machinery.errors import ApiError
    from machinery.resources import SERVICES

    for attempt in range(10):
        try:
            service = await asyncio.wait_for(client.get(SERVICES, "kube-dns", namespace="kube-system"), 10)
            ip = str((service.get("spec") or {}).get("clusterIP") or "")
            return "" if ip == "None" else ip
        except ApiError as exc:
            if exc.code == 404:
                return ""
            log.warning("cannot read kube-system/kube-dns (attempt %d): %s", attempt + 1, exc)
        except (OSError, TimeoutError) as exc:
            log.warning("cannot read kube-system/kube-dns (attempt %d): %s", attempt + 1, exc)
        await asyncio.sleep(1.0)
    return ""


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class _NodeDockerStreams(DockerStreams):
    """Logs, exec, attach and port-forward over Docker, limited to this node's containers of this
    cluster (clusters share the engine); port-forward dials the pod network only."""

    def __init__(self, client: Any, *, cluster: str, node: str, allowed: AllowedNetworks) -> None:
        super().__init__(client, allowed=allowed)
        self._scope = [f"{LABEL_CLUSTER}={cluster}", f"{LABEL_NODE}={node}"]

    def _find(self, namespace: str, pod: str, container: str, *, previous: bool) -> Any:
        found = self._client.containers.list(all=True, filters={"label": [
            *self._scope, f"{LABEL_NAMESPACE}={namespace}", f"{LABEL_POD_NAME}={pod}",
            f"{LABEL_CONTAINER}={container}"]}, ignore_removed=True)
        attempts = sorted(found, key=lambda c: int(c.labels.get(LABEL_ATTEMPT, "0") or 0))
        if previous:
            attempts = [c for c in attempts[:-1] if c.status != "running"]
        if not attempts:
            what = "previous terminated container" if previous else "container"
            raise ContainerNotFoundError(f'{what} "{container}" in pod "{pod}" not found')
        return attempts[-1]


class _NoProber:
    """Placeholder replaced by the node's ProbeManager in :meth:`RealKubeletGroup._make_node`."""

    def is_ready(self, pod: dict[str, Any], status: Any) -> bool:
        return True


def _node_place(docker_client: Any, settings: KubeletSettings) -> tuple[NodeNetwork, str]:
    """This node's InternalIP and pod CIDR (the settings', else its slot's; see
    :mod:`kubelet.network.node_address`) with the InternalIP on the bridge, and the bridge's gateway.

    The pod network is created first when missing; ``settings.pod_subnet`` becomes its real subnet (an
    existing network keeps its own). Without the right to add an address (no ``NET_ADMIN``) the node
    reports the gateway as its InternalIP, as every node then must."""
    from kubelet.network.node_address import (
        NodeAddressError,
        NodeNetwork,
        bridge_interface,
        ensure_node_address,
        node_network,
    )
    from kubelet.runtime.docker_network import ensure_network, network_name

    ensure_network(docker_client, cluster=settings.cluster_name, subnet=settings.pod_subnet)
    attrs = docker_client.api.inspect_network(network_name(settings.cluster_name))
    config: dict[str, Any] = next((c for c in (attrs.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")), {})
    subnet = ipaddress.IPv4Network(str(config.get("Subnet") or settings.pod_subnet))
    settings.pod_subnet = str(subnet)
    gateway = str(config.get("Gateway") or next(subnet.hosts()))
    place = NodeNetwork(ip=settings.node_ip, pod_cidr=settings.pod_cidr)
    if not place.ip or not place.pod_cidr:
        slot = node_network(str(subnet), settings.node_index_offset + 1)
        place = NodeNetwork(ip=place.ip or slot.ip, pod_cidr=place.pod_cidr or slot.pod_cidr)
    for what, value in (("node IP", place.ip), ("pod CIDR", place.pod_cidr)):
        if not ipaddress.IPv4Network(value).subnet_of(subnet):
            raise ValueError(f"node {settings.node_name}: {what} {value} is outside the pod network {subnet}")
    try:
        ensure_node_address(bridge_interface(attrs), place.ip)
    except NodeAddressError as exc:
        log.error("node %s: cannot add its address %s to the pod network's bridge (%s); reporting the "
                  "gateway %s as InternalIP", settings.node_name, place.ip, exc, gateway)
        place = NodeNetwork(ip=gateway, pod_cidr=place.pod_cidr)
    log.info("node %s: InternalIP %s, pod CIDR %s on pod network %s", settings.node_name, place.ip,
             place.pod_cidr, subnet)
    return place, gateway
