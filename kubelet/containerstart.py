"""Starting one container attempt of a pod: the kubelet's ``startContainer`` with its back-offs.

``kubelet.sync.PodSyncer`` calls :meth:`ContainerStarter.start` for a container that never ran and
:meth:`ContainerStarter.restart` for one that exited and must run again; both fill ``waiting`` with
the reason a container is not running yet, which ``kubelet.status`` shows. Guarantees:

* a failed image pull is retried with back-off (``kubelet.imagepull``): ``ErrImagePull`` for the
  first part of the wait, then ``ImagePullBackOff``; ``ErrImageNeverPull`` is retried at the base
  delay (the image may be loaded meanwhile); the pod is re-synced when the wait ends;
* a restart waits out the container's CrashLoopBackOff (``kubelet.backoff``), shown as
  ``CrashLoopBackOff`` with Kubernetes' message, and is attempt ``previous + 1``;
* on a real node (:class:`~kubelet.podfeatures.PodFeatures`) env and ``$(VAR)`` references are
  resolved (``kubelet.envvars``; a failure is ``CreateContainerConfigError``), volumes bind-mounted
  (``kubelet.volumes``) and the ``postStart`` hook run (``kubelet.lifecycle``; a failure kills the
  container, which then restarts as a crash, and shows ``PostStartHookError``);
* the events are Kubernetes': ``Pulled``, ``Created``, ``Started``, ``Failed``, ``BackOff``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubelet.backoff import CrashLoopBackoff, seconds_text
from kubelet.envvars import NodeAllocatable, PodContext, prepare_container
from kubelet.imagepull import (
    ERR_IMAGE_NEVER_PULL,
    ERR_IMAGE_PULL,
    ERR_IMAGE_PULL_SHOWN,
    IMAGE_PULL_BACKOFF,
    ImagePullBackoff,
    backoff_message,
    failed_event_message,
)
from kubelet.lifecycle import hook_error_message, run_hook
from kubelet.podfeatures import PodFeatures
from kubelet.runtime.interface import ContainerKind, ContainerRuntime, ContainerStatus, RuntimeError_, SandboxStatus
from kubelet.status import Waiting
from kubelet.volumes import VolumeError, container_mounts

__all__ = ["ContainerStarter", "PodEvent", "StartedPod"]

StartedPod = tuple[dict[str, Any], SandboxStatus, dict[str, str]]
"""(pod, its ready sandbox, volume name → host path): what every container start of a sync shares."""

PodEvent = Callable[[dict[str, Any], str, str, str], None]
"""(pod, type, reason, message) → an event on the pod."""


class ContainerStarter:
    """Creates and starts container attempts of one node's pods (see the module docstring)."""

    def __init__(self, runtime: ContainerRuntime, *, host_ip: str, backoff: CrashLoopBackoff,
                 image_backoff: ImagePullBackoff, requeue: Callable[[str, float], None], event: PodEvent) -> None:
        self.runtime = runtime
        self.host_ip = host_ip
        self.backoff = backoff
        self.image_backoff = image_backoff
        self.features: PodFeatures | None = None
        """Set by the syncer (a real node's bundle; None on hollow nodes)."""
        self._requeue = requeue
        """(pod uid, seconds) → sync that pod again then."""
        self._event = event

    def context(self, pod: dict[str, Any], sandbox: SandboxStatus | None) -> PodContext:
        """What env and downward-API values of ``pod`` read: its IP (the sandbox's, else the status'), the node's."""
        pod_ip = sandbox.ip if sandbox is not None else str((pod.get("status") or {}).get("podIP") or "")
        allocatable = self.features.allocatable if self.features is not None else NodeAllocatable()
        return PodContext(pod_ip=pod_ip, host_ip=self.host_ip, allocatable=allocatable)

    async def start(self, started: StartedPod, container: dict[str, Any], kind: ContainerKind, attempt: int,
                    waiting: dict[str, Waiting]) -> None:
        """Create and start attempt ``attempt`` of ``container`` unless its image pull is backing off."""
        pod, sandbox, volume_paths = started
        name = str(container["name"])
        uid, image = str(pod["metadata"]["uid"]), str(container.get("image") or "")
        pull_wait = self.image_backoff.remaining(uid, image)
        shown = min(ERR_IMAGE_PULL_SHOWN, self.image_backoff.delay(uid, image) / 2)
        if pull_wait > 0 and self.image_backoff.since_failure(uid, image) < shown:
            waiting[name] = Waiting(ERR_IMAGE_PULL, self.image_backoff.last_error(uid, image))
            self._requeue(uid, shown - self.image_backoff.since_failure(uid, image) + 0.01)
            return
        if pull_wait > 0:
            waiting[name] = Waiting(IMAGE_PULL_BACKOFF, backoff_message(image))
            self._event(pod, "Normal", "BackOff", backoff_message(image))
            self._event(pod, "Warning", "Failed", f"Error: {IMAGE_PULL_BACKOFF}")
            self._requeue(uid, pull_wait + 0.01)
            return
        try:
            if self.features is not None:
                prepared = await prepare_container(pod, container, self.features.source, self.context(pod, sandbox))
                prepared.pop("lifecycle", None)  # hooks are run here, not by the runtime
                mounts = [{"containerPath": m.container_path, "hostPath": m.source, "readOnly": m.read_only}
                          for m in container_mounts(container, volume_paths)]
                container_id = await self.runtime.create_container(pod, prepared, kind=kind, attempt=attempt,
                                                                   env=prepared["env"], mounts=mounts)
            else:
                container_id = await self.runtime.create_container(pod, container, kind=kind, attempt=attempt)
            if attempt == 0:
                self._event(pod, "Normal", "Pulled",
                            f'Container image "{container.get("image", "")}" already present on machine')
            self._event(pod, "Normal", "Created", f"Created container {name}")
            await self.runtime.start_container(container_id)
            self._event(pod, "Normal", "Started", f"Started container {name}")
            post_start = (container.get("lifecycle") or {}).get("postStart")
            if post_start and self.features is not None:
                await self._post_start(pod, container, container_id, post_start, sandbox.ip, waiting)
        except VolumeError as exc:
            waiting[name] = Waiting("CreateContainerConfigError", str(exc))
            self._event(pod, "Warning", "Failed", f"Error: {exc}")
        except RuntimeError_ as exc:
            waiting[name] = Waiting(exc.reason, str(exc))
            if exc.reason == ERR_IMAGE_PULL:
                delay = self.image_backoff.failed(uid, image, str(exc))
                self._event(pod, "Warning", "Failed", failed_event_message(image, str(exc)))
                self._requeue(uid, delay + 0.01)
            elif exc.reason == ERR_IMAGE_NEVER_PULL:
                self._event(pod, "Warning", ERR_IMAGE_NEVER_PULL, str(exc))
                self._requeue(uid, self.image_backoff.base)  # the image may be loaded
            image_error = exc.reason in (ERR_IMAGE_PULL, ERR_IMAGE_NEVER_PULL)
            self._event(pod, "Warning", "Failed", f"Error: {exc.reason}" if image_error else f"Error: {exc}")

    async def _post_start(self, pod: dict[str, Any], container: dict[str, Any], container_id: str,
                          hook: dict[str, Any], pod_ip: str, waiting: dict[str, Waiting]) -> None:
        """Run postStart; on failure kill the container (it then restarts as a crash)."""
        grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        result = await run_hook(hook, container=container, container_id=container_id, pod_ip=pod_ip,
                                runtime=self.runtime, timeout=grace)
        if result.success:
            return
        message = hook_error_message("PostStart", hook, str(container["name"]), pod, result)
        self._event(pod, "Warning", "FailedPostStartHook", message)
        await self.runtime.stop_container(container_id, timeout=grace)
        waiting[str(container["name"])] = Waiting("PostStartHookError", message)

    async def restart(self, started: StartedPod, container: dict[str, Any], current: ContainerStatus,
                      waiting: dict[str, Waiting]) -> None:
        """Start the next attempt of the exited ``current`` once its CrashLoopBackOff allows."""
        pod = started[0]
        meta = pod["metadata"]
        backoff_key = f"{meta['uid']}/{container['name']}"
        remaining = self.backoff.remaining(backoff_key)
        if remaining > 0:
            delay = seconds_text(self.backoff.delay(backoff_key))
            message = (f"back-off {delay} restarting failed container={container['name']} "
                       f"pod={meta['name']}_{meta.get('namespace', '')}({meta['uid']})")
            waiting[str(container["name"])] = Waiting("CrashLoopBackOff", message)
            self._event(pod, "Warning", "BackOff", "Back-off restarting failed container "
                        f"{container['name']} in pod {meta['name']}_{meta.get('namespace', '')}({meta['uid']})")
            self._requeue(str(meta["uid"]), remaining + 0.01)
            return
        self.backoff.next(backoff_key)
        await self.start(started, container, current.kind, current.attempt + 1, waiting)
