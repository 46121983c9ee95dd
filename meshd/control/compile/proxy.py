"""One proxy's configuration: every resource type of :mod:`meshd.api.resources`, versioned.

:func:`compile_proxy` is the compiler's entry point (called by :mod:`meshd.control.push` for each
connected proxy, and by tests table-driven): a snapshot and a :class:`ProxyNode` in, a
:class:`ProxyConfig` out -- the encoded resources per type URL, a content-hash version per type
(equal content, equal version: a proxy is sent a type again only when what it would receive
changed) and the config errors met on the way.

For each Service the proxy sees (:class:`~meshd.control.compile.scope.Scope`): its clusters
(:mod:`.clusters`), for each HTTP port a virtual host in that port's RouteConfig (:mod:`.routes`),
and a listener per ClusterIP:port (HTTP protocols name the RouteConfig, others the cluster).
The proxy's own side is one Inbound (:mod:`.inbound`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from meshd.api.resources import (
    CLUSTERS,
    INBOUND,
    LISTENERS,
    ROUTES,
    Cluster,
    Inbound,
    Listener,
    Route,
    RouteConfig,
    VirtualHost,
    WeightedCluster,
    cluster_name,
    encode,
)
from meshd.control.compile.clusters import port_protocol, service_clusters, service_ports
from meshd.control.compile.errors import ConfigError
from meshd.control.compile.inbound import compile_inbound
from meshd.control.compile.routes import http_routes, virtual_service_for
from meshd.control.compile.scope import ProxyNode, Scope, service_fqdn
from meshd.control.model import MeshSnapshot, Obj, key_of

__all__ = ["ProxyCompiler", "ProxyConfig", "compile_outbound", "compile_proxy", "with_inbound"]

HTTP_PROTOCOLS = ("http", "http2", "grpc")


@dataclass(frozen=True)
class ProxyConfig:
    resources: dict[str, tuple[dict[str, Any], ...]]
    """Encoded resources per type URL, sorted by name."""
    versions: dict[str, str]
    errors: tuple[ConfigError, ...] = ()
    route_sources: dict[str, dict[str, str]] = field(default_factory=dict)
    """RouteConfig name → ``virtual_hosts[h].routes[r]`` → the route's source (for NACK reports)."""


def _version(items: Iterable[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:16]


def _domains(service: Obj, port: int, same_namespace: bool) -> tuple[str, ...]:
    namespace, name = key_of(service)
    names = [f"{name}.{namespace}", f"{name}.{namespace}.svc", service_fqdn(service)]
    if same_namespace:
        names.insert(0, name)
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        names.append(str(cluster_ip))
    return tuple(d for n in names for d in (n, f"{n}:{port}"))


def compile_proxy(snapshot: MeshSnapshot, node: ProxyNode, *, root_namespace: str = "istio-system",
                  trust_domain: str = "cluster.local") -> ProxyConfig:
    """Everything ``node``'s proxy receives from ``snapshot``."""
    outbound = compile_outbound(snapshot, node, root_namespace=root_namespace, trust_domain=trust_domain)
    return with_inbound(outbound, compile_inbound(snapshot, node, root_namespace))


def with_inbound(outbound: ProxyConfig, inbound: Inbound) -> ProxyConfig:
    encoded = (encode(inbound),)
    return replace(outbound, resources={**outbound.resources, INBOUND: encoded},
                   versions={**outbound.versions, INBOUND: _version(encoded)})


def compile_outbound(snapshot: MeshSnapshot, node: ProxyNode, *, root_namespace: str = "istio-system",
                     trust_domain: str = "cluster.local") -> ProxyConfig:
    """Clusters, routes and listeners: the same for every proxy of one namespace and label set."""
    scope = Scope(node, snapshot.sidecars, root_namespace)
    visible = sorted((s for s in snapshot.services.values() if scope.sees_service(s)), key=key_of)
    clusters: dict[str, Cluster] = {}
    for service in visible:
        for cluster in service_clusters(snapshot, scope, service, root_namespace=root_namespace,
                                        trust_domain=trust_domain):
            clusters[cluster.name] = cluster
    ports_of: dict[str, list[int]] = {}
    for service in visible:
        ports_of[service_fqdn(service)] = [int(p.get("port") or 0) for p in service_ports(service)]

    def has_cluster(host: str, port: int, subset: str) -> bool:
        return cluster_name(host, port, subset) in clusters

    def only_port(host: str) -> int | None:
        ports = ports_of.get(host) or []
        return ports[0] if len(ports) == 1 else None

    errors: list[ConfigError] = []
    hosts_by_port: dict[int, list[VirtualHost]] = {}
    listeners: list[Listener] = []
    for service in visible:
        host = service_fqdn(service)
        vs = virtual_service_for(snapshot, scope, host)
        cluster_ip = str((service.get("spec") or {}).get("clusterIP") or "")
        for port in service_ports(service):
            number = int(port.get("port") or 0)
            protocol = port_protocol(port)
            if protocol in HTTP_PROTOCOLS:
                routes: tuple[Route, ...] = ()
                if vs is not None:
                    try:
                        routes = http_routes(vs, scope, host, number, has_cluster=has_cluster, only_port=only_port,
                                             errors=errors)
                    except (ValueError, TypeError) as exc:
                        ns, name = key_of(vs)
                        errors.append(ConfigError("VirtualService", ns, name, "IST0002", "InvalidConfig", str(exc)))
                        vs = None
                if vs is None:
                    routes = (Route(name="default", destinations=(WeightedCluster(cluster_name(host, number)),),
                                    source=f"Service {key_of(service)[0]}/{key_of(service)[1]}"),)
                for missing in sorted({w.cluster for r in routes for w in r.destinations} - set(clusters)):
                    # A missing subset: an empty cluster answers 503, and the error says why.
                    _, c_port, c_subset, c_host = missing.split("|", 3)
                    clusters[missing] = Cluster(name=missing, service=c_host, port=int(c_port), protocol=protocol,
                                                subset=c_subset)
                hosts_by_port.setdefault(number, []).append(VirtualHost(
                    name=f"{host}:{number}", domains=_domains(service, number, key_of(service)[0] == node.namespace),
                    routes=routes))
            if cluster_ip and cluster_ip != "None":
                http = protocol in HTTP_PROTOCOLS
                listeners.append(Listener(name=f"{cluster_ip}_{number}", address=cluster_ip, port=number,
                                          protocol=protocol, route_config=str(number) if http else "",
                                          cluster="" if http else cluster_name(host, number)))
    route_configs = [RouteConfig(name=str(port), virtual_hosts=tuple(hosts))
                     for port, hosts in sorted(hosts_by_port.items())]
    route_sources = {rc.name: {f"virtual_hosts[{h}].routes[{r}]": route.source
                               for h, vhost in enumerate(rc.virtual_hosts) for r, route in enumerate(vhost.routes)}
                     for rc in route_configs}
    resources = {
        CLUSTERS: tuple(encode(c) for c in sorted(clusters.values(), key=lambda c: c.name)),
        ROUTES: tuple(encode(r) for r in route_configs),
        LISTENERS: tuple(encode(listener) for listener in sorted(listeners, key=lambda x: x.name)),
    }
    return ProxyConfig(resources=resources, versions={t: _version(items) for t, items in resources.items()},
                       errors=tuple(sorted(set(errors))), route_sources=route_sources)


class ProxyCompiler:
    """:func:`compile_proxy` with the outbound part shared by proxies of equal namespace and labels,
    per snapshot generation (500 replicas of one Deployment cost one outbound compile)."""

    def __init__(self, snapshot: Callable[[], MeshSnapshot], *, root_namespace: str = "istio-system",
                 trust_domain: str = "cluster.local") -> None:
        self.snapshot = snapshot
        self.root_namespace = root_namespace
        self.trust_domain = trust_domain
        self._generation = -1
        self._outbound: dict[tuple[object, ...], ProxyConfig] = {}
        self.compiles = 0

    def __call__(self, node: ProxyNode) -> ProxyConfig:
        snapshot = self.snapshot()
        if snapshot.generation != self._generation:
            self._generation, self._outbound = snapshot.generation, {}
        key = (node.namespace, tuple(sorted(node.labels.items())))
        outbound = self._outbound.get(key)
        if outbound is None:
            outbound = self._outbound[key] = compile_outbound(snapshot, node, root_namespace=self.root_namespace,
                                                              trust_domain=self.trust_domain)
            self.compiles += 1
        return with_inbound(outbound, compile_inbound(snapshot, node, self.root_namespace))
