"""Load shapes and measuring tools shared by the benchmark phases.

``bench.apiserver`` calls these. Objects: :func:`configmap` (small, ~300 bytes of data) and
:func:`pod` / :func:`pod_status` (a realistic ~1.5 KB pod once its status is set). Drivers:
:func:`closed_loop` (N workers pulling from one counter: throughput) and :func:`open_loop`
(requests started on a clock schedule whatever the server does, latency measured from the
*scheduled* start, so a stalled server cannot hide its queueing: no coordinated omission).
:class:`ProcessSampler` polls ``/proc/<pid>`` for VmRSS and CPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)
"""The Accept header kubectl get sends."""

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def configmap(name: str, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A small ConfigMap (about 400 bytes as JSON)."""
    meta: dict[str, Any] = {"name": name, "labels": {"app": "bench", "tier": "load"}}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {"config.yaml": "key: value\n" * 12, "mode": "bench", "replicas": "3"},
    }


def pod(name: str, index: int) -> dict[str, Any]:
    """A Deployment-made pod as a controller would create it (spec only)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6d", "tier": "frontend"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6d",
                "uid": "0b8c5d6e-1f2a-4b3c-9d8e-7f6a5b4c3d2e", "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "nodeName": f"node-{index % 8}",
            "containers": [{
                "name": "web",
                "image": "nginx:1.25.3",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_INDEX", "value": str(index)}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    }


def pod_status(index: int) -> dict[str, Any]:
    """A Running status as a kubelet reports it (conditions, IPs, one container status)."""
    started = "2024-05-01T10:00:05Z"
    return {
        "phase": "Running",
        "conditions": [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": started}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "hostIP": f"172.18.0.{2 + index % 8}",
        "podIP": f"10.244.{index // 250}.{index % 250 + 2}",
        "podIPs": [{"ip": f"10.244.{index // 250}.{index % 250 + 2}"}],
        "startTime": started,
        "containerStatuses": [{
            "name": "web", "ready": True, "restartCount": 0, "started": True,
            "image": "nginx:1.25.3", "imageID": "docker-pullable://nginx@sha256:" + "ab" * 32,
            "containerID": "docker://" + f"{index:064x}",
            "state": {"running": {"startedAt": started}}, "lastState": {},
        }],
        "qosClass": "Burstable",
    }


@dataclass
class Outcome:
    """Latencies (seconds) of the requests that succeeded, and the failures by status/error."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def fail(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def ok(self) -> int:
        return len(self.latencies)


Request = Callable[[int], Awaitable[int]]
"""Send request number ``i``; returns the HTTP status."""


async def _timed(request: Request, i: int, start: float, expected: int, out: Outcome) -> None:
    try:
        status = await request(i)
    except (TimeoutError, aiohttp.ClientError) as exc:
        out.fail(type(exc).__name__)
        return
    if status != expected:
        out.fail(str(status))
        return
    out.latencies.append(time.perf_counter() - start)


async def closed_loop(request: Request, *, count: int, concurrency: int, expected: int) -> Outcome:
    """``count`` requests from ``concurrency`` workers, each sending as soon as the last returned."""
    out = Outcome()
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await _timed(request, i, time.perf_counter(), expected, out)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    out.elapsed = time.perf_counter() - started
    return out


async def open_loop(request: Request, *, rate: float, duration: float, expected: int) -> Outcome:
    """Start request ``i`` at ``t0 + i / rate`` for ``duration`` s; latency counts from that time."""
    out = Outcome()
    tasks: set[asyncio.Task[None]] = set()
    total = int(rate * duration)
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_timed(request, i, due, expected, out), name=f"open-loop-{i}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    out.elapsed = time.perf_counter() - started
    return out


def read_rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` in MiB (0.0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def read_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ProcessSampler:
    """Polls one process's RSS every ``interval`` s; ``window()`` marks a phase's CPU and peak RSS."""

    def __init__(self, pid: int, *, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, read_rss_mb(self.pid))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"rss-sampler:{self.pid}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def begin(self) -> tuple[float, float]:
        """Start a window: reset the peak; returns (wall, cpu) marks for :meth:`cpu_percent`."""
        self.peak_mb = read_rss_mb(self.pid)
        return time.perf_counter(), read_cpu_seconds(self.pid)

    def cpu_percent(self, mark: tuple[float, float]) -> float:
        """CPU use of the process since ``mark`` in percent of one core."""
        wall = time.perf_counter() - mark[0]
        return 100.0 * (read_cpu_seconds(self.pid) - mark[1]) / wall if wall > 0 else 0.0
