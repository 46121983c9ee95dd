"""The CRD controller inside the apiserver: names, ``Established``, serving, and clean-up on delete.

One task follows the CustomResourceDefinition watch cache; handlers only enqueue the CRD's
name, and ``sync(name)`` is level-triggered and idempotent (client-go's shape):

- a live CRD gets its names decided (:mod:`.naming`); once they are accepted its served
  versions (:func:`.served.served_resources`) are registered in ``machinery.resources`` and
  the watch caches, so routing, discovery and OpenAPI serve them, and only then is
  ``Established=True`` written to its status (a client that sees it established can use it);
- a CRD marked for deletion that holds ``customresourcecleanup.apiextensions.k8s.io`` gets
  ``Terminating=True``, its objects are deleted through their registry (finalizers honoured),
  then the finalizer is removed and the CRD goes; its resources stop being served when it is gone.

:meth:`ApiExtensions.restore` registers the CRDs found in storage before the watch caches'
first list, so an apiserver that restarts serves every established CRD again from the start.
A failing sync is logged and retried with capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

import orjson

from apiserver.apiextensions.cr_registry import CLEANUP_FINALIZER, CrdRegistry, CustomResourceRegistry
from apiserver.apiextensions.naming import decide, set_condition
from apiserver.apiextensions.schema_seam import SchemaError
from apiserver.apiextensions.served import served_resources
from apiserver.codec import decode
from apiserver.registry import Registry
from apiserver.storage.interface import Storage
from apiserver.watchcache import WatchCaches, Watcher, match_all
from apiserver.write_options import DeleteOptions, WriteOptions
from machinery import resources
from machinery.errors import ConflictError, NotFoundError
from machinery.resources import CUSTOMRESOURCEDEFINITIONS, ResourceInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MAX_BACKOFF_SECONDS = 10.0


class ApiExtensions:
    """Serving of CustomResourceDefinitions for one apiserver."""

    def __init__(self, storage: Storage, caches: WatchCaches, crds: CrdRegistry, namespace_cache: Any) -> None:
        self.storage = storage
        self.caches = caches
        self.crds = crds
        self.namespace_cache = namespace_cache
        self.served: dict[str, list[ResourceInfo]] = {}  # CRD name -> its registered versions
        self._fingerprints: dict[str, bytes] = {}
        self._registries: dict[tuple[str, str, str], CustomResourceRegistry] = {}
        self._queue: set[str] = set()
        self._wakeup = asyncio.Event()
        self._failures: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._watcher: Watcher | None = None

    # ---- registries -------------------------------------------------------------------------
    def registry_for(self, resource: ResourceInfo) -> Registry:
        key = (resource.group, resource.version, resource.plural)
        found = self._registries.get(key)
        if found is None or found.resource is not resource:
            crd_name = f"{resource.plural}.{resource.group}"  # validated: <plural>.<group>
            found = CustomResourceRegistry(resource, self.storage, None, self.namespace_cache,
                                           terminating=lambda: self._terminating(crd_name))
            self._registries[key] = found
        return found

    def _terminating(self, name: str) -> bool:
        """Whether CRD ``name`` is marked for deletion (read from the watch cache)."""
        crd = self.caches.get(CUSTOMRESOURCEDEFINITIONS).get(CUSTOMRESOURCEDEFINITIONS.storage_key(None, name))
        return crd is not None and bool(crd["metadata"].get("deletionTimestamp"))

    # ---- lifecycle --------------------------------------------------------------------------
    async def restore(self) -> None:
        """Serve every CRD in storage whose names were accepted (before the caches' first list)."""
        listed = await self.storage.list(CUSTOMRESOURCEDEFINITIONS.storage_prefix())
        for kv in listed.items:
            crd = decode(kv)
            accepted = next((c for c in (crd.get("status") or {}).get("conditions") or []
                             if c.get("type") == "NamesAccepted" and c.get("status") == "True"), None)
            if accepted is not None:
                self._serve(crd)

    def start(self) -> None:
        cache = self.caches.get(CUSTOMRESOURCEDEFINITIONS)
        watcher, initial = cache.watch(None, match_all, after_revision=None)
        self._watcher = watcher
        for event in initial:
            self._queue.add(event.object["metadata"]["name"])
        self._wakeup.set()
        self._task = asyncio.create_task(self._run(), name="crd-controller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._watcher is not None:
            self.caches.get(CUSTOMRESOURCEDEFINITIONS).unwatch(self._watcher)
        for name in list(self.served):
            self._unserve(name)

    async def _run(self) -> None:
        assert self._watcher is not None
        watcher = self._watcher
        while True:
            waits = [asyncio.ensure_future(watcher.wakeup.wait()), asyncio.ensure_future(self._wakeup.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if watcher.closed:
                # The cache re-listed: follow it again from its current state.
                watcher, initial = self.caches.get(CUSTOMRESOURCEDEFINITIONS).watch(None, match_all,
                                                                                    after_revision=None)
                self._watcher = watcher
                self._queue.update(e.object["metadata"]["name"] for e in initial)
                self._queue.update(self.served)
            for event in watcher.take():
                self._queue.add(event.object["metadata"]["name"])
            self._wakeup.clear()
            names, self._queue = sorted(self._queue), set()
            for name in names:
                await self._sync_guarded(name)

    async def _sync_guarded(self, name: str) -> None:
        try:
            await self.sync(name)
        except asyncio.CancelledError:
            raise
        except Exception:
            failures = self._failures.get(name, 0) + 1
            self._failures[name] = failures
            delay = min(0.05 * 2 ** failures, MAX_BACKOFF_SECONDS)
            log.exception("sync of customresourcedefinition %s failed; retrying in %.2fs", name, delay)
            asyncio.get_running_loop().call_later(delay, self._requeue, name)
        else:
            self._failures.pop(name, None)

    def _requeue(self, name: str) -> None:
        self._queue.add(name)
        self._wakeup.set()

    # ---- sync -------------------------------------------------------------------------------
    async def sync(self, name: str) -> None:
        cache = self.caches.get(CUSTOMRESOURCEDEFINITIONS)
        crd = cache.get(CUSTOMRESOURCEDEFINITIONS.storage_key(None, name))
        if crd is None:
            self._unserve(name)
            return
        if crd["metadata"].get("deletionTimestamp"):
            await self._finalize(crd)
            return
        naming = decide(crd, list(cache.decoded()))
        status = copy.deepcopy(crd.get("status") or {})
        status["acceptedNames"] = naming.accepted_names
        set_condition(status, naming.names_accepted)
        if naming.names_accepted["status"] == "True":
            self._serve(dict(crd, status=status))
        set_condition(status, naming.established)
        if status != crd.get("status"):
            await self._write_status(name, status)

    async def _write_status(self, name: str, status: Obj) -> None:
        def put(live: Obj) -> Obj:
            live["status"] = status
            return live

        with contextlib.suppress(NotFoundError, ConflictError):
            await self.crds.mutate(None, name, put, WriteOptions(), subresource="status")

    def _serve(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        fingerprint = orjson.dumps([crd.get("spec"), (crd.get("status") or {}).get("acceptedNames")],
                                   option=orjson.OPT_SORT_KEYS)
        if self._fingerprints.get(name) == fingerprint:
            return
        try:
            infos = served_resources(crd)
        except (SchemaError, KeyError) as exc:
            log.warning("customresourcedefinition %s cannot be served: %s", name, exc)
            return
        previous = self.served.get(name)
        if previous and infos and (previous[0].group, previous[0].plural) != (infos[0].group, infos[0].plural):
            self._unserve(name)
        for info in infos:
            self.caches.add(info)
        if infos:
            resources.register(infos)
        elif previous:
            resources.unregister(previous[0].group, previous[0].plural)
        self.served[name] = infos
        self._fingerprints[name] = fingerprint
        log.info("serving %s (versions %s)", name, ", ".join(i.version for i in infos))

    def _unserve(self, name: str) -> None:
        infos = self.served.pop(name, None)
        self._fingerprints.pop(name, None)
        if not infos:
            return
        resources.unregister(infos[0].group, infos[0].plural)
        self.caches.remove(infos[0])
        for info in infos:
            self._registries.pop((info.group, info.version, info.plural), None)
        log.info("stopped serving %s", name)

    async def _finalize(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        if CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or []):
            return
        status = copy.deepcopy(crd.get("status") or {})
        set_condition(status, {"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
                               "message": "CustomResource deletion is in progress",
                               "lastTransitionTime": crd["metadata"]["deletionTimestamp"]})
        if status != crd.get("status"):
            await self._write_status(name, status)
        remaining = await self._delete_objects(crd)
        if remaining:
            raise RuntimeError(f"{remaining} objects of {name} are still being deleted")

        def release(live: Obj) -> Obj:
            live["metadata"]["finalizers"] = [f for f in live["metadata"].get("finalizers") or []
                                              if f != CLEANUP_FINALIZER]
            return live

        with contextlib.suppress(NotFoundError):
            await self.crds.mutate(None, name, release, WriteOptions(), subresource="finalize")

    async def _delete_objects(self, crd: Obj) -> int:
        """Delete every object of the CRD; returns how many are still there (held by finalizers)."""
        spec = crd.get("spec") or {}
        plural = ((crd.get("status") or {}).get("acceptedNames") or {}).get("plural") or \
            (spec.get("names") or {}).get("plural")
        prefix = f"/registry/{spec.get('group')}/{plural}/"
        infos = self.served.get(crd["metadata"]["name"]) or []
        storage_info = next((i for i in infos if i.version == getattr(i.custom, "storage_version", "")), None)
        registry = self.registry_for(storage_info) if storage_info is not None else None
        listed = await self.storage.list(prefix)
        remaining = 0
        for kv in listed.items:
            obj = decode(kv)
            meta = obj.get("metadata") or {}
            if registry is None:
                with contextlib.suppress(Exception):
                    await self.storage.delete(kv.key, expected_revision=kv.mod_revision)
                continue
            try:
                _, gone = await registry.delete(meta.get("namespace"), meta["name"], DeleteOptions())
            except NotFoundError:
                continue
            remaining += 0 if gone else 1
        return remaining
