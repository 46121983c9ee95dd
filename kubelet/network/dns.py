"""Cluster DNS: a UDP + TCP DNS server answering for Services and pods from informer caches (dnslib).

The kubelet process started with ``--run-dns`` starts one :class:`ClusterDNS` and gives every pod the
nameserver / search path / ndots from :func:`resolv_conf_for_pod`. Records, as CoreDNS's kubernetes
plugin serves them (names are case-insensitive, TTL 5 s):

* ``<svc>.<ns>.svc.<domain>`` A: the ClusterIP; headless Services: one A per ready endpoint address;
  ExternalName Services: a CNAME to the external name;
* ``<hostname>.<svc>.<ns>.svc.<domain>`` A: a headless Service's endpoint (its ``hostname``, else its
  dashed IP);
* ``_<port>._<proto>.<svc>.<ns>.svc.<domain>`` SRV for named ports (headless: one per endpoint);
* ``<a-b-c-d>.<ns>.pod.<domain>`` A ``a.b.c.d`` ("pods insecure" mode: not checked against pods);
* any other name inside the domain: NXDOMAIN (with the zone's SOA); an existing name asked for another
  type: an empty NOERROR answer.

Names outside the domain are forwarded to ``upstream`` only (the host's resolver, see
:func:`host_upstream`, and only when it listens on loopback, such as systemd-resolved's
127.0.0.53: a resolver elsewhere is outside what kubelab may dial, see :mod:`machinery.netguard`);
with ``upstream=None`` they are REFUSED. Nothing is ever sent elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnslib import CNAME, QTYPE, RCODE, RR, SOA, SRV, A, DNSRecord

from machinery.client.informer import SharedInformer
from machinery.client.rest import ApiClient
from machinery.resources import ENDPOINTS, SERVICES

__all__ = ["ClusterDNS", "PodDNSConfig", "host_upstream", "resolv_conf_for_pod"]

log = logging.getLogger(__name__)

TTL = 5
_FORWARD_TIMEOUT = 3.0
_TCP_TIMEOUT = 10.0


@dataclass(frozen=True)
class PodDNSConfig:
    """A pod's resolver configuration (what Docker's ``dns``, ``dns_search`` and ``dns_opt`` take)."""

    nameservers: tuple[str, ...]
    searches: tuple[str, ...]
    options: tuple[str, ...]

    def to_text(self) -> str:
        """The ``/etc/resolv.conf`` content."""
        lines = [f"search {' '.join(self.searches)}"]
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        lines.append(f"options {' '.join(self.options)}")
        return "\n".join(lines) + "\n"


def resolv_conf_for_pod(namespace: str, dns_ip: str, domain: str = "cluster.local") -> PodDNSConfig:
    """ClusterFirst DNS for a pod: the cluster DNS, the namespace's search path and ``ndots:5``."""
    return PodDNSConfig(nameservers=(dns_ip,),
                        searches=(f"{namespace}.svc.{domain}", f"svc.{domain}", domain),
                        options=("ndots:5",))


def host_upstream(path: Path = Path("/etc/resolv.conf")) -> tuple[str, int] | None:
    """The first IPv4 loopback nameserver of the host's resolv.conf, or None if there is none.

    A nameserver on another address is skipped: forwarding to it would send traffic off the
    machine, so names outside the cluster domain are REFUSED instead (logged once at start)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                address = ipaddress.ip_address(parts[1])
                if address.version == 4 and address.is_loopback:
                    return parts[1], 53
                log.info("cluster DNS: not forwarding to nameserver %s (outside loopback)", address)
    return None


class ClusterDNS:
    """The DNS server; serves from Services and Endpoints informers."""

    def __init__(self, client: ApiClient, *, listen: tuple[str, int], domain: str = "cluster.local",
                 upstream: tuple[str, int] | None = None) -> None:
        """``listen``: (host, port); port 0 picks one (same number for UDP and TCP, see :attr:`address`)."""
        self.client = client
        self.listen = listen
        self.domain = domain.strip(".").lower()
        self.upstream = upstream
        self.address: tuple[str, int] = listen
        self._services = SharedInformer(client, SERVICES)
        self._endpoints = SharedInformer(client, ENDPOINTS)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the informers, wait for their first list, then bind UDP and TCP."""
        await self._services.start()
        await self._endpoints.start()
        await self._services.wait_synced()
        await self._endpoints.wait_synced()
        loop = asyncio.get_running_loop()
        host, port = self.listen
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), local_addr=(host, port))
            bound_port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, bound_port)
            except OSError:
                transport.close()
                if port or attempt == 19:
                    raise
                continue
            self._udp = transport
            self.address = (host, bound_port)
            break
        log.info("cluster DNS for %s listening on %s:%d (udp+tcp)", self.domain, *self.address)

    async def stop(self) -> None:
        """Close the sockets, cancel in-flight queries, stop the informers."""
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._services.stop()
        await self._endpoints.stop()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name="cluster-dns-query")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster DNS: query failed", exc_info=task.exception())

    # -- transports ------------------------------------------------------------------------------------------

    async def _answer_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.handle(data, tcp=False)
        if reply is not None and self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), _TCP_TIMEOUT)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", header)[0]), _TCP_TIMEOUT)
                reply = await self.handle(data, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    # -- resolution ------------------------------------------------------------------------------------------

    async def handle(self, data: bytes, *, tcp: bool) -> bytes | None:
        """Answer one wire-format query (None for garbage that is not worth an answer)."""
        try:
            request = DNSRecord.parse(data)
        except Exception:
            log.debug("cluster DNS: malformed query dropped")
            return None
        qname = str(request.q.qname).rstrip(".").lower()
        if qname == self.domain or qname.endswith("." + self.domain):
            return self.resolve(request).pack()  # type: ignore[no-any-return]
        if self.upstream is None:
            reply = request.reply()
            reply.header.rcode = RCODE.REFUSED
            return reply.pack()  # type: ignore[no-any-return]
        return await self._forward(request, data, tcp=tcp)

    def resolve(self, request: DNSRecord) -> DNSRecord:
        """The authoritative answer for a name inside the cluster domain."""
        reply = request.reply()
        reply.header.aa = 1
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        labels = qname[: -len(self.domain)].rstrip(".").split(".") if qname != self.domain else []
        records = self._records(labels)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return reply
        for rtype, rdata in records:
            if rtype == qtype or qtype == "ANY" or rtype == "CNAME":
                reply.add_answer(RR(request.q.qname, getattr(QTYPE, rtype), rdata=rdata, ttl=TTL))
        if not reply.rr:
            reply.add_auth(self._soa())
        return reply

    def _soa(self) -> RR:
        return RR(self.domain, QTYPE.SOA, ttl=TTL,
                  rdata=SOA(f"ns.dns.{self.domain}", f"hostmaster.{self.domain}", (1, 7200, 1800, 86400, TTL)))

    def _records(self, labels: list[str]) -> list[tuple[str, Any]] | None:
        """(type, rdata) for the name (labels before the domain), [] if it exists without data, None if not."""
        if len(labels) == 3 and labels[2] == "pod":
            ip = labels[0].replace("-", ".")
            try:
                if ipaddress.ip_address(ip).version == 4:
                    return [("A", A(ip))]
            except ValueError:
                return None
            return None
        if len(labels) < 3 or labels[-1] != "svc":
            return None
        namespace, name = labels[-2], labels[-3]
        service = self._services.store.get(f"{namespace}/{name}")
        if service is None:
            return None
        spec = service.get("spec") or {}
        fqdn = f"{name}.{namespace}.svc.{self.domain}"
        headless = spec.get("clusterIP") == "None"
        endpoints = self._ready_addresses(namespace, name)
        rest = labels[:-3]
        if not rest:
            if spec.get("type") == "ExternalName":
                return [("CNAME", CNAME(str(spec.get("externalName") or "") + "."))]
            if headless:
                return [("A", A(addr["ip"])) for addr in endpoints]
            records: list[tuple[str, Any]] = [("A", A(spec["clusterIP"]))] if spec.get("clusterIP") else []
            return records
        if len(rest) == 1 and headless:
            for addr in endpoints:
                if _endpoint_label(addr) == rest[0]:
                    return [("A", A(addr["ip"]))]
            return None
        if len(rest) == 2 and rest[0].startswith("_") and rest[1].startswith("_"):
            port_name, proto = rest[0][1:], rest[1][1:].upper()
            for port in spec.get("ports") or []:
                if (port.get("name") or "").lower() == port_name and (port.get("protocol") or "TCP") == proto:
                    if not headless:
                        return [("SRV", SRV(0, 100, int(port["port"]), fqdn + "."))]
                    ep_port = self._endpoint_port(namespace, name, port.get("name") or "", proto)
                    return [("SRV", SRV(0, 100, ep_port, f"{_endpoint_label(a)}.{fqdn}."))
                            for a in endpoints if ep_port]
            return None
        return None

    def _ready_addresses(self, namespace: str, name: str) -> list[dict[str, Any]]:
        ep = self._endpoints.store.get(f"{namespace}/{name}") or {}
        seen: dict[str, dict[str, Any]] = {}
        for subset in ep.get("subsets") or []:
            for addr in subset.get("addresses") or []:
                if addr.get("ip"):
                    seen.setdefault(addr["ip"], addr)
        return sorted(seen.values(), key=lambda a: str(a["ip"]))

    def _endpoint_port(self, namespace: str, name: str, port_name: str, proto: str) -> int:
        ep = self._endpoints.store.get(f"{namespace}/{name}") or {}
        for subset in ep.get("subsets") or []:
            for port in subset.get("ports") or []:
                if (port.get("name") or "") == port_name and (port.get("protocol") or "TCP") == proto:
                    return int(port["port"])
        return 0

    async def _forward(self, request: DNSRecord, data: bytes, *, tcp: bool) -> bytes:
        """Relay to the configured upstream only; SERVFAIL when it does not answer."""
        assert self.upstream is not None
        host, port = self.upstream
        try:
            if tcp:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), _FORWARD_TIMEOUT)
                try:
                    writer.write(struct.pack("!H", len(data)) + data)
                    await writer.drain()
                    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), _FORWARD_TIMEOUT))[0]
                    return await asyncio.wait_for(reader.readexactly(size), _FORWARD_TIMEOUT)
                finally:
                    writer.close()
            return await asyncio.wait_for(_udp_exchange(host, port, data), _FORWARD_TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            log.warning("cluster DNS: upstream %s:%d failed for %s: %s", host, port, request.q.qname, exc)
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return reply.pack()  # type: ignore[no-any-return]


def _endpoint_label(addr: dict[str, Any]) -> str:
    return str(addr.get("hostname") or str(addr["ip"]).replace(".", "-")).lower()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: ClusterDNS) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._spawn(self.server._answer_udp(data, addr))


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _udp_exchange(host: str, port: int, data: bytes) -> bytes:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        _OneReply, remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await protocol.reply
    finally:
        transport.close()
