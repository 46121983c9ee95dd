"""The DaemonSet controller: one pod on every eligible node (Kubernetes' ``daemon_controller.go``
and ``update.go``).

Started by ``controllers.manager``. DaemonSet, node and pod events enqueue DaemonSet keys;
``sync(key)``:

1. claims pods and records the template as a ControllerRevision (pods carry its hash in
   ``controller-revision-hash``);
2. per node (``controllers.daemonset_util.should_run``): creates the missing pod — bound through a
   ``metadata.name`` node affinity term, scheduled by the scheduler — deletes surplus pods, pods on
   nodes that should not run one and Failed pods, these with a per-node backoff of 1 s doubling to
   15 min (``controllers.daemonset_backoff``; the replacement follows once the failed pod is gone);
3. RollingUpdate: with ``maxSurge`` 0 deletes outdated pods, unavailable ones first, while at most
   ``maxUnavailable`` nodes lack an available pod; with ``maxSurge`` > 0 starts the new pod beside
   the old one on up to ``maxSurge`` nodes and deletes the old one once the new is available.
   OnDelete leaves replacement to the user;
4. writes the status (desired/current/misscheduled/ready/updated/available per node).
Expectations keep a stale cache from creating a second pod on a node.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controllers import daemonset_backoff
from controllers import daemonset_util as du
from controllers.controllerrevision import HASH_LABEL, History
from controllers.expectations import ControllerExpectations
from controllers.ownership import RefManager, controller_of, is_terminating, labels_of, new_controller_ref, owning_key
from controllers.podcontrol import PodControl
from controllers.replicaset_util import is_pod_available, is_pod_ready
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
from machinery.resources import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS
from machinery.selectors import LabelSelector, from_label_selector

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _scaled(value: Any, total: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%") and text[:-1].isdigit():
        return math.ceil(total * int(text[:-1]) / 100)
    return default


class DaemonSetController:
    """Reconciles DaemonSets with nodes and their pods."""

    name = "daemonset"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow,
                 failed_pods_backoff: daemonset_backoff.FailedPodsBackoff | None = None) -> None:
        self.client = client
        self.clock = clock
        self.failed_pods_backoff = (daemonset_backoff.FailedPodsBackoff() if failed_pods_backoff is None
                                    else failed_pods_backoff)
        """Per DaemonSet and node: when a failed daemon pod may be replaced again."""
        self.ds_informer = factory.informer(DAEMONSETS)
        self.pod_informer = factory.informer(PODS)
        self.node_informer = factory.informer(NODES)
        self.history = History(client, factory.informer(CONTROLLERREVISIONS), api_version="apps/v1",
                               kind="DaemonSet")
        self.queue = settings.workqueue(self.name)
        self.expectations = ControllerExpectations()
        self.recorder = EventRecorder(client, component="daemonset-controller")
        self.pod_control = PodControl(self)
        self.ds_informer.add_handler(on_add=self._enqueue, on_update=lambda old, cur: self._enqueue(cur),
                                     on_delete=self._ds_deleted)
        self.node_informer.add_handler(on_add=self._node_event, on_update=self._node_updated,
                                       on_delete=self._node_event)
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted)

    async def run(self, workers: int) -> None:
        """Sync DaemonSets with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.ds_informer, self.pod_informer, self.node_informer, self.history.informer)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            self.queue.shutdown()

    # -- event handlers: enqueue only ---------------------------------------------------------

    def _enqueue(self, ds: Obj) -> None:
        self.queue.add(object_key(ds))

    def _ds_deleted(self, ds: Obj) -> None:
        self.expectations.delete(object_key(ds))
        self.failed_pods_backoff.forget(str(ds["metadata"].get("uid")))
        self.queue.add(object_key(ds))

    def _node_event(self, node: Obj) -> None:
        for ds in self.ds_informer.store.list():
            self.queue.add(object_key(ds))

    def _node_updated(self, old: Obj, cur: Obj) -> None:
        def placement(n: Obj) -> Any:
            return ((n.get("metadata") or {}).get("labels"), (n.get("spec") or {}).get("taints"))
        if placement(old) != placement(cur):
            self._node_event(cur)

    def _owner(self, pod: Obj) -> str | None:
        return owning_key(pod, "DaemonSet", self.ds_informer.store.get)

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            if is_terminating(pod):
                self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)
        elif controller_of(pod) is None:
            self._orphan(pod)

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        key = self._owner(cur)
        if key is not None:
            if is_terminating(cur):
                self.expectations.deletion_observed(key, object_key(cur))
            self.queue.add(key)
            min_ready = int(((self.ds_informer.store.get(key) or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(cur):
                self.queue.add_after(key, float(min_ready) + 0.5)
        elif controller_of(cur) is None:
            self._orphan(cur)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner(pod)
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)

    def _orphan(self, pod: Obj) -> None:
        for ds in self.ds_informer.store.by_index(INDEX_NAMESPACE, pod["metadata"].get("namespace", "")):
            sel = _selector(ds)
            if sel is not None and not sel.empty() and sel.matches(labels_of(pod)):
                self.queue.add(object_key(ds))

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """Reconcile the DaemonSet ``key`` (``namespace/name``) from the informer caches."""
        self.failed_pods_backoff.gc()
        ds = self.ds_informer.store.get(key)
        if ds is None:
            self.expectations.delete(key)
            return
        selector = _selector(ds)
        if selector is None or selector.empty():
            log.warning("daemonset %s: invalid selector, skipping", key)
            return
        candidates = list(self.pod_informer.store.by_index(INDEX_NAMESPACE, ds["metadata"]["namespace"]))
        pods = [p for p in await self._claim(ds, selector, candidates)
                if (p.get("status") or {}).get("phase") != "Succeeded"]
        revisions = await self.history.sync(ds)
        current_hash = str((revisions.update["metadata"].get("labels") or {}).get(HASH_LABEL, ""))
        nodes = {n["metadata"]["name"]: n for n in self.node_informer.store.list()}
        by_node: dict[str, list[Obj]] = {}
        for pod in pods:
            by_node.setdefault(du.node_of(pod), []).append(pod)
        error: errors.ApiError | None = None
        if self.expectations.satisfied(key) and not is_terminating(ds):
            try:
                busy = await self._manage(ds, key, nodes, by_node, current_hash)
                if not busy:
                    await self._rolling_update(ds, key, nodes, by_node, current_hash)
            except errors.ApiError as exc:
                error = exc
        await self._write_status(ds, nodes, by_node, current_hash)
        await self.history.truncate(ds, {revisions.update["metadata"]["name"]})
        if error is not None:
            raise error

    async def _claim(self, ds: Obj, selector: LabelSelector, candidates: list[Obj]) -> list[Obj]:
        meta = ds["metadata"]

        async def patch(namespace: str, name: str, body: Obj) -> Obj:
            return await self.client.patch(PODS, name, body, namespace=namespace)

        async def can_adopt() -> None:
            fresh = await self.client.get(DAEMONSETS, meta["name"], namespace=meta["namespace"])
            if fresh["metadata"].get("uid") != meta["uid"] or is_terminating(fresh):
                raise errors.ConflictError(f"daemonset {meta['name']} changed; not adopting pods")

        manager = RefManager(owner=ds, selector=selector, owner_api_version="apps/v1", owner_kind="DaemonSet",
                             resource=PODS, patch=patch, can_adopt=can_adopt)
        return await manager.claim(candidates)

    async def _manage(self, ds: Obj, key: str, nodes: dict[str, Obj], by_node: dict[str, list[Obj]],
                      current_hash: str) -> bool:
        """Create missing and delete misplaced, failed and surplus pods; True when it acted."""
        create: list[str] = []
        delete: list[Obj] = []
        surge = _scaled((((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {})
                        .get("maxSurge"), len(nodes), 0)
        for name in sorted(set(nodes) | set(by_node)):
            node = nodes.get(name)
            live = [p for p in by_node.get(name, []) if not is_terminating(p)]
            if node is None or not du.should_run(ds, node):
                delete += live
                continue
            if not live:
                # A pod still terminating holds the node; a deleted pod that already failed does not.
                if not any(_phase(p) not in ("Succeeded", "Failed") for p in by_node.get(name, [])):
                    create.append(name)
                continue
            failed = [p for p in live if _phase(p) == "Failed"]
            delete += self._failed_to_delete(ds, key, name, failed)
            ok = sorted((p for p in live if p not in failed), key=lambda p: str(p["metadata"].get("creationTimestamp")))
            if len(ok) > 1:
                keep = 2 if surge > 0 and {_hash(p) == current_hash for p in ok[:2]} == {True, False} else 1
                delete += ok[keep:]
        await self.pod_control.delete_pods(ds, key, delete)
        await self._create(ds, key, create, current_hash)
        return bool(create or delete)

    def _failed_to_delete(self, ds: Obj, key: str, node: str, failed: list[Obj]) -> list[Obj]:
        """The failed pods on ``node`` to delete now: none while the node's backoff runs (the
        DaemonSet is synced again when it ends), else all of them, starting the next period. The
        replacement is created once they are gone."""
        if not failed:
            return []
        backoff_key = daemonset_backoff.key_for(ds, node)
        left = self.failed_pods_backoff.remaining(backoff_key)
        if left > 0:
            log.debug("daemonset %s: deleting the failed pod on node %s waits %.1fs", key, node, left)
            self.queue.add_after(key, left)
            return []
        self.failed_pods_backoff.next(backoff_key)
        for pod in failed:
            self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                f"Found failed daemon pod {ds['metadata']['namespace']}/{pod['metadata']['name']} "
                                f"on node {node}, will try to kill it")
        return failed

    async def _rolling_update(self, ds: Obj, key: str, nodes: dict[str, Obj], by_node: dict[str, list[Obj]],
                              current_hash: str) -> None:
        strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        rolling = strategy.get("rollingUpdate") or {}
        eligible = [n for n in sorted(nodes) if du.should_run(ds, nodes[n])]
        surge = _scaled(rolling.get("maxSurge"), len(eligible), 0)
        max_unavailable = _scaled(rolling.get("maxUnavailable"), len(eligible), 1)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        now = self.clock()

        def available(p: Obj) -> bool:
            return not is_terminating(p) and is_pod_available(p, min_ready, now)
        old_on: dict[str, Obj] = {}
        new_on: dict[str, Obj] = {}
        for name in eligible:
            for pod in by_node.get(name, []):
                if not is_terminating(pod):
                    (new_on if _hash(pod) == current_hash else old_on)[name] = pod
        if surge > 0:
            surging = sum(1 for n in old_on if n in new_on)
            delete = [old_on[n] for n in old_on if n in new_on and available(new_on[n])]
            create = [n for n in old_on if n not in new_on][:max(0, surge - surging)]
            await self.pod_control.delete_pods(ds, key, delete)
            await self._create(ds, key, create, current_hash)
            return
        unavailable = sum(1 for n in eligible if not any(available(p) for p in by_node.get(n, [])))
        outdated = sorted(old_on.values(), key=lambda p: available(p))  # unavailable first: free to replace
        victims: list[Obj] = []
        for pod in outdated:
            if not available(pod):
                victims.append(pod)
            elif unavailable < max_unavailable:
                victims.append(pod)
                unavailable += 1
        await self.pod_control.delete_pods(ds, key, victims)

    async def _create(self, ds: Obj, key: str, node_names: list[str], current_hash: str) -> None:
        owner_ref = new_controller_ref(ds, api_version="apps/v1", kind="DaemonSet")
        generation = int(ds["metadata"].get("generation") or 1)
        await self.pod_control.create_pods(ds, key, [du.pod_for(ds, n, owner_ref, current_hash, generation)
                                                     for n in node_names], slow_start=False, record_failures=True)

    async def _write_status(self, ds: Obj, nodes: dict[str, Obj], by_node: dict[str, list[Obj]],
                            current_hash: str) -> None:
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        now = self.clock()
        desired = current = misscheduled = ready = updated = available = 0
        for name, node in nodes.items():
            live = [p for p in by_node.get(name, []) if not is_terminating(p)]
            run = du.should_run(ds, node)
            if not run:
                misscheduled += 1 if live else 0
                continue
            desired += 1
            if not live:
                continue
            current += 1
            if any(is_pod_ready(p) for p in live):
                ready += 1
            if any(is_pod_available(p, min_ready, now) for p in live):
                available += 1
            if any(_hash(p) == current_hash for p in live):
                updated += 1
        status: Obj = {"desiredNumberScheduled": desired, "currentNumberScheduled": current,
                       "numberMisscheduled": misscheduled, "numberReady": ready, "updatedNumberScheduled": updated,
                       "numberAvailable": available, "numberUnavailable": desired - available,
                       "observedGeneration": int(ds["metadata"].get("generation") or 0)}
        old = ds.get("status") or {}
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        if {k: v for k, v in old.items() if v not in (0, None)} == {k: v for k, v in status.items()
                                                                   if v not in (0, None)}:
            return
        try:
            await self.client.update(DAEMONSETS, {**ds, "status": status}, subresource="status")
        except errors.NotFoundError:
            return


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _hash(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get("controller-revision-hash", ""))


def _selector(ds: Obj) -> LabelSelector | None:
    try:
        return from_label_selector((ds.get("spec") or {}).get("selector"))
    except errors.ApiError:
        return None
