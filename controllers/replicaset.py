"""The ReplicaSet controller: keeps ``spec.replicas`` active pods for every ReplicaSet.

Started by ``controllers.manager``. Informer handlers only enqueue ``namespace/name`` keys and
record observed creations/deletions in the expectations; ``sync(key)`` is level-triggered and
idempotent: it claims pods (adopt/release by controllerRef), creates missing pods in slow-start
batches or deletes the least valuable surplus ones (only when the cache has caught up with its
previous writes), then writes ``status`` through the status subresource.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controllers.expectations import ControllerExpectations
from controllers.ownership import RefManager, controller_of, is_terminating, labels_of, new_controller_ref
from controllers.podcontrol import PodControl
from controllers.replicaset_util import (
    calculate_status,
    is_pod_active,
    is_pod_ready,
    pod_from_template,
    pods_to_delete,
    status_equal,
)
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import (
    INDEX_NAMESPACE,
    ApiClient,
    EventRecorder,
    InformerFactory,
    run_workers,
    wait_for_cache_sync,
)
from machinery.meta import object_key, utcnow
from machinery.resources import PODS, REPLICASETS, ResourceInfo
from machinery.selectors import LabelSelector, from_label_selector

log = logging.getLogger(__name__)

Obj = dict[str, Any]
BURST_REPLICAS = 500


class ReplicaSetController:
    """Reconciles ReplicaSets with their pods."""

    name = "replicaset"
    resource: ResourceInfo = REPLICASETS
    """The controller kind (the ReplicationController adapter swaps these three)."""
    kind = "ReplicaSet"
    component = "replicaset-controller"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.rs_informer = factory.informer(self.resource)
        self.pod_informer = factory.informer(PODS)
        self.queue = settings.workqueue(self.name)
        self.expectations = ControllerExpectations()
        self.recorder = EventRecorder(client, component=self.component)
        self.pod_control = PodControl(self)
        self.rs_informer.add_handler(on_add=self._rs_added, on_update=self._rs_updated, on_delete=self._rs_deleted)
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted)

    @staticmethod
    def selector_of(rs: Obj) -> LabelSelector | None:
        """The pod selector of a controller object (None when invalid)."""
        return _selector(rs)

    async def run(self, workers: int) -> None:
        """Sync ReplicaSets with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.rs_informer, self.pod_informer)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    # -- event handlers: enqueue only ---------------------------------------------------------

    def _rs_added(self, rs: Obj) -> None:
        self.queue.add(object_key(rs))

    def _rs_updated(self, old: Obj, cur: Obj) -> None:
        self.queue.add(object_key(cur))

    def _rs_deleted(self, rs: Obj) -> None:
        key = object_key(rs)
        self.expectations.delete(key)
        self.queue.add(key)

    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != self.kind:
            return None
        rs = self.rs_informer.store.get(f"{namespace}/{ref.get('name')}")
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return None
        return rs

    def _matching_rss(self, pod: Obj) -> list[Obj]:
        ns = pod["metadata"].get("namespace", "")
        labels = labels_of(pod)
        out = []
        for rs in self.rs_informer.store.by_index(INDEX_NAMESPACE, ns):
            sel = self.selector_of(rs)
            if sel is not None and not sel.empty() and sel.matches(labels):
                out.append(rs)
        return out

    def _pod_added(self, pod: Obj) -> None:
        if is_terminating(pod):
            self._pod_deleted(pod)
            return
        ns = pod["metadata"].get("namespace", "")
        ref = controller_of(pod)
        if ref is not None:
            rs = self._resolve(ns, ref)
            if rs is not None:
                key = object_key(rs)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for rs in self._matching_rss(pod):
            self.queue.add(object_key(rs))

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        labels_changed = labels_of(old) != labels_of(cur)
        if is_terminating(cur):
            self._pod_deleted(cur)
            if labels_changed:
                self._pod_deleted(old)
            return
        ns = cur["metadata"].get("namespace", "")
        old_ref, cur_ref = controller_of(old), controller_of(cur)
        if old_ref is not None and old_ref != cur_ref:
            rs = self._resolve(ns, old_ref)
            if rs is not None:
                self.queue.add(object_key(rs))
        if cur_ref is not None:
            rs = self._resolve(ns, cur_ref)
            if rs is not None:
                key = object_key(rs)
                self.queue.add(key)
                min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
                if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(cur):
                    self.queue.add_after(key, float(min_ready) + 1.0)
            return
        if labels_changed or old_ref != cur_ref:
            for rs in self._matching_rss(cur):
                self.queue.add(object_key(rs))

    def _pod_deleted(self, pod: Obj) -> None:
        ns = pod["metadata"].get("namespace", "")
        rs = self._resolve(ns, controller_of(pod))
        if rs is None:
            return
        key = object_key(rs)
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """Reconcile the ReplicaSet ``key`` (``namespace/name``) from the informer caches."""
        rs = self.rs_informer.store.get(key)
        if rs is None:
            self.expectations.delete(key)
            return
        needs_sync = self.expectations.satisfied(key)
        selector = self.selector_of(rs)
        if selector is None:
            log.warning("replicaset %s: invalid selector, skipping", key)
            return
        ns = rs["metadata"]["namespace"]
        candidates = [p for p in self.pod_informer.store.by_index(INDEX_NAMESPACE, ns) if is_pod_active(p)]
        pods = await self._claim(rs, selector, candidates)
        manage_error: str | None = None
        diff = len(pods) - _replicas(rs)
        if needs_sync and not is_terminating(rs):
            try:
                await self._manage(rs, key, pods)
            except errors.ApiError as exc:
                manage_error = str(exc)
        status = calculate_status(rs, pods, now=self.clock(), manage_error=manage_error, diff=diff)
        if not status_equal(status, rs.get("status")) or \
                int((rs.get("status") or {}).get("observedGeneration") or 0) != int(rs["metadata"].get("generation")
                                                                                   or 0):
            body = {**rs, "status": status}
            try:
                await self.client.update(self.resource, body, subresource="status")
            except errors.NotFoundError:
                return
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if (manage_error is None and min_ready > 0 and status["readyReplicas"] == _replicas(rs)
                and status["availableReplicas"] != _replicas(rs)):
            self.queue.add_after(key, float(min_ready))
        if manage_error is not None:
            raise errors.ServiceUnavailableError(f"replicaset {key}: {manage_error}")

    async def _claim(self, rs: Obj, selector: LabelSelector, candidates: list[Obj]) -> list[Obj]:
        meta = rs["metadata"]

        async def patch(namespace: str, name: str, body: Obj) -> Obj:
            return await self.client.patch(PODS, name, body, namespace=namespace)

        async def can_adopt() -> None:
            fresh = await self.client.get(self.resource, meta["name"], namespace=meta["namespace"])
            if fresh["metadata"].get("uid") != meta["uid"] or is_terminating(fresh):
                raise errors.ConflictError(f"replicaset {meta['name']} changed; not adopting pods")

        manager = RefManager(owner=rs, selector=selector, owner_api_version=self.resource.api_version,
                             owner_kind=self.kind, resource=PODS, patch=patch, can_adopt=can_adopt)
        return await manager.claim(candidates)

    async def _manage(self, rs: Obj, key: str, pods: list[Obj]) -> None:
        diff = len(pods) - _replicas(rs)
        if diff < 0:
            await self._create(rs, key, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete(rs, key, pods, min(diff, BURST_REPLICAS))

    async def _create(self, rs: Obj, key: str, count: int) -> None:
        meta = rs["metadata"]
        owner_ref = new_controller_ref(rs, api_version=self.resource.api_version, kind=self.kind)
        template = (rs.get("spec") or {}).get("template") or {}
        log.info("replicaset %s: creating %d pods", key, count)
        await self.pod_control.create_pods(rs, key, [
            pod_from_template(template, namespace=meta["namespace"], generate_name=f"{meta['name']}-",
                              owner_ref=owner_ref) for _ in range(count)])

    async def _delete(self, rs: Obj, key: str, pods: list[Obj], count: int) -> None:
        victims = pods_to_delete(pods, pods, count)
        log.info("replicaset %s: deleting %d pods", key, len(victims))
        await self.pod_control.delete_pods(rs, key, victims)


def _replicas(rs: Obj) -> int:
    value = (rs.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _selector(rs: Obj) -> LabelSelector | None:
    try:
        return from_label_selector((rs.get("spec") or {}).get("selector"))
    except errors.ApiError:
        return None
