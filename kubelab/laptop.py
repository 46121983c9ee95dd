"""The Docker side of the laptop cluster: identity, pre-flight, pod network, DNS readiness, cleanup.

Called by ``kubelab up --nodes N`` and ``kubelab down`` (:mod:`kubelab.cluster_up`, :mod:`kubelab.cluster_down`)
and by the Docker e2e tests. Guarantees:

* :func:`cluster_name` is derived from the state directory only, so it is stable across ``up`` /
  ``down`` and two clusters (e.g. a user's and a test's) never share Docker labels, the pod network
  ``kubelab-<cluster>`` or iptables chains ``KUBELAB-<cluster>-…``; the default state dir gives the
  name ``kubelab``. :func:`default_pod_subnet` and :func:`default_service_cidr` likewise give other
  clusters their own address ranges;
* :func:`docker_problem` never installs or starts anything: it returns the exact commands to run;
* :func:`cleanup` removes only objects labelled with (or chains named after) this cluster.

The docker SDK is imported lazily: ``kubelab down`` on a machine without Docker still works.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_CLUSTER",
    "DNS_PORT",
    "CleanupReport",
    "cleanup",
    "cluster_name",
    "default_pod_subnet",
    "default_service_cidr",
    "dns_answers",
    "docker_client",
    "docker_problem",
    "ensure_pod_network",
    "wait_dns",
]

DEFAULT_CLUSTER = "kubelab"
"""The cluster name of the default state directory (``~/.kubelab``)."""
DNS_PORT = 53
DOCKER_HELP = (
    "kubelab up runs its nodes on Docker, and the Docker engine is not reachable ({why}).\n"
    "Install and start it (as root), then run kubelab up again:\n"
    "  apt-get install -y docker.io\n"
    "  dockerd > /var/log/dockerd.log 2>&1 &\n"
    "(or `kubelab up --hollow-nodes N` for a cluster of simulated nodes without Docker)"
)


def _digest(state_dir: Path) -> bytes:
    return hashlib.sha256(str(state_dir.expanduser().resolve()).encode()).digest()


def cluster_name(state_dir: Path) -> str:
    """``kubelab`` for ``~/.kubelab``, else ``kl`` + 6 hex digits of the state dir's path (8 characters:
    chain names keep it verbatim, see :func:`kubelet.network.iptables_rules.cluster_tag`)."""
    if state_dir.expanduser().resolve() == (Path.home() / ".kubelab").resolve():
        return DEFAULT_CLUSTER
    return "kl" + _digest(state_dir).hex()[:6]


def _slice(base: str, prefix: int, state_dir: Path, taken: Iterable[str] = ()) -> str:
    """The ``prefix`` slice of ``base`` the state dir hashes to, or the next one overlapping none of ``taken``."""
    subnets = list(ipaddress.IPv4Network(base).subnets(new_prefix=prefix))
    used = [net for net in (ipaddress.ip_network(cidr, strict=False) for cidr in taken)
            if isinstance(net, ipaddress.IPv4Network)]
    start = int.from_bytes(_digest(state_dir)[:4], "big") % len(subnets)
    for step in range(len(subnets)):
        candidate = subnets[(start + step) % len(subnets)]
        if not any(candidate.overlaps(other) for other in used):
            return str(candidate)
    return str(subnets[start])  # all taken: Docker's "overlaps" error names the problem


def default_pod_subnet(state_dir: Path, taken: Iterable[str] = ()) -> str:
    """``10.244.0.0/16`` for the default cluster, else a /20 of ``10.224.0.0/12`` picked by the state dir,
    skipping slices that overlap ``taken`` (the subnets of existing Docker networks: another cluster's)."""
    if cluster_name(state_dir) == DEFAULT_CLUSTER:
        return "10.244.0.0/16"
    return _slice("10.224.0.0/12", 20, state_dir, taken)


def docker_subnets(client: Any) -> list[str]:
    """The IPAM subnets of every Docker network on this engine."""
    subnets: list[str] = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if config.get("Subnet"):
                subnets.append(str(config["Subnet"]))
    return subnets


def default_service_cidr(state_dir: Path) -> str:
    """``10.96.0.0/12`` for the default cluster, else a /20 of ``10.112.0.0/12`` picked by the state dir."""
    if cluster_name(state_dir) == DEFAULT_CLUSTER:
        return "10.96.0.0/12"
    return _slice("10.112.0.0/12", 20, state_dir)


def docker_client(timeout: int = 600) -> Any:
    """A pinged ``docker.DockerClient`` (raises ``docker.errors.DockerException`` or ImportError)."""
    import docker

    client = docker.from_env(timeout=timeout)
    try:
        client.ping()
    except Exception:
        client.close()
        raise
    return client


def docker_problem() -> str | None:
    """None when the Docker engine answers, else what to run to get one (nothing is installed here)."""
    try:
        client = docker_client(timeout=5)
    except ImportError as exc:
        return DOCKER_HELP.format(why=f"the docker Python package is missing: {exc}")
    except Exception as exc:
        return DOCKER_HELP.format(why=str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__)
    client.close()
    return None


def ensure_pod_network(client: Any, cluster: str, pod_subnet: str) -> tuple[str, str]:
    """Create the cluster's pod network if missing (as the kubelets would); return (subnet, gateway).

    An existing network keeps its subnet (a previous ``up`` made it), and its gateway is returned.
    """
    import asyncio

    from kubelet.runtime.docker import DockerRuntime, DockerRuntimeSettings, network_name

    runtime = DockerRuntime(client, DockerRuntimeSettings(cluster=cluster, node_name="kubelab-up",
                                                          pod_subnet=pod_subnet))
    asyncio.run(runtime.ensure_network())
    network = client.networks.get(network_name(cluster))
    for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
        if config.get("Subnet"):
            subnet = str(config["Subnet"])
            gateway = str(config.get("Gateway") or next(ipaddress.ip_network(subnet).hosts()))
            return subnet, gateway
    raise RuntimeError(f"pod network {network.name} has no IPv4 subnet")


def dns_answers(ip: str, port: int = DNS_PORT, name: str = "kubernetes.default.svc.cluster.local",
                timeout: float = 1.0) -> bool:
    """True when a DNS server at ``ip:port`` answers an A query for ``name`` (any response code)."""
    from dnslib import DNSRecord

    query = DNSRecord.question(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query.pack(), (ip, port))
            data, _ = sock.recvfrom(4096)
        except OSError:
            return False
    try:
        return bool(DNSRecord.parse(data).header.id == query.header.id)
    except Exception:
        return False


def wait_dns(ip: str, port: int = DNS_PORT, *, timeout: float = 30.0,
             alive: Callable[[], bool] | None = None) -> bool:
    """Poll :func:`dns_answers` until it is True (→ True) or ``timeout`` passes / ``alive()`` is False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dns_answers(ip, port, timeout=0.5):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.1)
    return False


@dataclass
class CleanupReport:
    """What :func:`cleanup` removed, and what it could not do."""

    containers: int = 0
    networks: int = 0
    chains: int = 0
    problems: list[str] | None = None

    def lines(self, cluster: str) -> list[str]:
        out = [f"removed {self.containers} container(s) and {self.networks} network(s) of cluster {cluster}",
               f"removed {self.chains} iptables chain(s) KUBELAB-{_tag(cluster)}-*"]
        return out + [f"warning: {p}" for p in self.problems or []]


def _tag(cluster: str) -> str:
    from kubelet.network.iptables_rules import cluster_tag

    return cluster_tag(cluster)


def _count_chains(prefix: str) -> int:
    import subprocess

    total = 0
    for table in ("filter", "nat"):
        try:
            out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, timeout=30,
                                 check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return 0
        total += sum(1 for line in out.splitlines() if line.startswith(f":{prefix}-"))
    return total


def cleanup(cluster: str) -> CleanupReport:
    """Remove every container and network labelled with ``cluster``, then its iptables chains and jumps."""
    report = CleanupReport(problems=[])
    assert report.problems is not None
    try:
        client = docker_client(timeout=120)
    except Exception as exc:
        report.problems.append(f"Docker not reachable, containers/networks not checked: {exc}")
    else:
        from kubelet.runtime.docker import cleanup_cluster

        try:
            report.containers, report.networks = cleanup_cluster(client, cluster)
        except Exception as exc:
            report.problems.append(f"Docker cleanup failed: {exc}")
        finally:
            client.close()
    from kubelet.network.iptables_rules import ChainNames
    from kubelet.network.netpol import NetworkPolicyAgent
    from kubelet.network.proxy import IptablesError, ServiceProxy

    before = _count_chains(ChainNames(cluster).prefix)
    try:
        NetworkPolicyAgent(None, cluster=cluster).cleanup()  # its FORWARD jump first: chains in use stay
        ServiceProxy(None, cluster=cluster, node_ip="127.0.0.1").cleanup()
    except (IptablesError, OSError) as exc:
        report.problems.append(f"iptables cleanup failed: {exc}")
    report.chains = before - _count_chains(ChainNames(cluster).prefix)
    return report
