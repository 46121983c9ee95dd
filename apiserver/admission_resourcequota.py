"""ResourceQuota admission: a create (or a growing update) that would take a namespace past one of
its quotas is refused, and an admitted one is charged to the quotas at once — Kubernetes' plugin of
that name (staging/.../admission/plugin/resourcequota), the last validating step.

For each quota of the object's namespace that tracks the object (:func:`machinery.quota.evaluators.
quota_matches`: scopes), over the names of its ``status.hard`` that the object consumes:

* a pod that leaves out a cpu/memory request or limit the quota constrains is refused,
  ``pods "x" is forbidden: failed quota: q: must specify limits.cpu for: app``;
* ``status.used`` plus the object's usage must stay within ``status.hard``, else
  ``exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2``;
* then every matching quota's ``status.used`` is raised by the usage, each by a compare-and-swap on
  its stored revision (Kubernetes' optimistic update of the quota), before the object is stored.

Concurrent creates never overshoot: the check and the charge run under a lock per namespace in this
apiserver, and the compare-and-swap makes apiservers sharing a store (or the resource-quota
controller rewriting the status) retry against the fresh quota; a quota already charged in an
earlier round is not charged twice. Usage freed by deletes and terminal pods is given back by the
controller, which also repairs a charge whose object was never stored.

Updates are charged for Services and PersistentVolumeClaims only (type and size changes), by the
growth of their usage, as the upstream evaluators handle them; subresources are never admitted. A
quota whose status the controller has not filled yet is counted here from the store, so a quota
applies from the first object created after it. Dry runs are checked and never charged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson

from apiserver.admission_lookup import AdmissionLookup
from apiserver.codec import encode
from apiserver.storage.interface import KeyNotFoundError, KeyValue, RevisionConflictError, Storage
from machinery.errors import ForbiddenError
from machinery.meta import utcnow
from machinery.quota.evaluators import (
    counted_resource,
    missing_constraints,
    quota_matches,
    resources_for,
    scoped_names,
    usage,
)
from machinery.quota.resourcelists import (
    ResourceList,
    add,
    dump_list,
    exceeded,
    mask,
    parse_list,
    pretty,
    subtract,
    zero_fill,
)
from machinery.resources import ResourceInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ValidatingAdmission = Callable[[Obj, Obj | None, bool], Awaitable[None]]
MAX_ROUNDS = 16
UPDATE_EVALUATED = frozenset({"services", "persistentvolumeclaims"})


class ResourceQuotaAdmission:
    """Checks and charges the namespace's quotas for objects being stored."""

    def __init__(self, storage: Storage, quotas: AdmissionLookup, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.storage = storage
        self.quotas = quotas
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    def for_resource(self, resource: ResourceInfo) -> ValidatingAdmission | None:
        """The validating step for objects of ``resource`` (None for cluster-scoped kinds)."""
        if not resource.namespaced:
            return None

        async def admit(obj: Obj, old: Obj | None, dry_run: bool) -> None:
            await self.admit(resource, obj, old, dry_run)
        return admit

    def _lock(self, namespace: str) -> asyncio.Lock:
        lock = self._locks.get(namespace)
        if lock is None:
            lock = self._locks[namespace] = asyncio.Lock()
        return lock

    async def admit(self, resource: ResourceInfo, obj: Obj, old: Obj | None, dry_run: bool) -> None:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        if not namespace:
            return
        now = self.clock()
        requested = usage(resource.plural, resource.group, obj, now)
        if old is not None:
            if resource.group or resource.plural not in UPDATE_EVALUATED:
                return
            grown = subtract(requested, usage(resource.plural, resource.group, old, now))
            requested = {name: q for name, q in grown.items() if q.amount > 0}
            if not requested:
                return
        async with self._lock(namespace):
            await self._charge(resource, obj, namespace, requested, dry_run)

    async def _charge(self, resource: ResourceInfo, obj: Obj, namespace: str, requested: ResourceList,
                      dry_run: bool) -> None:
        charged: set[str] = set()
        for round_ in range(MAX_ROUNDS):
            # The cache first (a stale quota fails its compare-and-swap below), the store after a conflict.
            items = await (self.quotas.current(namespace) if round_ == 0 else self.quotas.live(namespace))
            if not items:
                return
            updates: list[tuple[KeyValue, Obj]] = []
            for kv in items:
                quota = orjson.loads(kv.value)
                uid = str(quota["metadata"].get("uid") or kv.key)
                if uid in charged or not quota_matches(quota, resource.plural, resource.group, obj):
                    continue
                updated = await self._evaluate(resource, obj, quota, requested)
                if updated is not None:
                    updates.append((kv, updated))
            if dry_run:
                return
            conflict = False
            for kv, updated in updates:
                try:
                    await self.storage.update(kv.key, encode(updated), expected_revision=kv.mod_revision)
                except RevisionConflictError:
                    conflict = True
                    continue
                except KeyNotFoundError:
                    continue  # the quota was deleted meanwhile: nothing to charge
                charged.add(str(updated["metadata"].get("uid") or kv.key))
            if not conflict:
                return
        raise ForbiddenError(_message(resource, obj, "unable to update the quota status: too many "
                                                     "concurrent changes, please try again"),
                             name=_name(obj), group=resource.group, kind=resource.plural)

    async def _evaluate(self, resource: ResourceInfo, obj: Obj, quota: Obj, requested: ResourceList
                        ) -> Obj | None:
        """The quota with its usage raised by ``requested`` (None: the quota constrains nothing the
        object uses); raises Forbidden when the object breaks the quota."""
        quota_name = str(quota["metadata"].get("name", ""))
        status = quota.get("status") or {}
        if not status.get("hard"):
            status = await self.initial_status(quota, self.clock())
        hard = parse_list(status.get("hard"))
        constrained = scoped_names(quota, hard)
        if resource.plural == "pods" and not resource.group:
            missing = missing_constraints(obj, constrained)
            if missing:
                raise ForbiddenError(_message(resource, obj, f"failed quota: {quota_name}: {missing}"),
                                     name=_name(obj), group=resource.group, kind=resource.plural)
        interesting = [name for name in constrained if name in requested]
        if not interesting:
            return None
        used = zero_fill(parse_list(status.get("used")), interesting)
        new_used = add(used, mask(requested, interesting))
        over = exceeded(mask(new_used, interesting), hard)
        if over:
            raise ForbiddenError(_message(resource, obj, (
                f"exceeded quota: {quota_name}, requested: {pretty(mask(requested, over))}, "
                f"used: {pretty(mask(used, over))}, limited: {pretty(mask(hard, over))}")),
                name=_name(obj), group=resource.group, kind=resource.plural)
        updated = dict(quota)
        all_used = parse_list(status.get("used"))
        all_used.update(mask(new_used, interesting))
        updated["status"] = {"hard": dump_list(hard), "used": dump_list(mask(zero_fill(all_used, hard), hard))}
        return updated

    async def initial_status(self, quota: Obj, now: datetime) -> Obj:
        """``status`` of a quota the controller has not seen yet: its ``spec.hard`` and the usage
        counted from the store (what the controller's first sync would write)."""
        hard = parse_list((quota.get("spec") or {}).get("hard"))
        namespace = str(quota["metadata"].get("namespace") or "")
        names = scoped_names(quota, hard)
        used: ResourceList = {}
        for group, plural in sorted({r for name in names if (r := resources_for(name)) is not None}):
            info = counted_resource(group, plural)
            if info is None:
                continue
            page = await self.storage.list(info.storage_prefix(namespace))
            for kv in page.items:
                item = orjson.loads(kv.value)
                if quota_matches(quota, plural, group, item):
                    used = add(used, usage(plural, group, item, now))
        return {"hard": dump_list(hard), "used": dump_list(mask(zero_fill(used, names), names))}


def _name(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("name") or meta.get("generateName") or "")


def _message(resource: ResourceInfo, obj: Obj, detail: str) -> str:
    return f'{resource.group_resource} "{_name(obj)}" is forbidden: {detail}'
