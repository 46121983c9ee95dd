"""The network guard: kubelab dials only loopback and the networks its cluster owns.

Every product dialer goes through here: the apiserver when it reaches a kubelet (``pods/log``,
``pods/exec``), the kubelet's HTTP and TCP probes, and later the apiserver's webhook calls. A
destination outside the allowed networks is refused with :class:`DestinationRefusedError` (a 503
``ServiceUnavailable`` Status naming the address and why) and is never dialled.

* :class:`AllowedNetworks` -- loopback (``127.0.0.0/8``, ``::1``) plus the cluster's own networks,
  which are configuration: the pod subnet, the service CIDR and the Docker bridge of a Docker
  cluster (``kubelab up`` passes them to the apiserver's ``--allowed-networks``).
* :func:`check_destination` -- the one decision: ``host`` (an IP literal, or ``localhost``) →
  the address to dial, or the refusal. Any other host name is refused without a lookup: a DNS
  query can itself leave the machine, and its answer could change between the check and the
  dial. Cluster-provided addresses (node InternalIPs, pod IPs) are IP literals.
* :func:`guarded_connector` -- an ``aiohttp.TCPConnector`` that applies the check to every
  socket it opens (its ``socket_factory`` sees each address before the socket exists) and whose
  resolver refuses host names, so neither an IP literal nor a name slips past.
* :func:`open_connection` -- ``asyncio.open_connection`` behind the same check.
* :func:`install_connect_audit` -- a ``sys.addaudithook`` on ``socket.connect`` (and UDP
  ``sendto``/``sendmsg``) that refuses and records, *before* the system call, any destination
  outside the allowed networks: the test suite's proof that nothing else dials out. A process
  started with ``KUBELAB_NETAUDIT=<file>`` installs it (see :func:`install_audit_from_env`) and
  appends each violation to that file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from machinery.errors import ServiceUnavailableError

__all__ = [
    "AUDIT_ENV",
    "LOOPBACK",
    "AllowedNetworks",
    "ConnectAudit",
    "DestinationRefusedError",
    "IPAddress",
    "IPNetwork",
    "check_destination",
    "guarded_connector",
    "install_audit_from_env",
    "install_connect_audit",
    "open_connection",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
"""Always allowed: the machine itself."""

AUDIT_ENV = "KUBELAB_NETAUDIT"
"""When set (to a file path), :func:`install_audit_from_env` installs the connect audit and
appends one line per refused destination to that file."""

AUDIT_NETWORKS_ENV = "KUBELAB_NETAUDIT_NETWORKS"
"""Comma-separated extra networks the connect audit allows (besides loopback)."""


class DestinationRefusedError(ServiceUnavailableError):
    """A dial to an address outside loopback and the cluster's networks was refused (503)."""


@dataclass(frozen=True)
class AllowedNetworks:
    """Loopback plus the cluster's own networks: the only destinations kubelab dials."""

    networks: tuple[IPNetwork, ...] = LOOPBACK

    @classmethod
    def of(cls, networks: Iterable[str]) -> AllowedNetworks:
        """Loopback plus ``networks`` (CIDRs or single addresses; empty items skipped).

        Raises ValueError naming a malformed item."""
        extra: list[IPNetwork] = []
        for item in (n.strip() for n in networks):
            if item:
                try:
                    extra.append(ipaddress.ip_network(item, strict=False))
                except ValueError as exc:
                    raise ValueError(f"invalid network {item!r}: {exc}") from None
        return cls(tuple(dict.fromkeys((*LOOPBACK, *extra))))

    @classmethod
    def parse(cls, text: str) -> AllowedNetworks:
        """``"10.244.0.0/16,10.96.0.0/12"`` → loopback plus those (the flag's syntax)."""
        return cls.of(text.split(","))

    def including(self, *addresses: str) -> AllowedNetworks:
        """These networks plus single addresses (empty strings ignored)."""
        return AllowedNetworks.of([*(str(n) for n in self.networks), *addresses])

    def allows(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __str__(self) -> str:
        return ", ".join(str(n) for n in self.networks)


def check_destination(host: str, allowed: AllowedNetworks, *, what: str = "") -> IPAddress:
    """The address to dial for ``host``, or :class:`DestinationRefusedError` (nothing is dialled).

    ``host`` must be an IP literal (brackets and an IPv6 zone are accepted) or ``localhost``
    (→ 127.0.0.1); ``what`` names the destination in the message (``the kubelet of node n1``)."""
    label = f"{what} at {host}" if what else host
    text = host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    if text.lower().rstrip(".") == "localhost":
        return ipaddress.ip_address("127.0.0.1")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise DestinationRefusedError(
            f"refusing to connect to {label}: {host!r} is not an IP address, and kubelab does not look up "
            "host names for cluster destinations (the lookup itself could leave the machine)") from None
    if not allowed.allows(address):
        raise DestinationRefusedError(
            f"refusing to connect to {label}: {address} is outside loopback and the cluster's networks "
            f"(allowed: {allowed})")
    return address


class _NoLookupResolver(AbstractResolver):
    """aiohttp asks its resolver only for names (IP literals bypass it): refuse them all but localhost."""

    def __init__(self, allowed: AllowedNetworks) -> None:
        self._allowed = allowed

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        address = check_destination(host, self._allowed)
        return [ResolveResult(hostname=host, host=str(address), port=port,
                              family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None


def _socket_factory(allowed: AllowedNetworks) -> Callable[[Any], socket.socket]:
    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, address = addr_info
        check_destination(str(address[0]), allowed)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def guarded_connector(allowed: AllowedNetworks, **kwargs: Any) -> aiohttp.TCPConnector:
    """An aiohttp connector that dials only ``allowed`` destinations (``kwargs``: ``ssl`` …)."""
    return aiohttp.TCPConnector(resolver=_NoLookupResolver(allowed), socket_factory=_socket_factory(allowed),
                                **kwargs)


async def open_connection(host: str, port: int, allowed: AllowedNetworks, **kwargs: Any
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` to a checked address (raises :class:`DestinationRefusedError`)."""
    address = check_destination(host, allowed)
    return await asyncio.open_connection(str(address), port, **kwargs)


# ---------------------------------------------------------------------------------------------
# The connect audit (tests and KUBELAB_NETAUDIT processes)

_AUDITED_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})


class ConnectAudit:
    """Refuses and records connects outside ``allowed``; installed once per process.

    Audit hooks run before the operation they report, so raising from one means the socket is
    never connected and no datagram is sent. Unix sockets and socket pairs are not network
    destinations and pass."""

    def __init__(self, allowed: AllowedNetworks, *, record: Callable[[str], None] | None = None) -> None:
        self.allowed = allowed
        self.violations: list[str] = []
        self.active = True
        self._record = record
        self._lock = threading.Lock()

    def destination_problem(self, address: Any) -> str | None:
        """Why ``address`` (a socket address) may not be dialled, or None."""
        if not isinstance(address, tuple) or not address or not isinstance(address[0], str | bytes):
            return None
        host = address[0].decode() if isinstance(address[0], bytes) else address[0]
        try:
            check_destination(host, self.allowed)
        except DestinationRefusedError as exc:
            return exc.message
        return None

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in _AUDITED_EVENTS or not self.active or len(args) < 2:
            return
        sock, address = args[0], args[-1]
        family = getattr(sock, "family", None)
        if family not in (socket.AF_INET, socket.AF_INET6):
            return
        problem = self.destination_problem(address)
        if problem is None:
            return
        line = f"{event} {address!r} in pid {os.getpid()}: {problem}"
        with self._lock:
            self.violations.append(line)
        if self._record is not None:
            self._record(line)
        raise PermissionError(f"network audit: {line}")


def install_connect_audit(allowed: AllowedNetworks, *, record: Callable[[str], None] | None = None
                          ) -> ConnectAudit:
    """Install a :class:`ConnectAudit` for the rest of the process (audit hooks cannot be removed;
    set ``audit.active = False`` to stand it down)."""
    audit = ConnectAudit(allowed, record=record)
    sys.addaudithook(audit.hook)
    return audit


def install_audit_from_env(environ: Sequence[tuple[str, str]] | None = None) -> ConnectAudit | None:
    """With ``KUBELAB_NETAUDIT=<file>`` set: install the audit, appending violations to the file."""
    env = dict(environ) if environ is not None else dict(os.environ)
    path = env.get(AUDIT_ENV, "")
    if not path:
        return None
    allowed = AllowedNetworks.parse(env.get(AUDIT_NETWORKS_ENV, ""))

    def record(line: str) -> None:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
        sys.stderr.write(f"kubelab network audit: {line}\n")

    return install_connect_audit(allowed, record=record)
