"""The pod lifecycle of one node: start containers through the runtime, restart them, report
status, and terminate gracefully.

``PodSyncer.sync(key, pod)`` is called by the pod workers (``kubelet.podworkers``), never twice at
once for a pod. It is level-triggered, like the kubelet's ``SyncPod``/``SyncTerminatingPod``:

* a pod without ``deletionTimestamp``: ensure its sandbox, run init containers one by one to
  completion, then start the regular containers; restart exited ones per ``restartPolicy``
  (Always / OnFailure / Never) with CrashLoopBackOff (``base`` doubling to ``max``); write the
  status computed by ``kubelet.status`` through ``pods/{name}/status`` (a merge patch carrying
  the resourceVersion it was computed from, so a stale write is a 409 and is retried);
* a pod with ``deletionTimestamp``: stop its containers within ``deletionGracePeriodSeconds``,
  write the terminal status, then ``DELETE`` with ``gracePeriodSeconds=0`` and a uid precondition;
* a pod gone from the API (``pod is None``): kill and remove whatever the runtime still has.

The runtime is any :class:`kubelet.runtime.interface.ContainerRuntime` (fake now, Docker next).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubelet.runtime.interface import (
    ContainerKind,
    ContainerRuntime,
    ContainerState,
    ContainerStatus,
    Prober,
    RuntimeError_,
    SandboxState,
)
from kubelet.status import Waiting, compute_pod_status, latest_attempts
from machinery.client.rest import ApiClient
from machinery.errors import ConflictError, NotFoundError
from machinery.meta import now_rfc3339
from machinery.resources import PODS

__all__ = ["CrashLoopBackoff", "EventSink", "PodSyncer", "should_restart"]

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where pod events go (``machinery.client.events.EventRecorder`` has this shape)."""

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ...


def should_restart(policy: str, exit_code: int | None) -> bool:
    """Whether an exited container is restarted under the pod's ``restartPolicy``."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


@dataclass
class _Entry:
    delay: float
    last_update: float


@dataclass
class CrashLoopBackoff:
    """Kubernetes' container restart back-off: the first restart is immediate, then each
    restart waits ``base``, ``2*base``, ... up to ``maximum`` after the previous restart; an
    entry idle for ``2*maximum`` is forgotten (the container ran long enough)."""

    base: float = 10.0
    maximum: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def remaining(self, key: str) -> float:
        """Seconds until ``key`` may restart (0: now)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        elapsed = self.clock() - entry.last_update
        if elapsed > 2 * self.maximum:
            del self._entries[key]
            return 0.0
        return max(entry.delay - elapsed, 0.0)

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def next(self, key: str) -> None:
        """Record a restart of ``key`` now; the following one waits longer."""
        entry = self._entries.get(key)
        delay = self.base if entry is None else min(entry.delay * 2, self.maximum)
        self._entries[key] = _Entry(delay=delay, last_update=self.clock())

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


def _seconds(value: float) -> str:
    return f"{value:g}s" if value < 60 else f"{int(value // 60)}m{int(value % 60)}s"


class PodSyncer:
    """Pod lifecycle for one node, against one runtime."""

    def __init__(
        self,
        client: ApiClient,
        runtime: ContainerRuntime,
        prober: Prober,
        *,
        node_name: str,
        host_ip: str,
        backoff: CrashLoopBackoff,
        requeue: Callable[[str, float], None],
        events: EventSink | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.prober = prober
        self.node_name = node_name
        self.host_ip = host_ip
        self.backoff = backoff
        self._requeue = requeue
        self._events = events
        self._uids: dict[str, str] = {}
        """key → uid of the pod this node runs under that key."""
        self._keys: dict[str, str] = {}
        """uid → key (runtime events name uids)."""

    def key_of(self, uid: str) -> str | None:
        return self._keys.get(uid)

    def _event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        if self._events is not None:
            self._events.event(pod, type_, reason, message)

    # -- entry point ----------------------------------------------------------------------
    async def sync(self, key: str, pod: dict[str, Any] | None) -> None:
        known_uid = self._uids.get(key)
        uid = str(pod["metadata"].get("uid", "")) if pod is not None else None
        if known_uid is not None and known_uid != uid:
            # Deleted (or replaced by a new pod of the same name): the old one goes at once.
            await self._cleanup(known_uid)
            self._uids.pop(key, None)
            self._keys.pop(known_uid, None)
        if pod is None or uid is None:
            return
        self._uids[key], self._keys[uid] = uid, key
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            await self._terminate(key, pod)
        elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            await self._stop_all(uid, timeout=0)
        else:
            await self._sync_running(key, pod)

    # -- running pods ---------------------------------------------------------------------
    async def _sync_running(self, key: str, pod: dict[str, Any]) -> None:
        uid = str(pod["metadata"]["uid"])
        spec = pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        waiting: dict[str, Waiting] = {}
        sandbox = await self.runtime.pod_sandbox_status(uid)
        if sandbox is None or sandbox.state is not SandboxState.READY:
            try:
                sandbox = await self.runtime.run_pod_sandbox(pod)
            except RuntimeError_ as exc:
                self._event(pod, "Warning", "FailedCreatePodSandBox", str(exc))
                raise
        latest = latest_attempts(await self.runtime.list_containers(uid))

        init_done = True
        for container in spec.get("initContainers") or []:
            found = latest.get(container["name"])
            current = found[0] if found else None
            if current is not None and current.state is ContainerState.EXITED and current.exit_code == 0:
                continue
            init_done = False
            if current is None:
                await self._start(pod, container, ContainerKind.INIT, 0, waiting)
            elif current.state is ContainerState.EXITED and policy != "Never":
                await self._restart(key, pod, container, current, waiting)
            break
        if init_done:
            for container in spec.get("containers") or []:
                found = latest.get(container["name"])
                current = found[0] if found else None
                if current is None:
                    await self._start(pod, container, ContainerKind.REGULAR, 0, waiting)
                elif current.state is ContainerState.EXITED and should_restart(policy, current.exit_code):
                    await self._restart(key, pod, container, current, waiting)
        await self._write_status(key, pod, waiting=waiting)

    async def _start(self, pod: dict[str, Any], container: dict[str, Any], kind: ContainerKind, attempt: int,
                     waiting: dict[str, Waiting]) -> None:
        name = str(container["name"])
        try:
            container_id = await self.runtime.create_container(pod, container, kind=kind, attempt=attempt)
            if attempt == 0:
                self._event(pod, "Normal", "Pulled",
                            f'Container image "{container.get("image", "")}" already present on machine')
            self._event(pod, "Normal", "Created", f"Created container {name}")
            await self.runtime.start_container(container_id)
            self._event(pod, "Normal", "Started", f"Started container {name}")
        except RuntimeError_ as exc:
            waiting[name] = Waiting(exc.reason, str(exc))
            self._event(pod, "Warning", "Failed", f"Error: {exc}")

    async def _restart(self, key: str, pod: dict[str, Any], container: dict[str, Any], current: ContainerStatus,
                       waiting: dict[str, Waiting]) -> None:
        meta = pod["metadata"]
        backoff_key = f"{meta['uid']}/{container['name']}"
        remaining = self.backoff.remaining(backoff_key)
        if remaining > 0:
            delay = _seconds(self.backoff.delay(backoff_key))
            message = (f"back-off {delay} restarting failed container={container['name']} "
                       f"pod={meta['name']}_{meta.get('namespace', '')}({meta['uid']})")
            waiting[str(container["name"])] = Waiting("CrashLoopBackOff", message)
            self._event(pod, "Warning", "BackOff", "Back-off restarting failed container "
                        f"{container['name']} in pod {meta['name']}_{meta.get('namespace', '')}({meta['uid']})")
            self._requeue(key, remaining + 0.01)
            return
        self.backoff.next(backoff_key)
        await self._start(pod, container, current.kind, current.attempt + 1, waiting)

    # -- status ---------------------------------------------------------------------------
    async def _write_status(self, key: str, pod: dict[str, Any], *, waiting: dict[str, Waiting],
                            terminal: bool = False) -> None:
        uid = str(pod["metadata"]["uid"])
        status = compute_pod_status(
            pod,
            sandbox=await self.runtime.pod_sandbox_status(uid),
            containers=await self.runtime.list_containers(uid),
            waiting=waiting,
            is_ready=lambda c: self.prober.is_ready(pod, c),
            host_ip=self.host_ip,
            now=now_rfc3339(),
            runtime=self.runtime.name,
            terminal=terminal,
        )
        old = pod.get("status") or {}
        if all(old.get(field_) == value for field_, value in status.items()):
            return
        meta = pod["metadata"]
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"], "uid": uid}, "status": status}
        try:
            await self.client.patch(PODS, str(meta["name"]), patch, namespace=meta.get("namespace"),
                                    subresource="status")
        except ConflictError:
            # The cache is behind: the informer's update re-queues us; a timer is the safety net.
            self._requeue(key, 0.5)
        except NotFoundError:
            pass

    # -- termination ----------------------------------------------------------------------
    async def _terminate(self, key: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = str(meta["uid"])
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        running = [c for c in await self.runtime.list_containers(uid) if c.state is not ContainerState.EXITED]
        for container in running:
            self._event(pod, "Normal", "Killing", f"Stopping container {container.name}")
        await self._stop_all(uid, timeout=float(grace))
        await self.runtime.stop_pod_sandbox(uid)
        if await self.runtime.pod_sandbox_status(uid) is not None:
            await self._write_status(key, pod, waiting={}, terminal=True)
        try:
            await self.client.delete(PODS, str(meta["name"]), namespace=meta.get("namespace"),
                                     grace_period_seconds=0, preconditions={"uid": uid})
        except (NotFoundError, ConflictError):
            pass
        await self._cleanup(uid)

    async def cleanup_orphans(self, live_uids: set[str]) -> list[str]:
        """Kill and remove runtime pods whose API pod is gone (a kubelet restarted while they were
        deleted); return their uids. Pods still in the API are adopted by their next sync."""
        orphans = [uid for uid in await self.runtime.list_pod_uids() if uid not in live_uids]
        for uid in orphans:
            await self._cleanup(uid)
        return orphans

    async def _stop_all(self, uid: str, *, timeout: float) -> None:
        running = [c for c in await self.runtime.list_containers(uid) if c.state is not ContainerState.EXITED]
        if running:
            await asyncio.gather(*(self.runtime.stop_container(c.id, timeout=timeout) for c in running))

    async def _cleanup(self, uid: str) -> None:
        await self._stop_all(uid, timeout=0)
        await self.runtime.remove_pod_sandbox(uid)
        self.backoff.forget_prefix(f"{uid}/")
