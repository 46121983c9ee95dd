"""Pod garbage collector: removes pods nothing else will ever clean up.

Started by ``controllers.manager``; a periodic pass (every ``period`` seconds) over the pod and
node caches, like Kubernetes' pkg/controller/podgc:

- **orphaned pods**: bound to a node that does not exist. A node missing from the cache is
  quarantined for ``quarantine`` seconds (the cache may be behind), then confirmed absent with a
  live GET; its pods are force-deleted (``gracePeriodSeconds=0``), terminating or not;
- **unscheduled terminating pods**: a deletionTimestamp and no node: force-deleted;
- every force-deleted pod not yet terminal is first set ``Failed`` (orphans with a
  ``DisruptionTarget`` condition, reason ``DeletionByPodGC``), as Kubernetes does;
- **terminating pods on out-of-service nodes**: a node not Ready and tainted
  ``node.kubernetes.io/out-of-service``: force-deleted;
- **terminated pods** (Succeeded/Failed) beyond ``settings.terminated_pod_gc_threshold``
  (<= 0 disables): the oldest by creationTimestamp are deleted.

The clock is injectable (seconds, monotonic); the pure selections are unit-tested.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from machinery.client import wait_for_cache_sync
from machinery.errors import ConflictError, NotFoundError
from machinery.meta import now_rfc3339, object_key
from machinery.resources import NODES, PODS

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)

OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"


def _terminated(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def terminated_excess(pods: list[dict[str, Any]], threshold: int) -> list[dict[str, Any]]:
    """The terminated pods to delete so at most ``threshold`` remain, oldest first."""
    if threshold <= 0:
        return []
    done = [p for p in pods if _terminated(p) and not p["metadata"].get("deletionTimestamp")]
    excess = len(done) - threshold
    if excess <= 0:
        return []
    done.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", object_key(p)))
    return done[:excess]


def _node_ready(node: dict[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def out_of_service(node: dict[str, Any]) -> bool:
    """Not Ready and carrying the ``out-of-service`` taint."""
    taints = (node.get("spec") or {}).get("taints") or []
    return not _node_ready(node) and any(t.get("key") == OUT_OF_SERVICE_TAINT for t in taints)


class PodGCController:
    """Periodic pod garbage collection (no workqueue: one pass at a time)."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, period: float = 20.0, quarantine: float = 40.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._pods = factory.informer(PODS)
        self._nodes = factory.informer(NODES)
        self._threshold = settings.terminated_pod_gc_threshold
        self._period = period
        self._quarantine = quarantine
        self._clock = clock
        self._missing_since: dict[str, float] = {}

    async def gc_once(self) -> None:
        """One pass of every collection rule."""
        pods = self._pods.store.list()
        for pod in terminated_excess(pods, self._threshold):
            log.info("deleting terminated pod %s (over threshold %d)", object_key(pod), self._threshold)
            await self._delete(pod, force=False)
        await self._gc_orphaned(pods)
        for pod in pods:
            meta = pod["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name:
                await self._delete(pod, force=True)
                continue
            node = self._nodes.store.get(node_name)
            if node is not None and out_of_service(node):
                log.info("force deleting terminating pod %s on out-of-service node %s", object_key(pod), node_name)
                await self._delete(pod, force=True)

    async def _gc_orphaned(self, pods: list[dict[str, Any]]) -> None:
        now = self._clock()
        by_node: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name and self._nodes.store.get(node_name) is None:
                by_node.setdefault(node_name, []).append(pod)
        for name in list(self._missing_since):
            if name not in by_node:
                del self._missing_since[name]
        for node_name, orphans in by_node.items():
            first = self._missing_since.setdefault(node_name, now)
            if now - first < self._quarantine:
                continue
            try:
                await self._client.get(NODES, node_name)
                continue  # the cache is behind: the node exists
            except NotFoundError:
                pass
            for pod in orphans:
                log.info("force deleting orphaned pod %s: node %s is gone", object_key(pod), node_name)
                await self._delete(pod, force=True, condition={
                    "type": "DisruptionTarget", "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists"})

    async def _delete(self, pod: dict[str, Any], *, force: bool, condition: dict[str, Any] | None = None) -> None:
        meta = pod["metadata"]
        if force and not _terminated(pod):
            # As Kubernetes' markFailedAndDeletePod: a pod no kubelet will finish is failed first, so
            # whoever waits for a terminal phase (a Job replacing only failed pods) sees one.
            status: dict[str, Any] = {"phase": "Failed"}
            if condition is not None:
                status["conditions"] = [{**condition, "status": "True", "lastTransitionTime": now_rfc3339()}]
            try:
                await self._client.patch(PODS, meta["name"], {"status": status}, namespace=meta.get("namespace"),
                                         subresource="status")
            except (NotFoundError, ConflictError):
                return
        try:
            await self._client.delete(PODS, meta["name"], namespace=meta.get("namespace"),
                                      grace_period_seconds=0 if force else None,
                                      preconditions={"uid": meta.get("uid", "")})
        except (NotFoundError, ConflictError):
            pass

    async def run(self, workers: int) -> None:
        """A pass every ``period`` seconds until cancelled (``workers`` is unused: passes are serial)."""
        await wait_for_cache_sync(self._pods, self._nodes)
        while True:
            await asyncio.sleep(self._period)
            try:
                await self.gc_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod GC pass failed")
