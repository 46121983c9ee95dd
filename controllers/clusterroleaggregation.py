"""ClusterRole aggregation controller: aggregated ClusterRoles hold the rules of the roles they select.

Kubernetes' ``clusterrole-aggregation`` controller (``pkg/controller/clusterroleaggregation``).
Started by ``controllers.manager``. Any ClusterRole change enqueues every ClusterRole that has an
``aggregationRule`` (a label change anywhere may add or remove rules); ``sync`` computes the rules
from the informer's cache (:func:`machinery.rbac_aggregation.aggregated_rules`) and writes them
when they differ, with the cached resourceVersion as the guard (a 409 retries through the queue).
Aggregated roles aggregated into others (``view`` into ``edit`` into ``admin``) converge over
successive syncs, each write enqueuing the roles above it.

Writing rules it does not itself hold needs ``escalate`` on clusterroles, which the
controller-manager's role grants.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from machinery.client import wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.errors import NotFoundError
from machinery.rbac_aggregation import aggregated_rules
from machinery.resources import ResourceInfo, lookup_kind

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)


def _cluster_roles() -> ResourceInfo:
    resource = lookup_kind("rbac.authorization.k8s.io/v1", "ClusterRole")
    assert resource is not None
    return resource


class ClusterRoleAggregationController:
    """Keeps aggregated ClusterRoles' rules current (queue keys: ClusterRole names)."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings) -> None:
        self._client = client
        self._resource = _cluster_roles()
        self._roles = factory.informer(self._resource)
        self.queue = settings.workqueue("clusterrole-aggregation")
        self._roles.add_handler(on_add=self._changed, on_update=lambda _old, new: self._changed(new),
                                on_delete=self._changed)

    def _changed(self, _role: dict[str, Any]) -> None:
        for role in self._roles.store.list():
            if role.get("aggregationRule"):
                self.queue.add(str(role["metadata"]["name"]))

    async def sync(self, name: str) -> None:
        role = self._roles.store.get(name)
        if role is None or not role.get("aggregationRule"):
            return
        rules = aggregated_rules(role, self._roles.store.list())
        if rules == (role.get("rules") or []):
            return
        updated = {**role, "rules": rules}
        try:
            await self._client.update(self._resource, updated)
        except NotFoundError:
            return
        log.info("clusterrole %s: aggregated %d rules", name, len(rules))

    async def run(self, workers: int) -> None:
        """Process aggregated roles until cancelled, once the cache has synced."""
        await wait_for_cache_sync(self._roles)
        await run_workers(self.queue, self.sync, workers=workers, name="clusterrole-aggregation")
