"""The Deployment controller: Deployments → ReplicaSets (rollouts, scaling, pause, history).

Started by ``controllers.manager``. Watches Deployments, ReplicaSets and Pods through shared
informers; handlers only enqueue the owning Deployment's key. ``sync(key)`` claims ReplicaSets by
controllerRef, then, as Kubernetes' ``syncDeployment``: status only while deleting; paused →
proportional scaling without progress; a replica-count change → scaling; otherwise one step of the
RollingUpdate or Recreate strategy (``deployment_rollout``). Helpers: ``deployment_sync``,
``deployment_util``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controllers import deployment_util as du
from controllers.deployment_rollout import rollout_recreate, rollout_rolling
from controllers.deployment_sync import DeploymentSync
from controllers.ownership import RefManager, controller_of, is_terminating, labels_of
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
from machinery.resources import DEPLOYMENTS, PODS, REPLICASETS
from machinery.selectors import LabelSelector, from_label_selector

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class DeploymentController:
    """Reconciles Deployments with their ReplicaSets."""

    name = "deployment"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.d_informer = factory.informer(DEPLOYMENTS)
        self.rs_informer = factory.informer(REPLICASETS)
        self.pod_informer = factory.informer(PODS)
        self.queue = settings.workqueue(self.name)
        self.recorder = EventRecorder(client, component="deployment-controller")
        self.d_informer.add_handler(on_add=self._enqueue, on_update=lambda _o, c: self._enqueue(c),
                                    on_delete=self._enqueue)
        self.rs_informer.add_handler(on_add=self._rs_changed, on_update=self._rs_updated,
                                     on_delete=self._rs_changed)
        self.pod_informer.add_handler(on_delete=self._pod_deleted)

    async def run(self, workers: int) -> None:
        """Sync Deployments with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.d_informer, self.rs_informer, self.pod_informer)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    # -- event handlers -------------------------------------------------------------------------

    def _enqueue(self, d: Obj) -> None:
        self.queue.add(object_key(d))

    def _owner(self, rs: Obj) -> Obj | None:
        ref = controller_of(rs)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.d_informer.store.get(f"{rs['metadata'].get('namespace')}/{ref.get('name')}")
        if d is None or d["metadata"].get("uid") != ref.get("uid"):
            return None
        return d

    def _matching(self, rs: Obj) -> list[Obj]:
        labels = labels_of(rs)
        out = []
        for d in self.d_informer.store.by_index(INDEX_NAMESPACE, str(rs["metadata"].get("namespace", ""))):
            sel = _selector(d)
            if sel is not None and not sel.empty() and sel.matches(labels):
                out.append(d)
        return out

    def _rs_changed(self, rs: Obj) -> None:
        d = self._owner(rs)
        if d is not None:
            self._enqueue(d)
        elif controller_of(rs) is None:
            for d in self._matching(rs):
                self._enqueue(d)

    def _rs_updated(self, old: Obj, cur: Obj) -> None:
        old_d = self._owner(old)
        if old_d is not None and controller_of(old) != controller_of(cur):
            self._enqueue(old_d)
        self._rs_changed(cur)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.store.get(f"{pod['metadata'].get('namespace')}/{ref.get('name')}")
        d = self._owner(rs) if rs is not None else None
        if d is not None and not du.is_rolling(d):
            self._enqueue(d)

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """Reconcile the Deployment ``key`` (``namespace/name``)."""
        cached = self.d_informer.store.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        s = DeploymentSync(self.client, d, now=self.clock, requeue_after=lambda t: self.queue.add_after(key, t),
                           recorder=self.recorder)
        selector = _selector(d)
        if selector is None or selector.empty():
            log.warning("deployment %s: empty or invalid selector, selecting nothing", key)
            if int(d["metadata"].get("generation") or 0) > du.status_int(d, "observedGeneration"):
                status = copy.deepcopy(d.get("status") or {})
                status["observedGeneration"] = int(d["metadata"].get("generation") or 0)
                await s.write(status)
            return
        rss = await self._claim(d, selector)
        if is_terminating(d):
            new, old = await s.get_all_rss(rss, create=False)
            await s.sync_status([rs for rs in [*old, new] if rs is not None], new)
            return
        await self._check_paused(s)
        if (d.get("spec") or {}).get("paused"):
            await self._scale_only(s, rss)
            return
        if await self._is_scaling_event(s, rss):
            await self._scale_only(s, rss)
            return
        if du.is_rolling(d):
            await rollout_rolling(s, rss)
        else:
            await rollout_recreate(s, rss, self._pods_by_rs(d, rss))

    async def _claim(self, d: Obj, selector: LabelSelector) -> list[Obj]:
        meta = d["metadata"]

        async def patch(namespace: str, name: str, body: Obj) -> Obj:
            return await self.client.patch(REPLICASETS, name, body, namespace=namespace)

        async def can_adopt() -> None:
            fresh = await self.client.get(DEPLOYMENTS, meta["name"], namespace=meta["namespace"])
            if fresh["metadata"].get("uid") != meta["uid"] or is_terminating(fresh):
                raise errors.ConflictError(f"deployment {meta['name']} changed; not adopting replica sets")

        manager = RefManager(owner=d, selector=selector, owner_api_version="apps/v1", owner_kind="Deployment",
                             resource=REPLICASETS, patch=patch, can_adopt=can_adopt)
        return await manager.claim(self.rs_informer.store.by_index(INDEX_NAMESPACE, meta["namespace"]))

    async def _check_paused(self, s: DeploymentSync) -> None:
        """``checkPausedConditions``: Progressing=Unknown DeploymentPaused / DeploymentResumed."""
        if du.progress_deadline(s.d) is None:
            return
        status = copy.deepcopy(s.d.get("status") or {})
        cond = du.get_condition(status, du.PROGRESSING)
        if cond is not None and cond.get("reason") == du.TIMED_OUT:
            return
        paused = bool((s.d.get("spec") or {}).get("paused"))
        has_paused = cond is not None and cond.get("reason") == du.PAUSED
        if paused and not has_paused:
            du.set_condition(status, du.new_condition(du.PROGRESSING, "Unknown", du.PAUSED, "Deployment is paused",
                                                      s.now()))
        elif not paused and has_paused:
            du.set_condition(status, du.new_condition(du.PROGRESSING, "Unknown", du.RESUMED,
                                                      "Deployment is resumed", s.now()))
        else:
            return
        await s.write(status)

    async def _is_scaling_event(self, s: DeploymentSync, rss: list[Obj]) -> bool:
        new, old = await s.get_all_rss(rss, create=False)
        want = du.replicas(s.d)
        for rs in du.active([*old, new]):
            desired = du.int_annotation(rs, du.DESIRED_REPLICAS)
            if desired is not None and desired != want:
                return True
        return False

    async def _scale_only(self, s: DeploymentSync, rss: list[Obj]) -> None:
        """``sync``: scaling (and history cleanup while paused) without rollout progress."""
        new, old = await s.get_all_rss(rss, create=False)
        await s.scale(new, old)
        fresh = self._refresh([rs for rs in [*old, new] if rs is not None])
        new = next((rs for rs in fresh if new is not None and rs["metadata"]["uid"] == new["metadata"]["uid"]), None)
        old = [rs for rs in fresh if rs is not new]
        if (s.d.get("spec") or {}).get("paused"):
            await s.cleanup(old)
        await s.sync_status([*old] + ([new] if new is not None else []), new)

    def _refresh(self, rss: list[Obj]) -> list[Obj]:
        out = []
        for rs in rss:
            cached = self.rs_informer.store.get(object_key(rs))
            out.append(cached if cached is not None and cached["metadata"].get("uid") == rs["metadata"].get("uid")
                       else rs)
        return out

    def _pods_by_rs(self, d: Obj, rss: list[Obj]) -> dict[str, list[Obj]]:
        by_uid: dict[str, list[Obj]] = {str(rs["metadata"]["uid"]): [] for rs in rss}
        for pod in self.pod_informer.store.by_index(INDEX_NAMESPACE, d["metadata"]["namespace"]):
            ref = controller_of(pod)
            if ref is not None and ref.get("uid") in by_uid:
                by_uid[str(ref["uid"])].append(pod)
        return by_uid


def _selector(d: Obj) -> LabelSelector | None:
    try:
        return from_label_selector((d.get("spec") or {}).get("selector"))
    except errors.ApiError:
        return None
