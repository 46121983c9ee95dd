"""The resource-quota controller: keeps every ResourceQuota's ``status.hard`` and ``status.used``
current (Kubernetes' ``pkg/controller/resourcequota``).

Started by ``controllers.manager``. Handlers only enqueue quota keys (``namespace/name``):

* a quota when it is added, when its ``spec`` changes or its ``status.hard`` lags ``spec.hard``, and
  on every informer resync (the periodic full recalculation);
* every quota of a namespace when a pod, Service, claim, ConfigMap, Secret, ReplicationController or
  ResourceQuota there is added or deleted, or updated in a way that changes what it costs (a pod
  turning Succeeded/Failed gives its compute back) — upstream's replenishment.

``sync`` counts the namespace's objects afresh through the API (a consistent list per counted
resource, evaluated by :mod:`machinery.quota.evaluators`, the same code ResourceQuota admission
charges with), and writes ``status`` through ``/status`` with the quota's resourceVersion when it
changed. An admission charge between the read and the write makes the write conflict; the key is
retried with backoff and counts again. Kinds counted only by ``count/<resource>.<group>`` names
have no informer here: their quotas are recounted on quota events and resyncs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import (
    INDEX_NAMESPACE,
    ApiClient,
    InformerFactory,
    SharedInformer,
    run_workers,
    wait_for_cache_sync,
)
from machinery.meta import object_key, utcnow
from machinery.quota.evaluators import counted_resource, quota_matches, resources_for, scoped_names, usage
from machinery.quota.resourcelists import ResourceList, add, dump_list, mask, parse_list, zero_fill
from machinery.resources import (
    CONFIGMAPS,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    REPLICATIONCONTROLLERS,
    RESOURCEQUOTAS,
    SECRETS,
    SERVICES,
    ResourceInfo,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
REPLENISHED = (PODS, SERVICES, PERSISTENTVOLUMECLAIMS, CONFIGMAPS, SECRETS, REPLICATIONCONTROLLERS, RESOURCEQUOTAS)
"""Kinds whose changes recount their namespace's quotas at once (the others wait for a resync)."""


def desired_status(quota: Obj, used: ResourceList) -> Obj:
    """``status`` for ``quota`` given the usage counted for its hard names."""
    hard = parse_list((quota.get("spec") or {}).get("hard"))
    return {"hard": dump_list(hard), "used": dump_list(mask(zero_fill(used, hard), hard))}


def _same_status(a: Obj | None, b: Obj) -> bool:
    a = a or {}
    return all(parse_list(a.get(part)) == parse_list(b.get(part)) and
               set(a.get(part) or {}) == set(b.get(part) or {}) for part in ("hard", "used"))


class ResourceQuotaController:
    """Recalculates quota usage in each namespace."""

    name = "resourcequota"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.queue = settings.workqueue(self.name)
        self.quotas = factory.informer(RESOURCEQUOTAS)
        self.quotas.add_handler(on_add=self._enqueue, on_update=self._quota_updated,
                                on_delete=lambda q: self.queue.forget(object_key(q)))
        self.watched: list[SharedInformer] = []
        for resource in REPLENISHED:
            informer = self.quotas if resource is RESOURCEQUOTAS else factory.informer(resource)
            informer.add_handler(on_add=self._namespace_changed, on_delete=self._namespace_changed,
                                 on_update=self._replenisher(resource))
            self.watched.append(informer)

    # ---- handlers (enqueue only) -------------------------------------------------------------
    def _enqueue(self, quota: Obj) -> None:
        self.queue.add(object_key(quota))

    def _quota_updated(self, old: Obj, cur: Obj) -> None:
        spec = cur.get("spec") or {}
        lagging = parse_list(spec.get("hard")) != parse_list((cur.get("status") or {}).get("hard"))
        if old is cur or old == cur or old.get("spec") != spec or lagging:
            self._enqueue(cur)

    def _namespace_changed(self, obj: Obj) -> None:
        namespace = (obj.get("metadata") or {}).get("namespace")
        if namespace:
            for quota in self.quotas.store.by_index(INDEX_NAMESPACE, str(namespace)):
                self._enqueue(quota)

    def _replenisher(self, resource: ResourceInfo) -> Callable[[Obj, Obj], None]:
        def updated(old: Obj, cur: Obj) -> None:
            now = self.clock()
            if usage(resource.plural, resource.group, old, now) != usage(resource.plural, resource.group, cur, now):
                self._namespace_changed(cur)
        return updated

    # ---- workers -----------------------------------------------------------------------------
    async def run(self, workers: int) -> None:
        """Sync quotas with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.quotas, *self.watched)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    async def sync(self, key: str) -> None:
        """Count the usage of quota ``key`` and write its status when it changed."""
        quota = self.quotas.store.get(key)
        if quota is None:
            return
        used = await self.count(quota)
        status = desired_status(quota, used)
        if _same_status(quota.get("status"), status):
            return
        body = {**quota, "status": status}
        try:
            await self.client.update(RESOURCEQUOTAS, body, subresource="status")
        except errors.NotFoundError:
            return
        log.debug("resourcequota %s: used %s", key, status["used"])

    async def count(self, quota: Obj) -> ResourceList:
        """What the objects of the quota's namespace that it tracks consume (its hard names only)."""
        namespace = str(quota["metadata"]["namespace"])
        names = scoped_names(quota, (quota.get("spec") or {}).get("hard") or {})
        now = self.clock()
        used: ResourceList = {}
        for group, plural in sorted({r for name in names if (r := resources_for(name)) is not None}):
            resource = counted_resource(group, plural)
            if resource is None:
                continue
            listed = await self.client.list(resource, namespace=namespace)
            for item in listed.get("items") or []:
                if quota_matches(quota, plural, group, item):
                    used = add(used, usage(plural, group, item, now))
        return mask(used, names)


