"""The state one apiserver shares across requests (typed aiohttp app key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from apiserver.admission import ServiceAllocator, admit_secret
from apiserver.admission_limitranger import LimitRanger
from apiserver.admission_lookup import AdmissionLookup
from apiserver.admission_resourcequota import ResourceQuotaAdmission
from apiserver.admission_serviceaccount import ServiceAccountAdmission
from apiserver.admission_storageclass import StorageClassAdmission
from apiserver.admission_storageprotection import with_storage_protection
from apiserver.admission_tolerations import with_default_tolerations
from apiserver.apiextensions.controller import ApiExtensions
from apiserver.apiextensions.cr_registry import CrdRegistry
from apiserver.autoscaling_registry import registry_class
from apiserver.metrics import ApiMetrics
from apiserver.registry import MutatingAdmission, Registry, ValidatingAdmission
from apiserver.settings import ApiServerSettings
from apiserver.storage.interface import Storage
from apiserver.watchcache import WatchCaches
from apiserver.watchflush import WatchFlusher
from machinery.resources import CUSTOMRESOURCEDEFINITIONS, LIMITRANGES, RESOURCEQUOTAS, RESOURCES, ResourceInfo


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
    apiextensions: ApiExtensions = field(init=False)

    @property
    def consistent_list_wait(self) -> float:
        """How long a consistent list waits for the cache to reach the store's current revision.

        An in-process store's every write reaches the cache, so it always catches up. etcd's
        revision also moves with writes outside kubelab's prefix, which the cache never sees (and
        etcd 3.4's progress notifications cannot be trusted to tell it): a short wait, then the
        list is read from etcd instead.
        """
        return 3.0 if self.settings.store in ("sqlite", "memory") else self.settings.etcd_cache_list_wait

    def __post_init__(self) -> None:
        services = next(r for r in RESOURCES if r.kind == "Service")
        allocator = ServiceAllocator(self.settings.service_cidr, self.caches.get(services))
        accounts = self.caches.get(next(r for r in RESOURCES if r.kind == "ServiceAccount"))

        async def service_account(namespace: str, name: str) -> dict[str, Any] | None:
            key = accounts.resource.storage_key(namespace, name)
            obj = accounts.get(key)
            if obj is None and (kv := await self.storage.get(key)):
                obj = orjson.loads(kv.value)
            return obj

        limit_ranger = LimitRanger(AdmissionLookup(self.storage, self.caches.get(LIMITRANGES)))
        quota = ResourceQuotaAdmission(self.storage, AdmissionLookup(self.storage, self.caches.get(RESOURCEQUOTAS)))
        pod_admission = with_default_tolerations(
            limit_ranger.with_defaults(ServiceAccountAdmission(service_account).admit), self.settings)
        hooks: dict[str, MutatingAdmission] = {"Service": allocator.admit, "Secret": admit_secret,
                                               "Pod": pod_admission}
        namespaces = self.caches.get(next(r for r in RESOURCES if r.kind == "Namespace"))
        classes = self.caches.get(next(r for r in RESOURCES if r.kind == "StorageClass"))
        hooks["PersistentVolumeClaim"] = with_storage_protection(
            "PersistentVolumeClaim", StorageClassAdmission(lambda: list(classes.decoded())).admit)
        hooks["PersistentVolume"] = with_storage_protection("PersistentVolume", None)

        def cached_namespace(name: str) -> dict[str, Any] | None:
            return namespaces.get(namespaces.resource.storage_key(None, name))

        for r in RESOURCES:
            registry = registry_class(r)(r, self.storage, hooks.get(r.kind), cached_namespace)
            registry.validating_admission = _validating(r, limit_ranger, quota)
            # A resource's first (preferred) version by its name; further versions by version too.
            served = f"{r.version}/{r.group_resource}" if r.group_resource in self.registries else r.group_resource
            self.registries[served] = registry
        crds = CrdRegistry(CUSTOMRESOURCEDEFINITIONS, self.storage)
        self.registries[CUSTOMRESOURCEDEFINITIONS.group_resource] = crds
        self.apiextensions = ApiExtensions(self.storage, self.caches, crds, cached_namespace)

    def registry(self, resource: ResourceInfo) -> Registry:
        if resource.custom is not None:
            return self.apiextensions.registry_for(resource)
        return self.registries.get(f"{resource.version}/{resource.group_resource}") or \
            self.registries[resource.group_resource]


def _validating(resource: ResourceInfo, limit_ranger: LimitRanger, quota: ResourceQuotaAdmission
                ) -> ValidatingAdmission | None:
    """The built-in validating admission of ``resource``: LimitRanger's checks for pods and claims,
    then ResourceQuota (Kubernetes' last plugin) for every namespaced kind."""
    steps = [step for step in (
        {"Pod": limit_ranger.validate_pod, "PersistentVolumeClaim": limit_ranger.validate_claim}.get(resource.kind)
        if not resource.group else None,
        quota.for_resource(resource),
    ) if step is not None]
    if not steps or "create" not in resource.verbs or "get" not in resource.verbs:
        return None

    async def admit(obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        for step in steps:
            await step(obj, old, dry_run)
    return admit


CONTEXT: web.AppKey[ApiContext] = web.AppKey("kubelab_context", ApiContext)
