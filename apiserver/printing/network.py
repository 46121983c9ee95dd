"""Printers for Service and Endpoints.

Called through the registry in :mod:`apiserver.printing.table`. The EXTERNAL-IP and PORT(S)
cells follow Kubernetes: ``<none>`` without external IPs, ``<pending>`` for a LoadBalancer
with no ingress yet, ``80/TCP`` or ``80:30080/TCP`` per port; endpoint lists show three
``ip:port`` pairs and then ``+ N more...``. Server-side printing is always "wide", so load
balancer addresses are never clipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column
from apiserver.printing.humanize import NONE, dig, format_labels, join_host_port, since

SERVICE_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Type", "string", description="How the service is exposed."),
    Column("Cluster-IP", "string", description="The service's virtual IP inside the cluster."),
    Column("External-IP", "string", description="Addresses the service is reachable at from outside."),
    Column("Port(s)", "string", description="Ports the service exposes."),
    AGE,
    Column("Selector", "string", priority=1, description="Labels of the pods that back the service."),
)

ENDPOINTS_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Endpoints", "string", description="Addresses and ports of the ready backends."),
    AGE,
)

_MAX_ENDPOINTS = 3


def _load_balancer_addresses(service: dict[str, Any]) -> list[str]:
    """Ingress IPs (else hostnames) of the load balancer, sorted and de-duplicated."""
    found: set[str] = set()
    for ingress in dig(service, "status", "loadBalancer", "ingress") or []:
        if ingress.get("ip"):
            found.add(str(ingress["ip"]))
        elif ingress.get("hostname"):
            found.add(str(ingress["hostname"]))
    return sorted(found)


def external_ip(service: dict[str, Any]) -> str:
    """The EXTERNAL-IP cell."""
    spec = service.get("spec") or {}
    service_type = spec.get("type") or "ClusterIP"
    external_ips = [str(ip) for ip in spec.get("externalIPs") or []]
    if service_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else NONE
    if service_type == "LoadBalancer":
        addresses = _load_balancer_addresses(service) + external_ips
        return ",".join(addresses) if addresses else "<pending>"
    if service_type == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def port_string(ports: list[dict[str, Any]] | None) -> str:
    """``80/TCP,443:30443/TCP``, or ``<none>`` without ports."""
    pieces = []
    for port in ports or []:
        protocol = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            pieces.append(f"{port.get('port')}:{port['nodePort']}/{protocol}")
        else:
            pieces.append(f"{port.get('port')}/{protocol}")
    return ",".join(pieces) or NONE


def service_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE, SELECTOR."""
    spec = obj.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [
        dig(obj, "metadata", "name") or "",
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else NONE,
        external_ip(obj),
        port_string(spec.get("ports")),
        since(dig(obj, "metadata", "creationTimestamp"), now),
        format_labels(spec.get("selector")),
    ]


def format_endpoints(endpoints: dict[str, Any]) -> str:
    """``10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...`` (ready addresses only)."""
    subsets = endpoints.get("subsets") or []
    if not subsets:
        return NONE
    shown: list[str] = []
    count = 0
    more = False
    for subset in subsets:
        addresses = [str(a.get("ip", "")) for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        # A headless service without ports lists bare IPs.
        targets = [addresses] if not ports else [
            [join_host_port(ip, port.get("port")) for ip in addresses] for port in ports
        ]
        for group in targets:
            count += len(group)
            for text in group:
                if len(shown) == _MAX_ENDPOINTS:
                    more = True
                    break
                shown.append(text)
    joined = ",".join(shown)
    if more:
        return f"{joined} + {count - _MAX_ENDPOINTS} more..."
    return joined


def endpoints_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, ENDPOINTS, AGE."""
    return [
        dig(obj, "metadata", "name") or "",
        format_endpoints(obj),
        since(dig(obj, "metadata", "creationTimestamp"), now),
    ]
