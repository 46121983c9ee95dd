"""Container lifecycle hooks: ``postStart`` after a container starts, ``preStop`` before it is stopped.

``kubelet.containerstart`` calls :func:`run_hook` with the container's ``lifecycle.postStart`` right after
``start_container`` (a failure kills the container: event ``FailedPostStartHook``, waiting reason
``PostStartHookError``); ``kubelet.sync`` calls it with ``lifecycle.preStop`` before ``stop_container``, bounded by the
grace period; the SIGTERM then gets what is left of it (at least :data:`MIN_GRACE` seconds, as
Kubernetes). Handlers are ``exec`` (through the runtime's ``exec_sync``), ``httpGet`` (to the pod
IP) and ``sleep``; they share the probe code in ``kubelet.prober``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from kubelet.prober import ProbeResult, run_probe
from kubelet.runtime.interface import ContainerRuntime

__all__ = ["MIN_GRACE", "hook_error_message", "run_hook"]

MIN_GRACE = 2.0
"""Seconds of grace a container always gets after its preStop hook (Kubernetes' minimum)."""


async def run_hook(handler: Mapping[str, Any], *, container: Mapping[str, Any], container_id: str, pod_ip: str,
                   runtime: ContainerRuntime, timeout: float) -> ProbeResult:
    """Run one hook handler within ``timeout`` seconds; its result (never raises for hook failures)."""
    if handler.get("sleep") is not None:
        seconds = float(handler["sleep"].get("seconds") or 0)
        await asyncio.sleep(min(seconds, timeout))
        return ProbeResult(True)
    try:
        return await asyncio.wait_for(
            run_probe(handler, container=container, container_id=container_id, pod_ip=pod_ip, runtime=runtime,
                      timeout=timeout), timeout + 0.5)
    except TimeoutError:
        return ProbeResult(False, f"hook did not finish within {timeout:g}s")


def hook_error_message(kind: str, handler: Mapping[str, Any], container: str, pod: Mapping[str, Any],
                       result: ProbeResult) -> str:
    """Kubernetes' wording for a failed hook (the FailedPostStartHook / FailedPreStopHook event)."""
    meta = pod.get("metadata") or {}
    target = f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"
    if handler.get("exec") is not None:
        command = [str(c) for c in handler["exec"].get("command") or []]
        return (f"Exec lifecycle hook ({command}) for Container \"{container}\" in Pod \"{target}\" failed - "
                f"error: {result.message or 'command failed'}")
    if handler.get("httpGet") is not None:
        return f"HTTP lifecycle hook ({handler['httpGet'].get('path', '/')}) for Container \"{container}\" " \
               f"in Pod \"{target}\" failed - error: {result.message}"
    return f"{kind} hook for Container \"{container}\" in Pod \"{target}\" failed - error: {result.message}"
