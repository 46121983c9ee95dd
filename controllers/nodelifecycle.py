"""Node lifecycle controller: node health from heartbeats, NoExecute taints, taint-based eviction.

Started by ``controllers.manager``. Like Kubernetes' node lifecycle controller, health is judged
by *when this controller last saw a heartbeat change* (a node's Lease ``spec.renewTime`` in
``kube-node-lease`` or its Ready condition's ``lastHeartbeatTime``), measured on its own clock,
so clock skew between machines does not matter. Every ``node_monitor_period`` seconds (and on
node, lease and pod events) ``sync(node)``:

1. when no heartbeat was seen for ``node_monitor_grace_period`` seconds, sets every condition
   (and the missing standard ones) to ``Unknown`` — reason ``NodeStatusUnknown``, "Kubelet
   stopped posting node status." — and marks the node's pods ``Ready=False``;
2. reconciles the ``not-ready`` / ``unreachable`` taints with the Ready condition
   (:mod:`controllers.taint_eviction`): added when the node is not Ready, removed when its
   kubelet reports Ready again;
3. deletes the pods whose toleration of the node's NoExecute taints has run out (counted from
   the taint's ``timeAdded``), and schedules a re-check for the next deadline.

The clock (epoch seconds) is injectable; all timings come from the settings (labs shorten them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controllers.taint_eviction import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    condition,
    desired_taints,
    eviction_delay,
    no_execute,
    ready_status,
)
from machinery.client import wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.client.store import INDEX_NODE
from machinery.errors import ConflictError, NotFoundError
from machinery.meta import object_key, parse_rfc3339
from machinery.resources import LEASES, NODES, PODS

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
STANDARD_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass
class NodeHealth:
    """What was last seen of a node's heartbeats, and when (controller clock)."""

    probe_time: float
    lease_renew: str = ""
    ready_heartbeat: str = ""


def rfc3339(seconds: float) -> str:
    """Epoch seconds as a Kubernetes timestamp."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unknown_conditions(node: dict[str, Any], now: str) -> list[dict[str, Any]] | None:
    """The node's conditions all set to ``Unknown``; ``None`` when they already are."""
    current: list[dict[str, Any]] = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
    changed = False
    for cond in current:
        if cond.get("status") != "Unknown":
            cond.update(status="Unknown", reason="NodeStatusUnknown",
                        message="Kubelet stopped posting node status.", lastTransitionTime=now)
            changed = True
    present = {c.get("type") for c in current}
    for type_ in STANDARD_CONDITIONS:
        if type_ not in present:
            current.append({"type": type_, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                            "message": "Kubelet never posted node status.", "lastHeartbeatTime": now,
                            "lastTransitionTime": now})
            changed = True
    return current if changed else None


class NodeLifecycleController:
    """Node health, not-ready/unreachable taints and taint-based eviction (queue keys: node names)."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._settings = settings
        self._clock = clock
        self._nodes = factory.informer(NODES)
        self._leases = factory.informer(LEASES, namespace=NODE_LEASE_NAMESPACE)
        self._pods = factory.informer(PODS)
        self.queue = settings.workqueue("nodelifecycle")
        self.health: dict[str, NodeHealth] = {}
        self._nodes.add_handler(on_add=self._node_seen, on_update=lambda _o, n: self._node_seen(n),
                                on_delete=self._node_deleted)
        self._leases.add_handler(on_add=self._lease_seen, on_update=lambda _o, n: self._lease_seen(n))
        self._pods.add_handler(on_add=self._pod_seen, on_update=lambda _o, n: self._pod_seen(n))

    # ---- observations ---------------------------------------------------------------------
    def _record(self, name: str) -> NodeHealth:
        record = self.health.get(name)
        if record is None:
            record = self.health[name] = NodeHealth(probe_time=self._clock())
        return record

    def _node_seen(self, node: dict[str, Any]) -> None:
        name = str(node["metadata"]["name"])
        record = self._record(name)
        heartbeat = str((condition(node, "Ready") or {}).get("lastHeartbeatTime") or "")
        if heartbeat and heartbeat != record.ready_heartbeat:
            record.ready_heartbeat = heartbeat
            record.probe_time = self._clock()
        self.queue.add(name)

    def _node_deleted(self, node: dict[str, Any]) -> None:
        self.health.pop(str(node["metadata"]["name"]), None)

    def _lease_seen(self, lease: dict[str, Any]) -> None:
        name = str(lease["metadata"]["name"])
        renew = str((lease.get("spec") or {}).get("renewTime") or "")
        record = self._record(name)
        if renew and renew != record.lease_renew:
            record.lease_renew = renew
            record.probe_time = self._clock()
            # A lease coming back after the node was marked Unknown is news worth a sync.
            if self._nodes.store.get(name) is not None:
                self.queue.add(name)

    def _pod_seen(self, pod: dict[str, Any]) -> None:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or pod["metadata"].get("deletionTimestamp"):
            return
        node = self._nodes.store.get(node_name)
        if node is not None and (ready_status(node) != "True" or no_execute((node.get("spec") or {}).get("taints")
                                                                             or [])):
            self.queue.add(node_name)

    # ---- sync -----------------------------------------------------------------------------
    async def sync(self, name: str) -> None:
        """Health, taints and evictions of node ``name``."""
        node = self._nodes.store.get(name)
        if node is None:
            return
        now = self._clock()
        stamp = rfc3339(now)
        record = self._record(name)
        if now - record.probe_time > self._settings.node_monitor_grace_period:
            conditions = unknown_conditions(node, stamp)
            if conditions is not None:
                node = await self._write_status(name, conditions)
                log.info("node %s: no heartbeat for %.0fs; Ready=Unknown", name, now - record.probe_time)
        if ready_status(node) != "True":
            await self._mark_pods_not_ready(name, stamp)
        taints = desired_taints(node, stamp)
        if taints != ((node.get("spec") or {}).get("taints") or []):
            node = await self._write_taints(name, stamp)
        await self._evict(node, now)

    async def _write_status(self, name: str, conditions: list[dict[str, Any]]) -> dict[str, Any]:
        live = await self._client.get(NODES, name)
        live.setdefault("status", {})["conditions"] = conditions
        return await self._client.update(NODES, live, subresource="status")

    async def _write_taints(self, name: str, stamp: str) -> dict[str, Any]:
        live = await self._client.get(NODES, name)
        taints = desired_taints(live, stamp)
        spec = live.setdefault("spec", {})
        if taints == (spec.get("taints") or []):
            return live
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)
        log.info("node %s: taints now %s", name, [f"{t['key']}:{t['effect']}" for t in taints])
        return await self._client.update(NODES, live)

    async def _mark_pods_not_ready(self, name: str, stamp: str) -> None:
        for pod in self._pods.store.by_index(INDEX_NODE, name):
            ready = condition(pod, "Ready")
            if ready is None or ready.get("status") == "False":
                continue
            try:
                live = await self._client.get(PODS, pod["metadata"]["name"], namespace=pod["metadata"]["namespace"])
                for cond in (live.get("status") or {}).get("conditions") or []:
                    if cond.get("type") == "Ready":
                        cond.update(status="False", lastTransitionTime=stamp)
                await self._client.update(PODS, live, subresource="status")
            except (NotFoundError, ConflictError):
                continue

    def _defaults(self) -> dict[str, float]:
        return {TAINT_NOT_READY: float(self._settings.default_not_ready_toleration_seconds),
                TAINT_UNREACHABLE: float(self._settings.default_unreachable_toleration_seconds)}

    async def _evict(self, node: dict[str, Any], now: float) -> None:
        taints = no_execute((node.get("spec") or {}).get("taints") or [])
        if not taints:
            return
        added = max((parse_rfc3339(str(t["timeAdded"])).timestamp() for t in taints if t.get("timeAdded")),
                    default=now)
        next_check: float | None = None
        for pod in self._pods.store.by_index(INDEX_NODE, node["metadata"]["name"]):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            delay = eviction_delay(pod, taints, self._defaults())
            if delay is None:
                continue
            deadline = added + delay
            if now < deadline:
                next_check = deadline if next_check is None else min(next_check, deadline)
                continue
            log.info("evicting pod %s from node %s (taints %s)", object_key(pod), node["metadata"]["name"],
                     [t["key"] for t in taints])
            try:
                await self._client.delete(PODS, meta["name"], namespace=meta.get("namespace"),
                                          preconditions={"uid": meta.get("uid", "")})
            except (NotFoundError, ConflictError):
                pass
        if next_check is not None:
            self.queue.add_after(str(node["metadata"]["name"]), max(next_check - now, 0.0) + 0.05)

    # ---- running --------------------------------------------------------------------------
    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self._settings.node_monitor_period)
            for node in self._nodes.store.list():
                self.queue.add(str(node["metadata"]["name"]))

    async def run(self, workers: int) -> None:
        """Monitor nodes and process the queue until cancelled (after the caches have synced)."""
        await wait_for_cache_sync(self._nodes, self._leases, self._pods)
        monitor = asyncio.create_task(self._monitor(), name="nodelifecycle-monitor")
        try:
            await run_workers(self.queue, self.sync, workers=workers, name="nodelifecycle")
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
