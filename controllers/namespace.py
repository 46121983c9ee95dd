"""Namespace controller: empties a terminating namespace, then removes its ``kubernetes`` finalizer.

Started by ``controllers.manager``. A namespace with a ``deletionTimestamp`` is enqueued by name;
``sync`` (Kubernetes' pkg/controller/namespace/deletion, simplified) lists every served
namespaced resource in it with live requests, deletes what is not already terminating
(Background propagation), and re-checks after ``recheck_delay`` seconds while anything remains
(pods wait for their kubelet). Once empty it sends ``PUT /api/v1/namespaces/{name}/finalize``
without the ``kubernetes`` finalizer, after which the apiserver deletes the namespace. The
``NamespaceDeletionContentFailure`` / ``NamespaceContentRemaining`` conditions are not written.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from machinery.client import wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.errors import ConflictError, NotFoundError
from machinery.resources import NAMESPACES, RESOURCES, ResourceInfo

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
NAMESPACED: tuple[ResourceInfo, ...] = tuple(r for r in RESOURCES if r.namespaced and "list" in r.verbs)


class NamespaceController:
    """Deletes the content of terminating namespaces (queue keys: namespace names)."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, recheck_delay: float = 1.0) -> None:
        self._client = client
        self._namespaces = factory.informer(NAMESPACES)
        self._recheck_delay = recheck_delay
        self.queue = settings.workqueue("namespace")
        self._namespaces.add_handler(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n))

    def _enqueue(self, ns: dict[str, Any]) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.queue.add(str(ns["metadata"]["name"]))

    async def sync(self, name: str) -> None:
        """One deletion pass over namespace ``name``."""
        try:
            ns = await self._client.get(NAMESPACES, name)
        except NotFoundError:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        remaining = 0
        for resource in NAMESPACED:
            remaining += await self._delete_all(resource, name)
        if remaining:
            log.info("namespace %s: %d objects remaining", name, remaining)
            self.queue.add_after(name, self._recheck_delay)
            return
        ns["spec"]["finalizers"] = [f for f in ns["spec"]["finalizers"] if f != FINALIZER]
        try:
            await self._client.request("PUT", f"/api/v1/namespaces/{name}/finalize", body=ns)
        except NotFoundError:
            return
        log.info("namespace %s emptied and finalized", name)

    async def _delete_all(self, resource: ResourceInfo, namespace: str) -> int:
        """Delete every object of ``resource`` in ``namespace``; returns how many still exist."""
        items: list[dict[str, Any]] = (await self._client.list(resource, namespace=namespace)).get("items") or []
        for item in items:
            meta = item["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            try:
                await self._client.delete(resource, meta["name"], namespace=namespace,
                                          propagation_policy="Background",
                                          preconditions={"uid": meta.get("uid", "")})
            except (NotFoundError, ConflictError):
                pass
        return len(items)

    async def run(self, workers: int) -> None:
        """Process terminating namespaces until cancelled, once the caches have synced."""
        await wait_for_cache_sync(self._namespaces)
        await run_workers(self.queue, self.sync, workers=workers, name="namespace")

