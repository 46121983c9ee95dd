"""The kubelet endpoints of hollow nodes: simulated logs, and a clear refusal of the rest.

``kubelet.hollow.KubeletGroup`` starts one :class:`HollowEndpoints` per hollow kubelet process
when it has the cluster PKI. Every hollow node has its own loopback address
(``kubelet.settings.HOLLOW_NODE_NETWORK``); the process serves them all cheaply:

* ONE aiohttp application and runner (``kubelet.httpserver.make_nodes_app``), ONE TLS context
  with ONE serving certificate from the cluster CA naming every node address;
* per node ONE listening socket: a site on the node's address and an ephemeral port (several
  hollow clusters run side by side in tests), which the node reports in
  ``status.daemonEndpoints.kubeletEndpoint.Port`` for the apiserver to dial. The soft open-file
  limit is raised when it leaves too little room (measured: 1,000 nodes listen in about 1 s
  with 1,000 descriptors).

What a hollow node answers (:class:`HollowStreams` over the node's fake runtime):

* ``containerLogs`` -- the container's simulated output (``kubelet.runtime.fake.SimulatedOutput``:
  a line when it started, one when it exited), with Kubernetes' ``follow``, ``previous``,
  ``tailLines``, ``timestamps``, ``sinceSeconds`` and ``limitBytes``;
* ``exec`` -- a channel-3 ``BadRequest`` Status; ``attach`` and ``portForward`` -- a 400
  ``BadRequest`` Status: hollow pods run no processes;
* ``stats/summary`` -- simulated usage (``kubelet.stats.SimulatedStats``; the pods' annotations
  ``kubelab.dev/fake-cpu`` and ``kubelab.dev/fake-memory`` set it).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from aiohttp import web

from kubelet.httpserver import PodLookup, kubelet_server_tls, make_nodes_app, start_kubelet_sites
from kubelet.portforward import PortForwardRefused
from kubelet.runtime.fake import FakeRuntime
from kubelet.runtime.interface import ContainerNotFoundError, ContainerState
from kubelet.stats import SimulatedStats
from kubelet.streams import ExecSession, LogOptions, StreamSource, UnsupportedStreamError, read_log
from machinery.pki import ClusterPki

__all__ = ["HollowEndpoints", "HollowStreams", "no_processes"]

log = logging.getLogger(__name__)


def no_processes(node: str) -> str:
    """Why a hollow node cannot exec, attach or port-forward."""
    return f"pods of hollow node {node} run no processes (their containers are simulated)"


class HollowStreams:
    """A :class:`~kubelet.streams.StreamSource` over one hollow node's fake runtime."""

    def __init__(self, runtime: FakeRuntime, node: str) -> None:
        self.runtime = runtime
        self.node = node

    async def logs(self, namespace: str, pod: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        attempts = self.runtime.attempts(namespace, pod, container)
        if options.previous:
            attempts = [a for a in attempts[:-1] if a.state is ContainerState.EXITED]
        if not attempts:
            what = "previous terminated container" if options.previous else "container"
            raise ContainerNotFoundError(f'{what} "{container}" in pod "{pod}" not found')
        return read_log(self.runtime.output(attempts[-1].id), options)

    async def exec(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                   stdin: bool, tty: bool) -> ExecSession:
        raise UnsupportedStreamError(f"cannot exec in {namespace}/{pod}/{container}: {no_processes(self.node)}")

    async def attach(self, namespace: str, pod: str, container: str, *, stdin: bool, tty: bool) -> ExecSession:
        raise UnsupportedStreamError(f"cannot attach to {namespace}/{pod}/{container}: {no_processes(self.node)}")

    async def dial(self, namespace: str, pod: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise PortForwardRefused(f"cannot forward port {port} of pod {namespace}/{pod}: {no_processes(self.node)}")


def _enough_file_descriptors(listeners: int) -> None:
    """One listening socket per node: raise the soft open-file limit (up to the hard one) so a
    thousand hollow nodes still leave room for connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = listeners + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        log.info("raised the open-file limit from %d to %d for %d hollow node listeners", soft, raised, listeners)


class HollowEndpoints:
    """The kubelet endpoints of many hollow nodes in one process (see the module docstring)."""

    def __init__(self, nodes: Mapping[str, tuple[str, FakeRuntime]], *, pod_lookup: PodLookup | None,
                 pki_dir: Path) -> None:
        """``nodes``: node name → (its address, its runtime)."""
        self._by_address: dict[str, tuple[str, StreamSource]] = {
            address: (name, HollowStreams(runtime, name)) for name, (address, runtime) in nodes.items()}
        self._addresses = {name: address for name, (address, _runtime) in nodes.items()}
        self._stats = {name: SimulatedStats(name, runtime, pod_lookup) for name, (_address, runtime) in nodes.items()}
        self._pod_lookup = pod_lookup
        self._pki_dir = pki_dir
        self._runner: web.AppRunner | None = None

    async def start(self) -> dict[str, int]:
        """Listen on every node's address; returns node name → bound port."""
        if not self._addresses:
            return {}
        hosts = sorted(self._by_address)
        _enough_file_descriptors(len(hosts))
        with tempfile.TemporaryDirectory(prefix="kubelab-hollow-tls-") as cert_dir:
            # The files only feed load_cert_chain: the key lives on in the TLS context, not on disk.
            tls = kubelet_server_tls(ClusterPki.at(self._pki_dir), hosts=hosts, cert_dir=Path(cert_dir))
        app = make_nodes_app(self._by_address.get, pod_lookup=self._pod_lookup, refusal=no_processes,
                             stats=self._stats.get)
        self._runner, ports = await start_kubelet_sites(app, hosts=hosts, tls=tls)
        log.info("serving the kubelet endpoints of %d hollow node(s) on their loopback addresses", len(ports))
        return {name: ports[address] for name, address in self._addresses.items()}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
