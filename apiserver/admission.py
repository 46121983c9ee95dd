"""Built-in mutating admission: what the apiserver fills in before validation.

- Services get a ClusterIP from the service CIDR (unless headless or ExternalName) and
  NodePorts from 30000-32767 for NodePort/LoadBalancer types; an update keeps what was
  allocated when the new object leaves it out (as Kubernetes' service registry does). A
  requested IP or port that is taken or out of range is a 422 naming the field.
- Secrets: ``stringData`` is merged into ``data`` (base64) and dropped, as Kubernetes does.

Allocations are checked against the services watch cache plus the allocations made by this
process, under one lock, so concurrent creates never get the same IP.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import random
from typing import Any

from apiserver.watchcache import WatchCache
from machinery.errors import StatusCause, invalid

NODE_PORT_RANGE = range(30000, 32768)


class ServiceAllocator:
    """ClusterIPs and NodePorts for Services."""

    def __init__(self, cidr: str, services: WatchCache) -> None:
        self.network = ipaddress.ip_network(cidr)
        self.services = services
        self._lock = asyncio.Lock()
        self._recent_ips: set[str] = set()
        self._recent_ports: set[int] = set()

    def _used(self, skip_uid: str | None) -> tuple[set[str], set[int]]:
        ips: set[str] = set(self._recent_ips)
        ports: set[int] = set(self._recent_ports)
        for svc in self.services.decoded():
            if skip_uid and svc["metadata"].get("uid") == skip_uid:
                continue
            spec = svc.get("spec") or {}
            ips.update(ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None")
            ports.update(int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort"))
        return ips, ports

    async def admit(self, svc: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        spec = svc.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        name = svc["metadata"].get("name", "")
        if old is not None:
            _keep_allocations(spec, old_spec)
        async with self._lock:
            ips, ports = self._used(svc["metadata"].get("uid") if old is not None else None)
            causes: list[StatusCause] = []
            svc_type = spec.get("type", "ClusterIP")
            if svc_type == "ExternalName":
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            else:
                self._cluster_ip(spec, old_spec, ips, causes, dry_run)
            if svc_type in ("NodePort", "LoadBalancer"):
                self._node_ports(spec, old_spec, ports, causes, dry_run)
            if causes:
                raise invalid("Service", name, causes)

    def _cluster_ip(self, spec: dict[str, Any], old_spec: dict[str, Any], used: set[str],
                    causes: list[StatusCause], dry_run: bool) -> None:
        requested = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
        if requested == "None":
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
            return
        if requested and requested == old_spec.get("clusterIP"):
            spec["clusterIPs"] = [requested]
        elif requested:
            try:
                addr = ipaddress.ip_address(requested)
            except ValueError:
                causes.append(StatusCause("spec.clusterIPs", f'Invalid value: ["{requested}"]: must be a valid IP'))
                return
            if addr not in self.network:
                causes.append(StatusCause("spec.clusterIPs", f'Invalid value: ["{requested}"]: failed to allocate IP '
                                          f"{requested}: the provided IP ({requested}) is not in the valid range. "
                                          f"The range of valid IPs is {self.network}"))
                return
            if requested in used:
                causes.append(StatusCause("spec.clusterIPs", f'Invalid value: ["{requested}"]: failed to allocate IP '
                                          f"{requested}: provided IP is already allocated"))
                return
        else:
            requested = self._free_ip(used)
            if requested is None:
                causes.append(StatusCause("spec.clusterIPs", "Internal error: range is full"))
                return
        spec["clusterIP"] = requested
        spec["clusterIPs"] = [requested]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if not dry_run:
            self._recent_ips.add(requested)

    def _free_ip(self, used: set[str]) -> str | None:
        size = self.network.num_addresses
        base = int(self.network.network_address)
        # .0 is the network, .1 is reserved for the kubernetes service, the last is broadcast.
        for _ in range(256):
            candidate = str(ipaddress.ip_address(base + random.randrange(2, size - 1)))
            if candidate not in used:
                return candidate
        for offset in range(2, size - 1):
            candidate = str(ipaddress.ip_address(base + offset))
            if candidate not in used:
                return candidate
        return None

    def _node_ports(self, spec: dict[str, Any], old_spec: dict[str, Any], used: set[int],
                    causes: list[StatusCause], dry_run: bool) -> None:
        old_ports = {int(p["nodePort"]) for p in old_spec.get("ports") or [] if p.get("nodePort")}
        taken = set(used)
        for i, port in enumerate(spec.get("ports") or []):
            wanted = port.get("nodePort")
            if wanted:
                wanted = int(wanted)
                if wanted not in NODE_PORT_RANGE:
                    causes.append(StatusCause(f"spec.ports[{i}].nodePort", f"Invalid value: {wanted}: provided port "
                                              "is not in the valid range. The range of valid ports is 30000-32767"))
                elif wanted in taken and wanted not in old_ports:
                    causes.append(StatusCause(f"spec.ports[{i}].nodePort",
                                              f"Invalid value: {wanted}: provided port is already allocated"))
                taken.add(wanted)
                continue
            free = [p for p in NODE_PORT_RANGE if p not in taken]
            if not free:
                causes.append(StatusCause(f"spec.ports[{i}].nodePort", "Internal error: range is full"))
                continue
            chosen = random.choice(free)
            port["nodePort"] = chosen
            taken.add(chosen)
            if not dry_run:
                self._recent_ports.add(chosen)


def _keep_allocations(spec: dict[str, Any], old_spec: dict[str, Any]) -> None:
    """An update that leaves out allocated values keeps them."""
    if not spec.get("clusterIP") and old_spec.get("clusterIP") and spec.get("type") != "ExternalName":
        spec["clusterIP"] = old_spec["clusterIP"]
        if old_spec.get("clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    old_by_port = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []}
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        for port in spec.get("ports") or []:
            if not port.get("nodePort"):
                previous = old_by_port.get((port.get("port"), port.get("protocol", "TCP")))
                if previous:
                    port["nodePort"] = previous


async def admit_secret(secret: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
    string_data = secret.pop("stringData", None)
    if string_data:
        data = dict(secret.get("data") or {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        secret["data"] = data
