"""Defaults of NetworkPolicy, IngressClass and EndpointSlice (``SetDefaults_*`` of networking/v1 and
discovery/v1).

Registered in :data:`machinery.api.defaults.DEFAULTERS` through :data:`NETWORKING_DEFAULTERS`. Only
unset fields get a value.
"""

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]


def network_policy(obj: Obj) -> None:
    """Ports default to TCP; without ``policyTypes`` a policy isolates ingress, and egress too when it has
    egress rules (SetDefaults_NetworkPolicy)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def ingress_class(obj: Obj) -> None:
    """A parameters reference without a scope is cluster-scoped."""
    params = (obj.get("spec") or {}).get("parameters")
    if params is not None:
        params.setdefault("scope", "Cluster")


def endpoint_slice(obj: Obj) -> None:
    """Ports default to TCP and an empty name (SetDefaults_EndpointPort)."""
    for port in obj.get("ports") or []:
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")


NETWORKING_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "NetworkPolicy": network_policy,
    "IngressClass": ingress_class,
    "EndpointSlice": endpoint_slice,
}
