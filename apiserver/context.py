"""The state one apiserver shares across requests (typed aiohttp app key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from apiserver.admission import ServiceAllocator, admit_secret
from apiserver.metrics import ApiMetrics
from apiserver.registry import MutatingAdmission, Registry
from apiserver.settings import ApiServerSettings
from apiserver.storage.interface import Storage
from apiserver.watchcache import WatchCaches
from apiserver.watchflush import WatchFlusher
from machinery.resources import RESOURCES, ResourceInfo


@dataclass
class ApiContext:
    """Storage, caches, registries and metrics of one running apiserver."""

    settings: ApiServerSettings
    storage: Storage
    caches: WatchCaches
    metrics: ApiMetrics
    registries: dict[str, Registry] = field(default_factory=dict)
    watch_flusher: WatchFlusher = field(default_factory=WatchFlusher)
    server_address: str = "127.0.0.1:6443"

    @property
    def consistent_from_cache(self) -> bool:
        """An in-process store's every write reaches the cache, so consistent lists may use it."""
        return self.settings.store in ("sqlite", "memory")

    def __post_init__(self) -> None:
        services = next(r for r in RESOURCES if r.kind == "Service")
        allocator = ServiceAllocator(self.settings.service_cidr, self.caches.get(services))
        hooks: dict[str, MutatingAdmission] = {"Service": allocator.admit, "Secret": admit_secret}
        namespaces = self.caches.get(next(r for r in RESOURCES if r.kind == "Namespace"))

        def cached_namespace(name: str) -> dict[str, Any] | None:
            return namespaces.get(f"/registry/namespaces/{name}")

        for r in RESOURCES:
            self.registries[r.group_resource] = Registry(r, self.storage, hooks.get(r.kind), cached_namespace)

    def registry(self, resource: ResourceInfo) -> Registry:
        return self.registries[resource.group_resource]


CONTEXT: web.AppKey[ApiContext] = web.AppKey("kubelab_context", ApiContext)
