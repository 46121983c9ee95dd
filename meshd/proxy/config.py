"""The applied configuration: resources per type, their versions, and the compiled snapshot the data plane reads.

:class:`ConfigStore` is written by the xDS client (:mod:`meshd.proxy.xds`) and read by the
listeners. :meth:`ConfigStore.apply` takes one state-of-the-world response: it decodes every
resource strictly, runs :meth:`RouteConfig.check`, compiles route tables, and only when all of
that succeeded swaps in a new immutable :class:`Snapshot` (one attribute assignment, so a request
sees either the old or the new configuration, never a mix). Any failure raises
:class:`ResourceError` and leaves the previous snapshot and version in force: the caller NACKs.

A snapshot is built in push order terms: listeners may name route configs and clusters that are
not there (yet); the data plane answers those requests with 503 ``NR``/``UH`` as Envoy does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meshd.api.resources import (
    CLUSTERS,
    INBOUND,
    LISTENERS,
    PUSH_ORDER,
    ROUTES,
    TYPES,
    Cluster,
    Inbound,
    InboundPort,
    Listener,
    ResourceError,
    RouteConfig,
    decode,
    encode,
)
from meshd.proxy.authz import Authorizer
from meshd.proxy.balancer import Balancer
from meshd.proxy.routing import RouteTable, compile_route_config

__all__ = ["ConfigStore", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """Everything the data plane reads, compiled; replaced whole on every applied change."""

    listeners: dict[tuple[str, int], Listener] = field(default_factory=dict)
    routes: dict[str, RouteTable] = field(default_factory=dict)
    clusters: dict[str, Balancer] = field(default_factory=dict)
    inbound: Inbound = field(default_factory=Inbound)
    inbound_ports: dict[int, InboundPort] = field(default_factory=dict)
    authz: Authorizer = field(default_factory=Authorizer)
    """The workload's AuthorizationPolicies, compiled (:mod:`meshd.proxy.authz`)."""

    def listener(self, address: str, port: int) -> Listener | None:
        return self.listeners.get((address, port))


class ConfigStore:
    """Per-type applied resources and versions; the current :class:`Snapshot`."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.resources: dict[str, dict[str, Any]] = {t: {} for t in PUSH_ORDER}
        self.versions: dict[str, str] = {}
        """type URL → last applied version (absent: never applied)."""
        self.snapshot = Snapshot()

    @property
    def complete(self) -> bool:
        """Every type applied at least once (the first full configuration)."""
        return all(t in self.versions for t in PUSH_ORDER)

    def apply(self, type_url: str, version: str, payload: Sequence[dict[str, Any]]) -> None:
        """Apply a full set of resources of one type, or raise :class:`ResourceError` changing nothing."""
        cls = TYPES.get(type_url)
        if cls is None:
            raise ResourceError(f"unknown resource type {type_url!r}")
        decoded: dict[str, Any] = {}
        for i, item in enumerate(payload):
            resource = decode(cls, item, f"{cls.__name__}[{i}]")
            if resource.name in decoded:
                raise ResourceError(f"{cls.__name__}[{i}].name: duplicate {resource.name!r}")
            if isinstance(resource, RouteConfig):
                resource.check()
            decoded[resource.name] = resource
        resources = dict(self.resources)
        resources[type_url] = decoded
        snapshot = self._compile(resources)
        self.resources = resources
        self.versions[type_url] = version
        self.snapshot = snapshot

    def _compile(self, resources: dict[str, dict[str, Any]]) -> Snapshot:
        old = self.snapshot
        clusters: dict[str, Balancer] = {}
        for name, cluster in resources[CLUSTERS].items():
            assert isinstance(cluster, Cluster)
            previous = old.clusters.get(name)
            clusters[name] = previous.updated(cluster) if previous else Balancer(cluster, self.rng)
        routes: dict[str, RouteTable] = {}
        for name, config in resources[ROUTES].items():
            prior = old.routes.get(name)
            # Unchanged route configs keep their compiled table (a push of clusters costs no recompile).
            if prior is not None and self.resources[ROUTES].get(name) == config:
                routes[name] = prior
            else:
                try:
                    routes[name] = compile_route_config(config)
                except Exception as exc:
                    raise ResourceError(f"RouteConfig {name}: {exc}") from None
        listeners = {(lis.address, lis.port): lis for lis in resources[LISTENERS].values()}
        inbound = resources[INBOUND].get("inbound") or Inbound()
        # Policies are compiled only when they changed (a push of clusters recompiles nothing here).
        authz = old.authz if inbound.authz == old.inbound.authz else Authorizer(inbound.authz)
        return Snapshot(listeners=listeners, routes=routes, clusters=clusters, inbound=inbound,
                        inbound_ports={p.port: p for p in inbound.ports}, authz=authz)

    def dump(self) -> dict[str, Any]:
        """``/config_dump``: the applied resources and versions per type."""
        return {
            "versions": dict(self.versions),
            "resources": {t: [encode(r) for r in self.resources[t].values()] for t in PUSH_ORDER},
        }
