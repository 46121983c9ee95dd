"""The scheduler: informers -> queue -> scheduling cycle -> assume -> asynchronous bind.

Built and run by :mod:`scheduler.server` (the ``kubelab scheduler`` process), or directly in tests
and benchmarks (``Scheduler(client)`` then ``await scheduler.run()``; cancel to stop).

- Pod informer (all namespaces): unassigned, non-terminal, not-deleting pods whose schedulerName is
  this profile's go to the :class:`~scheduler.queue.SchedulingQueue`; assigned non-terminal pods go to
  the :class:`~scheduler.cache.SchedulerCache`. Node informer: nodes go to the cache; an added or
  changed node, a deleted pod, or an expired assumption moves parked pods back to active.
- One loop pops pods and runs :class:`~scheduler.cycle.Cycle` synchronously; the chosen node is
  *assumed* at once and ``pods/binding`` is posted in the background, at most ``bind_concurrency``
  at a time (the loop waits for a slot, so memory stays bounded).
- Teaching output: a ``Scheduled`` event with the chosen node's score and the runners-up, or a
  ``FailedScheduling`` warning plus the ``PodScheduled=False`` condition (reason ``Unschedulable``)
  carrying Kubernetes' message; the condition is only written when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from machinery.client import ApiClient, EventRecorder, InformerFactory
from machinery.errors import ApiError, ConflictError, NotFoundError
from machinery.meta import now_rfc3339
from machinery.resources import NODES, PODS
from scheduler.cache import SchedulerCache
from scheduler.cycle import Cycle, FitError, ScheduleResult
from scheduler.framework import Handle
from scheduler.metrics import SchedulerMetrics
from scheduler.podinfo import PodInfo, pod_info
from scheduler.profile import Profile, build_framework
from scheduler.queue import SchedulingQueue

log = logging.getLogger(__name__)
COMPONENT = "default-scheduler"


def scheduled_message(pod: PodInfo, result: ScheduleResult) -> str:
    """``Successfully assigned ns/name to node (score 87; runners-up node-1 80, node-3 75)``."""
    text = f"Successfully assigned {pod.namespace}/{pod.name} to {result.node}"
    if result.runners_up:
        others = ", ".join(f"{name} {score}" for name, score in result.runners_up)
        return f"{text} (score {result.score}; runners-up {others})"
    return f"{text} (score {result.score}; the only feasible node)"


def _node_relevant(node: dict[str, Any]) -> tuple[Any, ...]:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    return (meta.get("labels"), spec.get("taints"), spec.get("unschedulable"), status.get("allocatable"),
            status.get("capacity"), status.get("images"))


class Scheduler:
    """One scheduler profile against one apiserver."""

    def __init__(self, client: ApiClient, *, profile: Profile | None = None,
                 percentage_of_nodes_to_score: int | None = None, metrics: SchedulerMetrics | None = None,
                 bind_concurrency: int = 32, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.profile = profile or Profile()
        self.metrics = metrics or SchedulerMetrics()
        self.cache = SchedulerCache(clock=clock)
        self.queue = SchedulingQueue(clock=clock)
        self.framework = build_framework(self.profile, Handle(self.cache))
        percentage = (percentage_of_nodes_to_score if percentage_of_nodes_to_score is not None
                      else self.profile.percentage_of_nodes_to_score)
        self.cycle = Cycle(self.framework, self.cache, percentage=percentage, rng=rng)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.metrics.set_pending_source(self.queue.counts)
        self._clock = clock
        self._slots = asyncio.Semaphore(bind_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._factory = InformerFactory(client)
        self.ready = asyncio.Event()
        self.scheduled = 0

    # -- informer handlers (sync; they only touch the queue and the cache) ------------------------
    def _on_pod(self, obj: dict[str, Any]) -> None:
        pod = pod_info(obj)
        if pod.node_name:
            self.queue.delete(pod.key)
            if pod.terminal:
                if self.cache.has_pod(pod.key):
                    self.cache.remove_pod(pod.key)
                    self.queue.move_all_to_active()
            else:
                self.cache.add_pod(pod)
            return
        if pod.terminal or pod.deleting or pod.scheduler_name != self.framework.scheduler_name:
            self.queue.delete(pod.key)
            return
        if self.cache.is_assumed(pod.key):  # our own bind is in flight; its watch event will follow
            return
        self.queue.add(pod)

    def _on_pod_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self._on_pod(new)

    def _on_pod_delete(self, obj: dict[str, Any]) -> None:
        pod = pod_info(obj)
        self.queue.delete(pod.key)
        if self.cache.has_pod(pod.key):
            self.cache.remove_pod(pod.key)
            self.queue.move_all_to_active()

    def _on_node(self, obj: dict[str, Any]) -> None:
        self.cache.set_node(obj)
        self.queue.move_all_to_active()

    def _on_node_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.cache.set_node(new)
        if _node_relevant(old) != _node_relevant(new):
            self.queue.move_all_to_active()

    def _on_node_delete(self, obj: dict[str, Any]) -> None:
        self.cache.remove_node(str((obj.get("metadata") or {}).get("name") or ""))

    # -- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Start informers, then schedule until cancelled."""
        pods = self._factory.informer(PODS)
        pods.add_handler(on_add=self._on_pod, on_update=self._on_pod_update, on_delete=self._on_pod_delete)
        nodes = self._factory.informer(NODES)
        nodes.add_handler(on_add=self._on_node, on_update=self._on_node_update, on_delete=self._on_node_delete)
        for plugin in self.framework.filters:  # plugins that follow more objects (VolumeBinding)
            watch = getattr(plugin, "watch", None)
            if watch is not None:
                watch(self._factory, self.queue.move_all_to_active)
        await self._factory.start()
        try:
            await self._factory.wait_synced()
            self.ready.set()
            log.info("scheduler %s: caches synced, %d nodes, %d pending pods",
                     self.framework.scheduler_name, len(self.cache.nodes), len(self.queue))
            housekeeping = asyncio.create_task(self._housekeeping(), name="scheduler:housekeeping")
            try:
                await self._loop()
            finally:
                housekeeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await housekeeping
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._factory.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.recorder.close(), timeout=5)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.cache.cleanup_expired():
                self.queue.move_all_to_active()

    async def _loop(self) -> None:
        while True:
            pod = await self.queue.pop()
            await self._slots.acquire()
            try:
                self.schedule_one(pod)
            except Exception:  # never let one pod kill the loop
                log.exception("scheduler: scheduling %s failed", pod.key)
                self._slots.release()
                self.queue.requeue_error(pod.key)
            await asyncio.sleep(0)  # let informer events and bind responses in between pods

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler: task %s failed", task.get_name(), exc_info=task.exception())

    def schedule_one(self, pod: PodInfo) -> None:
        """Run one cycle for ``pod`` (a bind slot is held; released here or by the bind task)."""
        start = self._clock()
        name = self.framework.scheduler_name
        try:
            result = self.cycle.schedule(pod)
        except FitError as err:
            self._slots.release()
            self.metrics.observe("unschedulable", self._clock() - start, name)
            self.queue.requeue_unschedulable(pod.key)
            self._report_unschedulable(pod, err.message())
            return
        self.cache.assume(pod, result.node)
        self.metrics.observe("scheduled", self._clock() - start, name)
        self._spawn(self._bind(pod, result), f"scheduler:bind:{pod.key}")

    async def _bind(self, pod: PodInfo, result: ScheduleResult) -> None:
        try:
            for plugin in self.framework.filters:  # PreBind (VolumeBinding annotates claims)
                pre_bind = getattr(plugin, "pre_bind", None)
                if pre_bind is not None:
                    await pre_bind(self.client, pod.obj, result.node)
            await self.client.bind(pod.namespace, pod.name, result.node)
        except (NotFoundError, ConflictError) as exc:
            # Deleted, or already bound by someone else: nothing left to schedule.
            log.info("scheduler: binding %s to %s: %s", pod.key, result.node, exc)
            self.cache.forget(pod.key)
            self.queue.done(pod.key)
        except ApiError as exc:
            log.warning("scheduler: binding %s to %s failed: %s", pod.key, result.node, exc)
            self.cache.forget(pod.key)
            self.queue.requeue_error(pod.key)
            self.recorder.event(pod.obj, "Warning", "FailedScheduling", f"Binding rejected: {exc}")
        except Exception:
            # Never leave the pod assumed and in flight: it would not be scheduled again.
            log.exception("scheduler: binding %s to %s failed", pod.key, result.node)
            self.cache.forget(pod.key)
            self.queue.requeue_error(pod.key)
        else:
            self.cache.finish_binding(pod.key)
            self.queue.done(pod.key)
            self.scheduled += 1
            self.recorder.event(pod.obj, "Normal", "Scheduled", scheduled_message(pod, result))
        finally:
            self._slots.release()

    def _report_unschedulable(self, pod: PodInfo, message: str) -> None:
        log.info("scheduler: %s: %s", pod.key, message)
        self.recorder.event(pod.obj, "Warning", "FailedScheduling", message)
        current = next((c for c in (pod.obj.get("status") or {}).get("conditions") or []
                        if c.get("type") == "PodScheduled"), None)
        if current and current.get("status") == "False" and current.get("reason") == "Unschedulable" \
                and current.get("message") == message:
            return
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                     "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        self._spawn(self._patch_condition(pod, condition), f"scheduler:condition:{pod.key}")

    async def _patch_condition(self, pod: PodInfo, condition: dict[str, Any]) -> None:
        try:
            await self.client.patch(PODS, pod.name, {"status": {"conditions": [condition]}},
                                    namespace=pod.namespace, patch_type="strategic", subresource="status")
        except ApiError as exc:
            log.info("scheduler: %s: cannot set PodScheduled condition: %s", pod.key, exc)
