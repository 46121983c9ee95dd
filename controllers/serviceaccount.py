"""ServiceAccount controller: every active namespace has a ``default`` ServiceAccount.

Started by ``controllers.manager``. Namespace adds/updates and deletions of a ``default``
ServiceAccount enqueue the namespace name; ``sync`` creates the account when the cache lacks it
(an ``AlreadyExists`` answer means the cache was behind, which is fine). Terminating namespaces
are skipped, as in Kubernetes (pkg/controller/serviceaccount).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from machinery.client import wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.errors import AlreadyExistsError, ForbiddenError, NotFoundError
from machinery.resources import NAMESPACES, SERVICEACCOUNTS

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)

DEFAULT_ACCOUNTS: tuple[str, ...] = ("default",)


def namespace_active(ns: dict[str, Any] | None) -> bool:
    """The namespace exists and is not terminating."""
    if ns is None:
        return False
    if ns["metadata"].get("deletionTimestamp"):
        return False
    return (ns.get("status") or {}).get("phase") != "Terminating"


class ServiceAccountController:
    """Ensures the ``default`` ServiceAccount of every namespace (queue keys: namespace names)."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings) -> None:
        self._client = client
        self._namespaces = factory.informer(NAMESPACES)
        self._accounts = factory.informer(SERVICEACCOUNTS)
        self.queue = settings.workqueue("serviceaccount")
        self._namespaces.add_handler(on_add=self._enqueue_ns, on_update=lambda _o, n: self._enqueue_ns(n))
        self._accounts.add_handler(on_delete=self._account_deleted)

    def _enqueue_ns(self, ns: dict[str, Any]) -> None:
        self.queue.add(str(ns["metadata"]["name"]))

    def _account_deleted(self, sa: dict[str, Any]) -> None:
        if sa["metadata"].get("name") in DEFAULT_ACCOUNTS:
            self.queue.add(str(sa["metadata"].get("namespace", "")))

    async def sync(self, namespace: str) -> None:
        """Create the missing default accounts of ``namespace``."""
        if not namespace_active(self._namespaces.store.get(namespace)):
            return
        for name in DEFAULT_ACCOUNTS:
            if self._accounts.store.get(f"{namespace}/{name}") is not None:
                continue
            body = {"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": namespace}}
            try:
                await self._client.create(SERVICEACCOUNTS, body, namespace=namespace)
                log.info("created serviceaccount %s/%s", namespace, name)
            except AlreadyExistsError:
                pass
            except (ForbiddenError, NotFoundError):
                log.debug("namespace %s is going away; no serviceaccount", namespace)

    async def run(self, workers: int) -> None:
        """Process namespaces until cancelled, once the caches have synced."""
        await wait_for_cache_sync(self._namespaces, self._accounts)
        await run_workers(self.queue, self.sync, workers=workers, name="serviceaccount")
