"""The pod lifecycle of one node: start containers through the runtime, restart them, report
status, and terminate gracefully.

``PodSyncer.sync(key, pod)`` is called by the pod workers (``kubelet.podworkers``), never twice at
once for a pod. It is level-triggered, like the kubelet's ``SyncPod``/``SyncTerminatingPod``:

* a pod without ``deletionTimestamp``: ensure its sandbox, run init containers one by one to
  completion, then start the regular containers; restart exited ones per ``restartPolicy``
  (Always / OnFailure / Never) with CrashLoopBackOff (``base`` doubling to ``max``); write the
  status computed by ``kubelet.status`` through ``pods/{name}/status`` (a merge patch carrying
  the resourceVersion it was computed from, so a stale write is a 409 and is retried);
* native sidecars (KEP-753: init containers with ``restartPolicy: Always``) start in order with
  the other init containers, but the next one starts as soon as the sidecar is *started*
  (running, and its startupProbe passed), not when it exits; they are restarted whenever they
  exit (CrashLoopBackOff applies, whatever the pod's ``restartPolicy``); once every app container
  exited for good (``Never``/``OnFailure``: a Job's pod) the sidecars are stopped in reverse
  order and the pod becomes Succeeded or Failed;
* a Succeeded or Failed pod: stop whatever still runs and its sandbox, releasing its IP; the
  exited containers (and their logs) stay until the pod is deleted, the status keeps ``podIP``;
* a pod with ``deletionTimestamp``: stop its app containers, then its sidecars in reverse order,
  all within ``deletionGracePeriodSeconds``; write the terminal status, then ``DELETE`` with
  ``gracePeriodSeconds=0`` and a uid precondition;
* a pod gone from the API (``pod is None``): kill and remove whatever the runtime still has.

The runtime is any :class:`kubelet.runtime.interface.ContainerRuntime`; each container attempt is
created and started by ``kubelet.containerstart`` (image-pull and CrashLoopBackOff back-offs, env,
mounts, postStart). Real nodes pass :class:`~kubelet.podfeatures.PodFeatures`: volumes materialised
before the sandbox (``kubelet.volumes``; a failure is a ``FailedMount`` event and the pod stays
``ContainerCreating``), env resolved per container (``kubelet.envvars``; a failure is
``CreateContainerConfigError``), the pod's DNS config, probes (``kubelet.prober``: a failed
liveness/startup probe kills the container, which then restarts under the usual rules) and
lifecycle hooks (``kubelet.lifecycle``). Hollow nodes pass none.

Ephemeral containers (``spec.ephemeralContainers``, added by ``kubectl debug``) are started once
the app containers may run, each exactly once: they are never restarted. A failed image pull is
retried with back-off (``kubelet.imagepull``: ``ErrImagePull``, then ``ImagePullBackOff``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kubelet.backoff import CrashLoopBackoff, should_restart
from kubelet.containerstart import ContainerStarter, StartedPod
from kubelet.imagepull import ImagePullBackoff
from kubelet.lifecycle import MIN_GRACE, hook_error_message, run_hook
from kubelet.podfeatures import DnsConfig, EventSink, PodFeatures
from kubelet.prober import ProbeManager
from kubelet.runtime.interface import (
    ContainerKind,
    ContainerRuntime,
    ContainerState,
    ContainerStatus,
    Prober,
    RuntimeError_,
    SandboxState,
)
from kubelet.status import Waiting, compute_pod_status, is_sidecar, latest_attempts
from kubelet.volumes import VolumeError
from machinery.client.rest import ApiClient
from machinery.errors import ConflictError, NotFoundError
from machinery.meta import now_rfc3339
from machinery.resources import PODS

__all__ = ["CrashLoopBackoff", "DnsConfig", "EventSink", "PodFeatures", "PodSyncer", "should_restart"]

log = logging.getLogger(__name__)


_REFRESHED_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")


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
        features: PodFeatures | None = None,
        image_backoff: ImagePullBackoff | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.prober = prober
        self.node_name = node_name
        self.host_ip = host_ip
        self.backoff = backoff
        self._requeue = requeue
        self._events = events
        self.starter = ContainerStarter(
            runtime, host_ip=host_ip, backoff=backoff,
            image_backoff=image_backoff if image_backoff is not None else ImagePullBackoff(),
            requeue=lambda uid, delay: self._requeue(self._keys.get(uid, ""), delay), event=self._event)
        self._features: PodFeatures | None = None
        self.features = features
        self._uids: dict[str, str] = {}
        """key → uid of the pod this node runs under that key."""
        self._keys: dict[str, str] = {}
        """uid → key (runtime events name uids)."""

    @property
    def features(self) -> PodFeatures | None:
        """A real node's bundle (``kubelet.server`` may set it after construction); None on hollow nodes."""
        return self._features

    @features.setter
    def features(self, features: PodFeatures | None) -> None:
        self._features = self.starter.features = features

    @property
    def image_backoff(self) -> ImagePullBackoff:
        return self.starter.image_backoff

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
            await self._sync_terminal(key, pod)
        else:
            await self._sync_running(key, pod)

    # -- running pods ---------------------------------------------------------------------
    async def _sync_running(self, key: str, pod: dict[str, Any]) -> None:
        uid = str(pod["metadata"]["uid"])
        spec = pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        waiting: dict[str, Waiting] = {}
        features = self.features
        volume_paths: dict[str, str] = {}
        if features is not None:
            try:
                volume_paths = await features.volumes.setup(pod, self.starter.context(pod, None))
            except VolumeError as exc:
                self._event(pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
                self._requeue(key, features.config_retry)
                await self._write_status(key, pod, waiting={})
                return
            features.probes.add_pod(pod)  # as upstream's SyncPod: once the volumes are mounted
        sandbox = await self.runtime.pod_sandbox_status(uid)
        if sandbox is None or sandbox.state is not SandboxState.READY:
            servers: list[str] = []
            searches: list[str] = []
            options: list[str] = []
            if features is not None and features.dns is not None:
                servers, searches, options = features.dns(pod)
            try:
                sandbox = await self.runtime.run_pod_sandbox(pod, dns_servers=servers, dns_searches=searches,
                                                             dns_options=options)
            except RuntimeError_ as exc:
                self._event(pod, "Warning", "FailedCreatePodSandBox", str(exc))
                raise
        latest = latest_attempts(await self.runtime.list_containers(uid))
        if features is not None:
            latest = await self._kill_unhealthy(pod, latest, features.probes)
        started: StartedPod = (pod, sandbox, volume_paths)

        regular = list(spec.get("containers") or [])
        initialized = any(str(c["name"]) in latest for c in regular)
        if initialized and self._app_containers_done(policy, regular, latest):
            # A Job's pod: the app containers are done for good; its sidecars must not keep it alive.
            await self._stop_sidecars(pod, latest)
            await self._write_status(key, pod, waiting=waiting)
            return
        if await self._sync_init_containers(pod, started, latest, initialized, waiting):
            for container in regular:
                found = latest.get(container["name"])
                current = found[0] if found else None
                if current is None:
                    await self.starter.start(started, container, ContainerKind.REGULAR, 0, waiting)
                elif current.state is ContainerState.EXITED and should_restart(policy, current.exit_code):
                    await self.starter.restart(started, container, current, waiting)
            for container in spec.get("ephemeralContainers") or []:
                if str(container["name"]) not in latest:  # started once, never restarted
                    await self.starter.start(started, container, ContainerKind.REGULAR, 0, waiting)
        if features is not None:
            # Workers first: the status below then sees their (possibly carried-over) verdicts.
            features.probes.sync_pod(pod, await self.runtime.list_containers(uid), sandbox.ip)
        await self._write_status(key, pod, waiting=waiting)
        if features is not None:
            if any(c.reason == "CreateContainerConfigError" for c in waiting.values()):
                self._requeue(key, features.config_retry)
            elif any(k in v for v in spec.get("volumes") or [] for k in _REFRESHED_VOLUMES):
                self._requeue(key, features.volume_refresh)

    async def _sync_init_containers(self, pod: dict[str, Any],
                                    started: StartedPod,
                                    latest: dict[str, tuple[ContainerStatus, ContainerStatus | None]],
                                    initialized: bool, waiting: dict[str, Waiting]) -> bool:
        """Advance the init sequence by one step; True once the app containers may run.

        Before initialization, the first init container not yet done is started (or restarted)
        and nothing after it runs: a regular one is done when it exited 0, a sidecar when it is
        started. After it, regular init containers are left alone and exited sidecars restarted."""
        spec = pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        for container in spec.get("initContainers") or []:
            sidecar = is_sidecar(container)
            if initialized and not sidecar:
                continue
            found = latest.get(container["name"])
            current = found[0] if found else None
            if current is not None:
                if not sidecar and current.state is ContainerState.EXITED and current.exit_code == 0:
                    continue
                if sidecar and current.state is not ContainerState.EXITED:
                    if initialized or self._sidecar_started(pod, current):
                        continue
                    return False  # wait for its startup before the next init step
            if current is None:
                await self.starter.start(started, container, ContainerKind.INIT, 0, waiting)
            elif current.state is ContainerState.EXITED and (sidecar or policy != "Never"):
                await self.starter.restart(started, container, current, waiting)
            if not initialized:
                return False
        return True

    def _sidecar_started(self, pod: dict[str, Any], status: ContainerStatus) -> bool:
        """Running, and past its startupProbe when it has one (the kubelet's ``started``)."""
        if status.state is not ContainerState.RUNNING:
            return False
        return self.features is None or self.features.probes.is_started(pod, status)

    @staticmethod
    def _app_containers_done(policy: str, regular: list[dict[str, Any]],
                             latest: dict[str, tuple[ContainerStatus, ContainerStatus | None]]) -> bool:
        """Every app container exited and none will be restarted (never under ``Always``)."""
        if policy == "Always" or not regular:
            return False
        for container in regular:
            found = latest.get(container["name"])
            if found is None or found[0].state is not ContainerState.EXITED \
                    or should_restart(policy, found[0].exit_code):
                return False
        return True

    async def _stop_sidecars(self, pod: dict[str, Any],
                             latest: dict[str, tuple[ContainerStatus, ContainerStatus | None]],
                             deadline: float | None = None) -> None:
        """Stop the running sidecars one by one in reverse order (preStop hooks included), each
        with what is left of the grace period (``deadline``, loop time; default: the pod's
        ``terminationGracePeriodSeconds`` from now)."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        for container in reversed((pod.get("spec") or {}).get("initContainers") or []):
            found = latest.get(container["name"])
            if not is_sidecar(container) or found is None or found[0].state is ContainerState.EXITED:
                continue
            self._event(pod, "Normal", "Killing", f"Stopping container {container['name']}")
            grace = max(deadline - loop.time(), 0.0)
            if self.features is not None:
                await self._stop_one(pod, container, found[0], grace)
            else:
                await self.runtime.stop_container(found[0].id, timeout=grace)

    async def _kill_unhealthy(self, pod: dict[str, Any], latest: dict[str, tuple[ContainerStatus,
                              ContainerStatus | None]], probes: ProbeManager
                              ) -> dict[str, tuple[ContainerStatus, ContainerStatus | None]]:
        """Stop running containers that failed liveness/startup probes (they restart as crashed)."""
        killed = False
        spec = pod.get("spec") or {}
        specs = {str(c["name"]): c for c in [*(spec.get("containers") or []),
                                             *(c for c in spec.get("initContainers") or [] if is_sidecar(c))]}
        for name, (current, _previous) in latest.items():
            if current.state is not ContainerState.RUNNING or not probes.liveness_failed(current):
                continue
            kind = "startup" if not probes.is_started(pod, current) else "liveness"
            self._event(pod, "Normal", "Killing", f"Container {name} failed {kind} probe, will be restarted")
            grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            await self._stop_one(pod, specs.get(name, {"name": name}), current, grace)
            killed = True
        if not killed:
            return latest
        return latest_attempts(await self.runtime.list_containers(str(pod["metadata"]["uid"])))

    async def _stop_one(self, pod: dict[str, Any], spec: dict[str, Any], status: ContainerStatus,
                        grace: float) -> None:
        """preStop hook (within ``grace``), then SIGTERM with the rest of it."""
        hook = (spec.get("lifecycle") or {}).get("preStop")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if hook and grace > 0 and status.state is ContainerState.RUNNING:
            sandbox = await self.runtime.pod_sandbox_status(status.pod_uid)
            result = await run_hook(hook, container=spec, container_id=status.id,
                                    pod_ip=sandbox.ip if sandbox else "", runtime=self.runtime, timeout=grace)
            if not result.success:
                self._event(pod, "Warning", "FailedPreStopHook",
                            hook_error_message("PreStop", hook, status.name, pod, result))
            grace = max(deadline - loop.time(), MIN_GRACE)
        await self.runtime.stop_container(status.id, timeout=grace)

    # -- finished pods --------------------------------------------------------------------
    async def _sync_terminal(self, key: str, pod: dict[str, Any]) -> None:
        """A Succeeded/Failed pod: stop what still runs, then its sandbox, which gives the pod's IP
        back to the node's range (the kubelet's ``StopPodSandbox`` once a terminal pod's containers
        exited). The exited containers stay, so their logs are served, until the pod is deleted."""
        uid = str(pod["metadata"]["uid"])
        await self._stop_all(uid, timeout=0)
        if self.features is not None:
            self.features.probes.remove_pod(uid)
        await self.runtime.stop_pod_sandbox(uid)
        await self._refresh_terminal(key, pod)

    # -- status ---------------------------------------------------------------------------
    async def _refresh_terminal(self, key: str, pod: dict[str, Any]) -> None:
        """Re-report the container states of a finished pod while the runtime still has them: a
        detail learnt after the first terminal write (Docker's ``oom`` event can trail ``die``, so
        ``Error`` becomes ``OOMKilled``) still reaches the status. The phase never moves."""
        spec = pod.get("spec") or {}
        names = {str(c["name"]) for c in spec.get("containers") or []}
        present = {c.name for c in await self.runtime.list_containers(str(pod["metadata"]["uid"]))}
        if names <= present:
            await self._write_status(key, pod, waiting={}, terminal=True, keep_phase=True)

    async def _write_status(self, key: str, pod: dict[str, Any], *, waiting: dict[str, Waiting],
                            terminal: bool = False, keep_phase: bool = False) -> None:
        uid = str(pod["metadata"]["uid"])
        probes = self.features.probes if self.features is not None else None
        status = compute_pod_status(
            pod,
            sandbox=await self.runtime.pod_sandbox_status(uid),
            containers=await self.runtime.list_containers(uid),
            waiting=waiting,
            is_ready=lambda c: self.prober.is_ready(pod, c),
            is_started=(lambda c: probes.is_started(pod, c)) if probes is not None else None,
            host_ip=self.host_ip,
            now=now_rfc3339(),
            runtime=self.runtime.name,
            terminal=terminal,
        )
        old = pod.get("status") or {}
        if keep_phase and old.get("phase"):
            status["phase"] = old["phase"]
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
        spec = pod.get("spec") or {}
        sidecars = {str(c["name"]) for c in spec.get("initContainers") or [] if is_sidecar(c)}
        latest = latest_attempts(await self.runtime.list_containers(uid))
        running = [c for c, _ in latest.values() if c.state is not ContainerState.EXITED and c.name not in sidecars]
        for container in running:
            self._event(pod, "Normal", "Killing", f"Stopping container {container.name}")
        deadline = asyncio.get_running_loop().time() + float(grace)
        if self.features is not None:
            self.features.probes.remove_pod(uid)
            specs = {str(c["name"]): c for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]}
            await asyncio.gather(*(self._stop_one(pod, specs.get(c.name, {"name": c.name}), c, float(grace))
                                   for c in running))
        else:
            await asyncio.gather(*(self.runtime.stop_container(c.id, timeout=float(grace)) for c in running))
        # App containers first, then the sidecars in reverse order with what is left of the grace.
        await self._stop_sidecars(pod, latest, deadline)
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
        self.image_backoff.forget_pod(uid)
        if self.features is not None:
            self.features.probes.remove_pod(uid)
            await self.features.volumes.cleanup(uid)
