"""Prometheus metrics of the apiserver (``/metrics``), named as Kubernetes names them.

Each apiserver gets its own ``CollectorRegistry`` so several can run in one test process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ApiMetrics:
    """Request counts and latency by verb/resource/code, watch counts, storage latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "apiserver_request", "Requests by verb, resource, subresource and HTTP code.",
            ["verb", "resource", "subresource", "code"], registry=self.registry)
        self.latency = Histogram(
            "apiserver_request_duration_seconds", "Request latency (streaming requests excluded).",
            ["verb", "resource", "subresource"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.watches = Gauge(
            "apiserver_longrunning_requests", "Open watch requests by resource.",
            ["verb", "resource"], registry=self.registry)
        self.watch_events = Counter(
            "apiserver_watch_events", "Watch events sent, by resource.", ["resource"], registry=self.registry)
        self.storage_latency = Histogram(
            "apiserver_storage_operation_duration_seconds", "Storage operation latency.",
            ["operation"], buckets=_LATENCY_BUCKETS, registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
