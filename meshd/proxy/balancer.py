"""Load balancing over a cluster's endpoints: ROUND_ROBIN, LEAST_REQUEST (power of two choices), RANDOM.

One :class:`Balancer` per cluster, owned by the applied configuration
(:mod:`meshd.proxy.config`). A new push of the same cluster keeps the balancer's in-flight
counts for endpoints that remain (:meth:`Balancer.updated`), so least-request stays accurate
across config changes.

``pick(exclude)`` picks among the endpoints outlier detection leaves in service
(:mod:`meshd.proxy.outlier`, when the cluster has a policy; the detector too is kept across
pushes) and skips endpoints already tried by this request (Istio's ``retryIgnorePreviousHosts``,
on by default) unless nothing else is left. The caller brackets each request with
:meth:`Balancer.started` / :meth:`Balancer.finished` and tells the detector how each try went
with :meth:`Balancer.report`.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from meshd.api.resources import Cluster, Endpoint
from meshd.proxy.outlier import OutlierDetector

__all__ = ["Balancer"]


class Balancer:
    """The endpoints of one cluster and the policy that picks among them."""

    __slots__ = ("_active", "_next", "_rng", "cluster", "endpoints", "outlier")

    def __init__(self, cluster: Cluster, rng: random.Random, active: dict[tuple[str, int], int] | None = None,
                 outlier: OutlierDetector | None = None) -> None:
        self.cluster = cluster
        self.endpoints: tuple[Endpoint, ...] = cluster.endpoints
        self._rng = rng
        self._next = rng.randrange(len(self.endpoints)) if self.endpoints else 0
        self._active: dict[tuple[str, int], int] = active if active is not None else {}
        policy = cluster.outlier_detection
        self.outlier: OutlierDetector | None = None
        if policy is not None:
            self.outlier = outlier.updated(policy, self.endpoints) if outlier is not None \
                else OutlierDetector(cluster.name, policy)

    def updated(self, cluster: Cluster) -> Balancer:
        """A balancer for a new version of the cluster, keeping the in-flight counts and outlier state."""
        return Balancer(cluster, self._rng, self._active, self.outlier)

    def report(self, endpoint: Endpoint, status: int) -> None:
        """How a try to ``endpoint`` ended: its response status, or 503/504 for a connect failure,
        reset or timeout (Envoy's mapping of locally originated errors)."""
        if self.outlier is not None:
            self.outlier.report(endpoint, status, len(self.endpoints))

    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        endpoints: Sequence[Endpoint] = self.endpoints
        if self.outlier is not None:
            endpoints = self.outlier.available(endpoints)
        if exclude:
            left = tuple(e for e in endpoints if e not in exclude)
            endpoints = left or endpoints
        n = len(endpoints)
        if n == 0:
            return None
        if n == 1:
            return endpoints[0]
        policy = self.cluster.lb_policy
        if policy == "LEAST_REQUEST":
            a = endpoints[self._rng.randrange(n)]
            b = endpoints[self._rng.randrange(n)]
            active = self._active
            return a if active.get((a.address, a.port), 0) <= active.get((b.address, b.port), 0) else b
        if policy == "RANDOM":
            return endpoints[self._rng.randrange(n)]
        self._next = (self._next + 1) % n
        return endpoints[self._next]

    def started(self, endpoint: Endpoint) -> None:
        key = (endpoint.address, endpoint.port)
        self._active[key] = self._active.get(key, 0) + 1

    def finished(self, endpoint: Endpoint) -> None:
        key = (endpoint.address, endpoint.port)
        count = self._active.get(key, 0) - 1
        if count > 0:
            self._active[key] = count
        else:
            self._active.pop(key, None)

    def active(self, endpoint: Endpoint) -> int:
        return self._active.get((endpoint.address, endpoint.port), 0)
