"""Pod IP allocation from a node's ``spec.podCIDR`` (host-local IPAM, as a CNI bridge plugin does it).

Used by the Docker runtime (:mod:`kubelet.runtime.docker_sandbox`): before a pod's sandbox is created it
asks :meth:`PodIPAllocator.allocate` for an address, passes it to Docker as the sandbox's static IP, and
gives it back with :meth:`PodIPAllocator.release` when the sandbox is stopped (a finished pod: its exited
containers stay, its address does not) or removed. A restarted kubelet rebuilds the allocation from the
sandboxes that run (:meth:`PodIPAllocator.reserve`) before handing out anything, so an address in use is
never handed out twice.

Guarantees:

* addresses come from the CIDR minus its network and broadcast addresses (``10.244.1.1`` ..
  ``10.244.1.254`` for ``10.244.1.0/24``), as Kubernetes' host-local plugin uses a range;
* one address per owner (the pod UID): asking again returns the same address;
* round robin: the search starts after the last address handed out, so an address just released is
  reused last (connections and DNS answers naming it have time to go away);
* a full range raises :class:`PodCIDRExhaustedError` (a :class:`~kubelet.runtime.interface.RuntimeError_`,
  so the pod gets a ``FailedCreatePodSandBox`` event) and changes nothing;
* thread-safe: the Docker runtime calls it from its worker threads.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable

from kubelet.runtime.interface import RuntimeError_

__all__ = ["FOREIGN_OWNER", "PodCIDRExhaustedError", "PodIPAllocator"]

FOREIGN_OWNER = "-"
"""Owner of an address found in use by something that is not one of this node's pods."""


class PodCIDRExhaustedError(RuntimeError_):
    """Every address of the node's pod CIDR is in use."""


class PodIPAllocator:
    """The addresses of one pod CIDR and who holds them (see the module docstring)."""

    def __init__(self, cidr: str) -> None:
        network = ipaddress.ip_network(cidr)
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValueError(f"pod CIDR {cidr}: only IPv4 is supported")
        if network.prefixlen > 30:
            raise ValueError(f"pod CIDR {cidr} has no room for pods (at most /30)")
        self.cidr = network
        self._first = int(network.network_address) + 1
        self._size = network.num_addresses - 2
        self._lock = threading.Lock()
        self._by_owner: dict[str, int] = {}
        self._owners: dict[int, str] = {}
        self._foreign: set[int] = set()
        self._last = self._first - 1

    @property
    def range_text(self) -> str:
        """The usable range, as host-local names it (``10.244.1.1-10.244.1.254``)."""
        first = ipaddress.IPv4Address(self._first)
        return f"{first}-{first + (self._size - 1)}"

    @property
    def capacity(self) -> int:
        return self._size

    def in_use(self) -> dict[str, str]:
        """Address → owner (pod UID, or :data:`FOREIGN_OWNER`)."""
        with self._lock:
            found = {str(ipaddress.IPv4Address(a)): o for a, o in self._owners.items()}
            found.update({str(ipaddress.IPv4Address(a)): FOREIGN_OWNER for a in self._foreign})
            return found

    def contains(self, ip: str) -> bool:
        """Whether ``ip`` is one of the usable addresses of the range."""
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return self._first <= value < self._first + self._size

    def allocate(self, owner: str) -> str:
        """The address of ``owner``: the one it holds, else the next free one (round robin)."""
        with self._lock:
            held = self._by_owner.get(owner)
            if held is not None:
                return str(ipaddress.IPv4Address(held))
            for step in range(1, self._size + 1):
                candidate = self._first + (self._last - self._first + step) % self._size
                if candidate not in self._owners and candidate not in self._foreign:
                    self._take(owner, candidate)
                    self._last = candidate
                    return str(ipaddress.IPv4Address(candidate))
        raise PodCIDRExhaustedError(
            f"failed to allocate a pod IP: no IP addresses available in the node's pod CIDR {self.cidr} "
            f"(range {self.range_text}, all {self._size} in use)")

    def reserve(self, owner: str, ip: str) -> bool:
        """Record that ``owner`` holds ``ip`` (rebuilding after a restart, or an address found taken by
        something else with :data:`FOREIGN_OWNER`). False when ``ip`` is outside the range or is held by
        another pod; an owner reserving a second address keeps the first one only."""
        if not self.contains(ip):
            return False
        value = int(ipaddress.IPv4Address(ip))
        with self._lock:
            if owner == FOREIGN_OWNER:
                if value in self._owners:
                    return False
                self._foreign.add(value)
                return True
            holder = self._owners.get(value)
            if holder is not None:
                return holder == owner
            if owner in self._by_owner or value in self._foreign:
                return False
            self._take(owner, value)
            return True

    def release(self, owner: str) -> str | None:
        """Give ``owner``'s address back; return it (None when it held none)."""
        with self._lock:
            value = self._by_owner.pop(owner, None)
            if value is None:
                return None
            self._owners.pop(value, None)
            return str(ipaddress.IPv4Address(value))

    def set_foreign(self, ips: Iterable[str]) -> None:
        """Replace the addresses held by something else (those outside the range or held by a pod of
        this node are ignored)."""
        with self._lock:
            self._foreign = {int(ipaddress.IPv4Address(ip)) for ip in ips if self.contains(ip)}
            self._foreign -= set(self._owners)

    def _take(self, owner: str, value: int) -> None:
        self._by_owner[owner] = value
        self._owners[value] = owner
