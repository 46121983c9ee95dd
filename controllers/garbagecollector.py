"""Garbage collector: deletes objects whose owners are gone; runs Foreground and Orphan deletion.

Started by ``controllers.manager``. One informer per served resource feeds the
:class:`~controllers.gc_graph.OwnerGraph`; handlers enqueue object uids, and ``sync(uid)``
(idempotent, level-triggered) takes one of the decisions Kubernetes' collector takes
(pkg/controller/garbagecollector):

- an object being deleted with the ``orphan`` finalizer: remove the ownerReferences to it from
  every dependent, then remove the finalizer (the apiserver then deletes it);
- an object being deleted with the ``foregroundDeletion`` finalizer: its dependents are deleted
  (each with Foreground when it has dependents of its own); once no dependent with
  ``blockOwnerDeletion`` remains, the finalizer is removed;
- any other object with ownerReferences: each owner is checked with a live GET (absent or a
  different uid = dangling; foreground-deleting = waiting). With at least one live owner only
  the dangling/waiting references are removed; otherwise the object is deleted, with the
  propagation policy its own finalizers ask for (Background by default), guarded by a uid
  precondition.

Owners of kinds kubelab does not serve are treated as present: the collector never deletes on a
reference it cannot verify.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from controllers.gc_graph import (
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    Node,
    OwnerGraph,
    deletion_policy,
    without_owner,
)
from machinery.client import wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.errors import ConflictError, NotFoundError
from machinery.resources import RESOURCES, ResourceInfo, lookup_kind

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory, SharedInformer
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)

SOLID, DANGLING, WAITING = "solid", "dangling", "waiting"


class GarbageCollectorController:
    """The ownerReference graph and the workers acting on it (queue keys are object uids)."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, resources: tuple[ResourceInfo, ...] = RESOURCES) -> None:
        self._client = client
        self._settings = settings
        self.graph = OwnerGraph()
        self.queue = settings.workqueue("garbagecollector")
        self._synced = False
        self._informers: list[SharedInformer] = []
        for resource in resources:
            if not {"delete", "list", "watch"} <= set(resource.verbs):
                continue  # e.g. the create-only reviews: nothing to own or collect (as Kubernetes' GC)
            informer = factory.informer(resource)
            informer.add_handler(on_add=self._adder(resource), on_update=self._updater(resource),
                                 on_delete=self._on_delete)
            self._informers.append(informer)

    # ---- graph maintenance (event handlers: only update the graph and enqueue) ----------
    def _adder(self, resource: ResourceInfo) -> Any:
        def on_add(obj: dict[str, Any]) -> None:
            self._observe(resource, None, obj)
        return on_add

    def _updater(self, resource: ResourceInfo) -> Any:
        def on_update(old: dict[str, Any], new: dict[str, Any]) -> None:
            self._observe(resource, old, new)
        return on_update

    def _observe(self, resource: ResourceInfo, old: dict[str, Any] | None, obj: dict[str, Any]) -> None:
        before = self.graph.node(str((obj.get("metadata") or {}).get("uid") or ""))
        was_waiting = before is not None and before.deleting_dependents
        old_owners = {str(r.get("uid")) for r in before.owner_refs} if before is not None else set()
        node = self.graph.observe(resource, obj)
        if node is None:
            return
        if node.deleting_dependents:
            self.queue.add(node.uid)
            if not was_waiting:
                for dep in self.graph.dependents(node.uid):
                    self.queue.add(dep.uid)
        if node.orphaning:
            self.queue.add(node.uid)
        # A released reference may have been the last one blocking a foreground owner.
        for gone in old_owners - {str(r.get("uid")) for r in node.owner_refs}:
            owner = self.graph.node(gone)
            if owner is not None and owner.deleting_dependents:
                self.queue.add(owner.uid)
        if self._synced and self._needs_check(node):
            self.queue.add(node.uid)

    def _needs_check(self, node: Node) -> bool:
        if not node.owner_refs:
            return False
        if self.graph.unobserved_owners(node):
            return True
        for ref in node.owner_refs:
            owner = self.graph.node(str(ref.get("uid")))
            if owner is not None and owner.deleting_dependents:
                return True
        return False

    def _on_delete(self, obj: dict[str, Any]) -> None:
        node = self.graph.forget(obj)
        if node is None:
            return
        for dep in self.graph.dependents(node.uid):
            self.queue.add(dep.uid)
        for ref in node.owner_refs:
            owner = self.graph.node(str(ref.get("uid")))
            if owner is not None and owner.deleting_dependents:
                self.queue.add(owner.uid)

    # ---- the decisions -------------------------------------------------------------------
    async def sync(self, uid: str) -> None:
        """Take the one decision the graph calls for about object ``uid``."""
        node = self.graph.node(uid)
        if node is None:
            return
        live = await self._live(node)
        if live is None:
            self.graph.forget({"metadata": {"uid": uid}})
            for dep in self.graph.dependents(uid):
                self.queue.add(dep.uid)
            return
        meta = live["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            if ORPHAN_FINALIZER in finalizers:
                await self._orphan_dependents(node)
            elif FOREGROUND_FINALIZER in finalizers:
                await self._process_deleting_dependents(node)
            return
        await self._attempt_to_delete(node, live)

    async def _live(self, node: Node) -> dict[str, Any] | None:
        try:
            obj = await self._client.get(node.resource, node.name, namespace=node.namespace)
        except NotFoundError:
            return None
        return obj if obj["metadata"].get("uid") == node.uid else None

    async def _owner_state(self, node: Node, ref: dict[str, Any]) -> str:
        resource = lookup_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if resource is None:
            return SOLID
        namespace = node.namespace if resource.namespaced else None
        if resource.namespaced and not namespace:
            return SOLID  # a cluster-scoped object cannot name a namespaced owner; never act on it
        try:
            owner = await self._client.get(resource, str(ref.get("name", "")), namespace=namespace)
        except NotFoundError:
            return DANGLING
        ometa = owner["metadata"]
        if ometa.get("uid") != ref.get("uid"):
            return DANGLING
        if ometa.get("deletionTimestamp") and FOREGROUND_FINALIZER in (ometa.get("finalizers") or []):
            return WAITING
        return SOLID

    async def _attempt_to_delete(self, node: Node, live: dict[str, Any]) -> None:
        refs: list[dict[str, Any]] = list(live["metadata"].get("ownerReferences") or [])
        if not refs:
            return
        states = {str(r.get("uid")): await self._owner_state(node, r) for r in refs}
        solid = [u for u, s in states.items() if s == SOLID]
        released = {u for u, s in states.items() if s != SOLID}
        if solid:
            if released:
                await self._release(node, released)
            return
        if WAITING in states.values() and self.graph.dependents(node.uid):
            policy = "Foreground"
        else:
            policy = deletion_policy(live["metadata"].get("finalizers") or [])
        log.info("garbage collecting %s %s (owners %s gone) with policy %s", node.resource.kind, node.key,
                 sorted(released), policy)
        try:
            await self._client.delete(node.resource, node.name, namespace=node.namespace,
                                      propagation_policy=policy, preconditions={"uid": node.uid})
        except (NotFoundError, ConflictError):
            pass

    async def _release(self, node: Node, owner_uids: set[str]) -> None:
        """Remove the references to ``owner_uids`` from ``node`` (read-modify-write)."""
        live = await self._live(node)
        if live is None:
            return
        refs = list(live["metadata"].get("ownerReferences") or [])
        kept = without_owner(refs, owner_uids)
        if kept == refs:
            return
        if kept:
            live["metadata"]["ownerReferences"] = kept
        else:
            live["metadata"].pop("ownerReferences", None)
        try:
            await self._client.update(node.resource, live)
        except NotFoundError:
            return
        log.info("removed ownerReferences %s from %s %s", sorted(owner_uids), node.resource.kind, node.key)

    async def _orphan_dependents(self, owner: Node) -> None:
        for dep in self.graph.dependents(owner.uid):
            await self._release(dep, {owner.uid})
        await self._remove_finalizer(owner, ORPHAN_FINALIZER)

    async def _process_deleting_dependents(self, owner: Node) -> None:
        blocking = self.graph.blocking_dependents(owner.uid)
        if not blocking:
            await self._remove_finalizer(owner, FOREGROUND_FINALIZER)
            return
        for dep in blocking:
            if not dep.deleting:
                self.queue.add(dep.uid)

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        live = await self._live(node)
        if live is None:
            return
        finalizers = list(live["metadata"].get("finalizers") or [])
        if finalizer not in finalizers:
            return
        live["metadata"]["finalizers"] = [f for f in finalizers if f != finalizer]
        try:
            await self._client.update(node.resource, live)
        except NotFoundError:
            return
        log.info("removed finalizer %s from %s %s", finalizer, node.resource.kind, node.key)

    # ---- running -------------------------------------------------------------------------
    async def _wait_informers(self) -> None:
        await wait_for_cache_sync(*self._informers)

    async def run(self, workers: int) -> None:
        """Wait for the caches, check every object once, then process the queue until cancelled."""
        await self._wait_informers()
        self._synced = True
        for node in self.graph.nodes():
            if self._needs_check(node) or node.deleting_dependents or node.orphaning:
                self.queue.add(node.uid)
        await run_workers(self.queue, self.sync, workers=workers, name="garbagecollector")
