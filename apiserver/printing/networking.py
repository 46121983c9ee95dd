"""Printers for EndpointSlice, NetworkPolicy, Ingress and IngressClass.

Registered in :mod:`apiserver.printing.table` through :data:`NETWORKING_PRINTERS`. Cells follow
Kubernetes' printers: an EndpointSlice lists three ports and three addresses then ``+ N more...``
(``<unset>`` when it has none); an Ingress shows its class (``<none>``), hosts (``*`` for a rule
without a host), load balancer addresses and ``80`` or ``80, 443`` with TLS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, NAME, Column, Printer
from apiserver.printing.humanize import NONE, dig, format_label_selector, since

UNSET = "<unset>"
_SHOWN = 3

ENDPOINTSLICE_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("AddressType", "string", description="Type of address carried by the slice."),
    Column("Ports", "string", description="Ports of the endpoints."),
    Column("Endpoints", "string", description="Addresses of the endpoints."),
    AGE,
)

NETWORKPOLICY_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Pod-Selector", "string", description="Pods the policy applies to."),
    AGE,
)

INGRESS_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Class", "string", description="The ingress class of the Ingress."),
    Column("Hosts", "string", description="Hosts the Ingress routes."),
    Column("Address", "string", description="Addresses of the load balancer."),
    Column("Ports", "string", description="Ports the Ingress is served on."),
    AGE,
)

INGRESSCLASS_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Controller", "string", description="Controller that implements the class."),
    Column("Parameters", "string", description="Controller-specific parameters."),
    AGE,
)


def _first(items: list[str], empty: str) -> str:
    if not items:
        return empty
    shown = ",".join(items[:_SHOWN])
    return f"{shown} + {len(items) - _SHOWN} more..." if len(items) > _SHOWN else shown


def endpointslice_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, ADDRESSTYPE, PORTS, ENDPOINTS, AGE."""
    ports = [str(p["port"]) for p in obj.get("ports") or [] if p.get("port") is not None]
    addresses = [str(a) for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [dig(obj, "metadata", "name") or "", obj.get("addressType") or "", _first(ports, UNSET),
            _first(addresses, UNSET), since(dig(obj, "metadata", "creationTimestamp"), now)]


def networkpolicy_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, POD-SELECTOR, AGE."""
    return [dig(obj, "metadata", "name") or "", format_label_selector(dig(obj, "spec", "podSelector")),
            since(dig(obj, "metadata", "creationTimestamp"), now)]


def _ingress_hosts(spec: dict[str, Any]) -> str:
    hosts = [str(rule.get("host") or "*") for rule in spec.get("rules") or []]
    return _first(hosts, "*")


def _ingress_addresses(obj: dict[str, Any]) -> str:
    found = []
    for entry in dig(obj, "status", "loadBalancer", "ingress") or []:
        if entry.get("ip"):
            found.append(str(entry["ip"]))
        elif entry.get("hostname"):
            found.append(str(entry["hostname"]))
    return ",".join(found)


def ingress_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, CLASS, HOSTS, ADDRESS, PORTS, AGE."""
    spec = obj.get("spec") or {}
    return [dig(obj, "metadata", "name") or "", spec.get("ingressClassName") or NONE, _ingress_hosts(spec),
            _ingress_addresses(obj), "80, 443" if spec.get("tls") else "80",
            since(dig(obj, "metadata", "creationTimestamp"), now)]


def ingressclass_cells(obj: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, CONTROLLER, PARAMETERS, AGE."""
    params = dig(obj, "spec", "parameters")
    parameters = NONE
    if params:
        parameters = str(params.get("kind") or "")
        if params.get("apiGroup"):
            parameters += "." + str(params["apiGroup"])
        parameters += "/" + str(params.get("name") or "")
    return [dig(obj, "metadata", "name") or "", dig(obj, "spec", "controller") or "", parameters,
            since(dig(obj, "metadata", "creationTimestamp"), now)]


NETWORKING_PRINTERS: dict[tuple[str, str], Printer] = {
    ("discovery.k8s.io", "EndpointSlice"): Printer(ENDPOINTSLICE_COLUMNS, endpointslice_cells),
    ("networking.k8s.io", "NetworkPolicy"): Printer(NETWORKPOLICY_COLUMNS, networkpolicy_cells),
    ("networking.k8s.io", "Ingress"): Printer(INGRESS_COLUMNS, ingress_cells),
    ("networking.k8s.io", "IngressClass"): Printer(INGRESSCLASS_COLUMNS, ingressclass_cells),
}
