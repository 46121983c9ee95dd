"""Clusters: a Service port's ready endpoints (per DestinationRule subset), with LB and TLS policy.

Used by :mod:`meshd.control.compile.proxy`. Reads the Service, its Endpoints (ready addresses;
each endpoint's port is the Endpoints port named like the Service port) and the endpoint's pod:
its labels (subsets select on them), its workload name, and its identity -- the SPIFFE ID of
its service account, only when the pod runs the ``istio-proxy`` container (so a client uses
mTLS only toward sidecars). Policies come from the DestinationRule that applies (Istio's lookup:
the client's namespace, then the Service's, then the root namespace): ``trafficPolicy``, with
``portLevelSettings`` for the port and the subset's own ``trafficPolicy`` over it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from meshd.api.identity import SpiffeId
from meshd.api.resources import Cluster, Endpoint, LbPolicy, Protocol, TlsMode, cluster_name
from meshd.control.compile.scope import Scope, fqdn, selects, service_fqdn
from meshd.control.model import MeshSnapshot, Obj, key_of

__all__ = ["PROXY_CONTAINER", "destination_rule_for", "port_protocol", "service_clusters", "service_ports"]

PROXY_CONTAINER = "istio-proxy"

_APP_PROTOCOLS: dict[str, Protocol] = {
    "http": "http", "http2": "http2", "grpc": "grpc", "grpc-web": "http", "tcp": "tcp", "tls": "tls",
    "https": "tls", "kubernetes.io/h2c": "http2", "kubernetes.io/ws": "http", "kubernetes.io/wss": "tls",
    "h2c": "http2", "mongo": "tcp", "mysql": "tcp", "redis": "tcp",
}


def port_protocol(port: Obj) -> Protocol:
    """From ``appProtocol``, else the name's prefix (``http-web``, ``grpc``), else opaque ``tcp``."""
    app = str(port.get("appProtocol") or "").lower()
    if app in _APP_PROTOCOLS:
        return _APP_PROTOCOLS[app]
    name = str(port.get("name") or "").lower()
    prefix = name.split("-", 1)[0]
    return _APP_PROTOCOLS.get(prefix, "tcp")


def service_ports(service: Obj) -> list[Obj]:
    return [p for p in (service.get("spec") or {}).get("ports") or [] if str(p.get("protocol") or "TCP") == "TCP"]


def pod_identity(pod: Obj | None, trust_domain: str) -> str:
    if pod is None:
        return ""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    if not any(c.get("name") == PROXY_CONTAINER for c in containers):
        return ""
    namespace, _ = key_of(pod)
    return SpiffeId(namespace, str(spec.get("serviceAccountName") or "default"), trust_domain).uri


def workload_name(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if owner is None:
        return str(meta.get("name") or "")
    name = str(owner.get("name") or "")
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if owner.get("kind") == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        return name[: -len(template_hash) - 1]
    return name


def _endpoints(snapshot: MeshSnapshot, service: Obj, port: Obj, trust_domain: str) -> list[Endpoint]:
    key = key_of(service)
    found = snapshot.endpoints.get(key)
    if found is None:
        return []
    namespace = key[0]
    wanted_name = str(port.get("name") or "")
    result: list[Endpoint] = []
    for subset in found.get("subsets") or []:
        ports = subset.get("ports") or []
        match = next((p for p in ports if str(p.get("name") or "") == wanted_name), None)
        if match is None and len(ports) == 1 and not wanted_name:
            match = ports[0]
        if match is None:
            continue
        for address in subset.get("addresses") or []:
            ref = address.get("targetRef") or {}
            pod = snapshot.pods.get((str(ref.get("namespace") or namespace), str(ref.get("name") or ""))) \
                if ref.get("kind") == "Pod" else snapshot.pods_by_ip.get(str(address.get("ip")))
            result.append(Endpoint(
                address=str(address.get("ip")), port=int(match.get("port") or 0),
                labels=dict(((pod or {}).get("metadata") or {}).get("labels") or {}),
                identity=pod_identity(pod, trust_domain),
                workload=workload_name(pod) if pod is not None else "",
                namespace=key_of(pod)[0] if pod is not None else namespace))
    result.sort(key=lambda e: (e.address, e.port))
    return result


def destination_rule_for(snapshot: MeshSnapshot, scope: Scope, host: str, root_namespace: str) -> Obj | None:
    """The DestinationRule for ``host`` (FQDN) this proxy uses: its own namespace's, then the
    host's namespace's, then the root namespace's (oldest wins within one namespace)."""
    candidates = [dr for dr in snapshot.destination_rules
                  if fqdn(str((dr.get("spec") or {}).get("host") or ""), key_of(dr)[0]) == host
                  and scope.sees_rule(dr)]
    host_namespace = host.split(".")[1] if host.count(".") >= 2 else ""
    for namespace in (scope.node.namespace, host_namespace, root_namespace):
        found = next((dr for dr in candidates if key_of(dr)[0] == namespace), None)
        if found is not None:
            return found
    return None


_LB: dict[str, LbPolicy] = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST",
                            "LEAST_CONN": "LEAST_REQUEST", "RANDOM": "RANDOM"}
_TLS: dict[str, TlsMode] = {"ISTIO_MUTUAL": "ISTIO_MUTUAL", "DISABLE": "DISABLE"}


def _policy(policy: dict[str, Any] | None, port: int, lb: LbPolicy, tls: TlsMode) -> tuple[LbPolicy, TlsMode]:
    """``policy`` (a TrafficPolicy) over (lb, tls): its own fields, then its port-level setting."""
    if not policy:
        return lb, tls
    layers = [policy, *[s for s in policy.get("portLevelSettings") or []
                        if int((s.get("port") or {}).get("number") or 0) == port]]
    for layer in layers:
        simple = str((layer.get("loadBalancer") or {}).get("simple") or "")
        lb = _LB.get(simple, lb)
        mode = str((layer.get("tls") or {}).get("mode") or "")
        tls = _TLS.get(mode, tls)
    return lb, tls


def service_clusters(snapshot: MeshSnapshot, scope: Scope, service: Obj, *, root_namespace: str,
                     trust_domain: str) -> Iterator[Cluster]:
    """The default cluster of every port, then one per subset of the applicable DestinationRule."""
    host = service_fqdn(service)
    rule = destination_rule_for(snapshot, scope, host, root_namespace)
    rule_spec = (rule or {}).get("spec") or {}
    for port in service_ports(service):
        number = int(port.get("port") or 0)
        protocol = port_protocol(port)
        endpoints = _endpoints(snapshot, service, port, trust_domain)
        lb, tls = _policy(rule_spec.get("trafficPolicy"), number, "ROUND_ROBIN", "AUTO")
        yield Cluster(name=cluster_name(host, number), service=host, port=number, protocol=protocol,
                      endpoints=tuple(endpoints), lb_policy=lb, tls_mode=tls)
        for subset in rule_spec.get("subsets") or []:
            name = str(subset.get("name") or "")
            if not name:
                continue
            sub_lb, sub_tls = _policy(subset.get("trafficPolicy"), number, lb, tls)
            labels = subset.get("labels") or {}
            yield Cluster(name=cluster_name(host, number, name), service=host, port=number, protocol=protocol,
                          subset=name, endpoints=tuple(e for e in endpoints if selects(labels, e.labels)),
                          lb_policy=sub_lb, tls_mode=sub_tls)
