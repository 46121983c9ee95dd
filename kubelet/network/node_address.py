"""Where each Docker node lives on the cluster's pod network: its InternalIP and its pod CIDR.

The nodes of a laptop cluster share one host, one Docker bridge (``kubelab-<cluster>``) and one pod
subnet. So that each still has an address of its own, as on kind or k3s, the subnet is laid out in
/24 blocks (:func:`node_network`)::

    10.244.0.0/16  (the cluster's pod subnet)
    ├── 10.244.0.0/24   the host's block: .1 the bridge gateway (cluster DNS, meshd),
    │                   .2 node slot 1's InternalIP, .3 slot 2's, ...
    ├── 10.244.1.0/24   node slot 1's spec.podCIDR (its pods' IPs)
    ├── 10.244.2.0/24   node slot 2's spec.podCIDR
    └── ...

A node's InternalIP is added to the bridge interface as an extra /32 address
(:func:`ensure_node_address`, ``ip -4 addr add``): the host answers on it, pods reach it on their
link (the host answers their ARP for every local address), the node's kubelet server listens there
and the apiserver dials it. ``kubelab down`` removes the network and with it the addresses. A
restarted Docker engine can bring the bridge back without the extra address: the kubelet checks it
every few seconds (:func:`keep_node_address`) and puts it back.

Called by ``kubelet.server`` (a Docker node's start) and ``kubelab up`` (the flags of each node).
Hollow nodes do not use this: they live on loopback (``kubelet.settings.HOLLOW_NODE_NETWORK``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NodeAddressError",
    "NodeNetwork",
    "bridge_interface",
    "ensure_node_address",
    "keep_node_address",
    "max_node_slots",
    "node_addresses_block",
    "node_network",
]

log = logging.getLogger(__name__)

_BLOCK = 24


class NodeAddressError(Exception):
    """The node's address could not be put on the bridge."""


@dataclass(frozen=True)
class NodeNetwork:
    """One Docker node's place on the pod network."""

    ip: str
    """The node's InternalIP (in the host's block)."""
    pod_cidr: str
    """The node's ``spec.podCIDR``: its pods' IPs."""


def _subnet(pod_subnet: str) -> ipaddress.IPv4Network:
    network = ipaddress.ip_network(pod_subnet)
    if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > _BLOCK - 1:
        raise ValueError(f"pod subnet {pod_subnet}: need an IPv4 subnet of at least /{_BLOCK - 1} "
                         "(a /24 for the node addresses and one per node)")
    return network


def max_node_slots(pod_subnet: str) -> int:
    """How many Docker nodes fit in ``pod_subnet`` (one /24 each besides the host's block)."""
    blocks: int = 2 ** (_BLOCK - _subnet(pod_subnet).prefixlen)
    return min(blocks - 1, 253)


def node_network(pod_subnet: str, slot: int) -> NodeNetwork:
    """Node ``slot``'s (1-based) InternalIP and pod CIDR in ``pod_subnet`` (see the module docstring)."""
    network = _subnet(pod_subnet)
    if not 1 <= slot <= max_node_slots(pod_subnet):
        raise ValueError(f"pod subnet {pod_subnet} has room for nodes 1..{max_node_slots(pod_subnet)}, "
                         f"not node {slot}")
    base = network.network_address
    return NodeNetwork(ip=str(base + 1 + slot), pod_cidr=f"{base + slot * 2 ** (32 - _BLOCK)}/{_BLOCK}")


def node_addresses_block(pod_subnet: str) -> str | None:
    """The host's /24 (gateway and every node's InternalIP) of ``pod_subnet``; None when the subnet is
    too small for the layout."""
    try:
        return f"{_subnet(pod_subnet).network_address}/{_BLOCK}"
    except ValueError:
        return None


def bridge_interface(network_attrs: Mapping[str, Any]) -> str:
    """The Linux bridge of a Docker bridge network (its ``bridge.name`` option, else ``br-<id[:12]>``)."""
    options = network_attrs.get("Options") or {}
    return str(options.get("com.docker.network.bridge.name") or f"br-{str(network_attrs['Id'])[:12]}")


def ensure_node_address(interface: str, ip: str, *, ip_command: str = "ip") -> bool:
    """Add ``ip``/32 to ``interface`` unless it is there; True when it was added. Blocking (run it in a
    thread). Raises :class:`NodeAddressError` when the address cannot be added."""
    address = ipaddress.IPv4Address(ip)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([ip_command, *args], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NodeAddressError(f"{ip_command} {' '.join(args)}: {exc}") from exc

    shown = run("-4", "-o", "addr", "show", "dev", interface)
    if shown.returncode != 0:
        raise NodeAddressError(f"bridge {interface}: {shown.stderr.strip() or 'not found'}")
    if any(f" {address}/" in line for line in shown.stdout.splitlines()):
        return False
    added = run("-4", "addr", "add", f"{address}/32", "dev", interface)
    if added.returncode != 0 and "File exists" not in added.stderr:
        raise NodeAddressError(f"adding {address}/32 to {interface}: {added.stderr.strip()}")
    log.info("node address %s added to bridge %s", address, interface)
    return added.returncode == 0


async def keep_node_address(interface: Callable[[], str], ip: str, *, period: float = 10.0,
                            ip_command: str = "ip") -> None:
    """Keep ``ip`` on the bridge until cancelled: every ``period`` seconds, look the bridge up
    (``interface``, blocking: a recreated network has a new one) and add the address if it went
    missing. A failure is logged and retried at the next period; nothing here ends the loop."""
    while True:
        await asyncio.sleep(period)
        try:
            name = await asyncio.to_thread(interface)
            if await asyncio.to_thread(ensure_node_address, name, ip, ip_command=ip_command):
                log.warning("node address %s was missing from bridge %s (the Docker engine restarted?); "
                            "added it back", ip, name)
        except Exception as exc:  # the loop outlives a bad check
            log.warning("node address %s: check failed, retrying in %.0f s: %s", ip, period, exc)
