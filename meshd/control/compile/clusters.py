"""Clusters: a Service port's ready endpoints (per DestinationRule subset), with LB and TLS policy.

Used by :mod:`meshd.control.compile.proxy`. Reads the Service, its EndpointSlices (ready
endpoints, else serving-and-terminating ones; each slice's port named like the Service port gives
the target port of its endpoints, so a named ``targetPort`` may differ from slice to slice) and
the endpoint's pod:
its labels (subsets select on them), its workload name, and its identity -- the SPIFFE ID of
its service account, only when the pod runs the ``istio-proxy`` container (so a client uses
mTLS only toward sidecars). Policies come from the DestinationRule that applies (Istio's lookup:
the client's namespace, then the Service's, then the root namespace): ``trafficPolicy``, with
``portLevelSettings`` for the port and the subset's own ``trafficPolicy`` over it: load
balancer, client TLS mode and ``outlierDetection`` (:func:`outlier_detection`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from meshd.api.identity import SpiffeId
from meshd.api.resources import Cluster, Endpoint, LbPolicy, OutlierDetection, Protocol, TlsMode, cluster_name
from meshd.control.compile.routes import duration_ms
from meshd.control.compile.scope import Scope, fqdn, selects, service_fqdn
from meshd.control.model import MeshSnapshot, Obj, key_of

__all__ = ["PROXY_CONTAINER", "destination_rule_for", "outlier_detection", "port_protocol", "service_clusters",
           "service_ports"]

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


def _slice_port(item: Obj, wanted_name: str) -> int | None:
    """The port number this slice gives the Service port named ``wanted_name`` (named target
    ports resolve per pod, so each slice carries its own numbers)."""
    for port in item.get("ports") or []:
        if str(port.get("name") or "") == wanted_name and str(port.get("protocol") or "TCP") == "TCP":
            number = port.get("port")
            return int(number) if number else None
    return None


def _conditions(endpoint: Obj) -> tuple[bool, bool, bool]:
    """(ready, serving, terminating); an unset ``ready`` or ``serving`` means ready, as the API defines."""
    conditions = endpoint.get("conditions") or {}
    ready = conditions.get("ready") is not False
    serving = conditions.get("serving")
    return ready, ready if serving is None else bool(serving), bool(conditions.get("terminating"))


def _endpoints(snapshot: MeshSnapshot, service: Obj, port: Obj, trust_domain: str) -> list[Endpoint]:
    """The Service port's ready endpoints from all its EndpointSlices; when none is ready, the
    serving ones that are terminating (kube-proxy's fallback, so a rollout's last requests drain)."""
    key = key_of(service)
    namespace = key[0]
    wanted_name = str(port.get("name") or "")
    ready: dict[tuple[str, int], Endpoint] = {}
    draining: dict[tuple[str, int], Endpoint] = {}
    for item in snapshot.endpoint_slices.get(key, ()):
        if str(item.get("addressType") or "IPv4") not in ("IPv4", "IPv6"):
            continue  # FQDN slices name hosts, not addresses
        number = _slice_port(item, wanted_name)
        if number is None:
            continue
        for endpoint in item.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            is_ready, serving, terminating = _conditions(endpoint)
            if is_ready:
                pool = ready
            elif serving and terminating:
                pool = draining
            else:
                continue
            address = str(addresses[0])  # the API: consumers use the first address
            ref = endpoint.get("targetRef") or {}
            pod = snapshot.pods.get((str(ref.get("namespace") or namespace), str(ref.get("name") or ""))) \
                if ref.get("kind") == "Pod" else snapshot.pods_by_ip.get(address)
            pool.setdefault((address, number), Endpoint(
                address=address, port=number,
                labels=dict(((pod or {}).get("metadata") or {}).get("labels") or {}),
                identity=pod_identity(pod, trust_domain),
                workload=workload_name(pod) if pod is not None else "",
                namespace=key_of(pod)[0] if pod is not None else namespace))
    chosen = ready or draining
    return [chosen[k] for k in sorted(chosen)]


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


@dataclass(frozen=True)
class _Policy:
    lb: LbPolicy = "ROUND_ROBIN"
    tls: TlsMode = "AUTO"
    outlier: OutlierDetection | None = None


def _duration(raw: Any, default: int) -> int:
    try:
        return duration_ms(raw) if raw is not None else default
    except ValueError:
        return default  # refused by validation; an object stored before it keeps the default


def outlier_detection(raw: Any) -> OutlierDetection | None:
    """Istio's ``outlierDetection`` as Istio hands it to Envoy: ``consecutive5xxErrors`` 5 unless
    set (0 disables), ``consecutiveGatewayErrors`` off unless set, ``interval`` 10s,
    ``baseEjectionTime`` 30s, ``maxEjectionPercent`` 10 (0 too), ``minHealthPercent`` as the
    panic threshold (0: none); Envoy's ``max_ejection_time`` 300s or the base time if larger."""
    if not isinstance(raw, dict):
        return None
    base = _duration(raw.get("baseEjectionTime"), 30_000)
    return OutlierDetection(
        consecutive_5xx=int(raw.get("consecutive5xxErrors", 5) or 0),
        consecutive_gateway_errors=int(raw.get("consecutiveGatewayErrors") or 0),
        interval_ms=max(1, _duration(raw.get("interval"), 10_000)),
        base_ejection_time_ms=base, max_ejection_time_ms=max(300_000, base),
        max_ejection_percent=float(raw.get("maxEjectionPercent") or 10),
        min_health_percent=float(raw.get("minHealthPercent") or 0))


def _policy(policy: dict[str, Any] | None, port: int, base: _Policy) -> _Policy:
    """``policy`` (a TrafficPolicy) over ``base``: its own fields, then its port-level setting
    (each field, ``outlierDetection`` included, replaced whole as Istio merges policies)."""
    if not policy:
        return base
    lb, tls, outlier = base.lb, base.tls, base.outlier
    layers = [policy, *[s for s in policy.get("portLevelSettings") or []
                        if int((s.get("port") or {}).get("number") or 0) == port]]
    for layer in layers:
        simple = str((layer.get("loadBalancer") or {}).get("simple") or "")
        lb = _LB.get(simple, lb)
        mode = str((layer.get("tls") or {}).get("mode") or "")
        tls = _TLS.get(mode, tls)
        if isinstance(layer.get("outlierDetection"), dict):
            outlier = outlier_detection(layer["outlierDetection"])
    return _Policy(lb, tls, outlier)


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
        policy = _policy(rule_spec.get("trafficPolicy"), number, _Policy())
        yield Cluster(name=cluster_name(host, number), service=host, port=number, protocol=protocol,
                      endpoints=tuple(endpoints), lb_policy=policy.lb, tls_mode=policy.tls,
                      outlier_detection=policy.outlier)
        for subset in rule_spec.get("subsets") or []:
            name = str(subset.get("name") or "")
            if not name:
                continue
            sub = _policy(subset.get("trafficPolicy"), number, policy)
            labels = subset.get("labels") or {}
            yield Cluster(name=cluster_name(host, number, name), service=host, port=number, protocol=protocol,
                          subset=name, endpoints=tuple(e for e in endpoints if selects(labels, e.labels)),
                          lb_policy=sub.lb, tls_mode=sub.tls, outlier_detection=sub.outlier)
