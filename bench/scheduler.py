"""Scheduler throughput: ``python bench/scheduler.py [--nodes 1000] [--pods 5000] [--quick] [--in-process]``.

Starts a real apiserver process (``kubelab.testing.start_apiserver``, sqlite), creates the Node
objects (no kubelet: capacity, allocatable and a Ready condition written directly), starts the
scheduler (its own process by default, so it gets the second core like a real control plane;
``--in-process`` runs it in this event loop), then creates every pod at once (64 requests in
flight) and watches pods: a pod's creation is its ADDED event, its binding the first event showing
``spec.nodeName``. Prints pods bound per second (first creation to last binding), p50/p99 creation ->
binding latency, and the ratio to the 300 pods/s target. Every process started is stopped on exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from kubelab.testing import start_apiserver  # noqa: E402
from machinery.client import ApiClient  # noqa: E402
from machinery.resources import NODES, PODS  # noqa: E402

TARGET = 300.0
_SCHEDULER_CODE = ("import logging, sys; logging.basicConfig(level=logging.WARNING); "
                   "from pathlib import Path; from scheduler.server import run; "
                   "from scheduler.settings import SchedulerSettings; "
                   "run(SchedulerSettings(kubeconfig=Path(sys.argv[1])))")


def _node(i: int) -> dict[str, Any]:
    alloc = {"cpu": "32", "memory": "64Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}",
                                                         "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "status": {"capacity": alloc, "allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


def _pod(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"bench-{i}", "namespace": "default", "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]}}


async def _bounded(n: int, make: Any, concurrency: int = 64) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await make(i)

    await asyncio.gather(*(one(i) for i in range(n)))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def bench(nodes: int, pods: int, *, in_process: bool, workdir: Path) -> dict[str, float]:
    server = start_apiserver(workdir / "state", store="sqlite")
    scheduler_proc: subprocess.Popen[bytes] | None = None
    scheduler_task: asyncio.Task[None] | None = None
    try:
        async with ApiClient.from_kubeconfig(server.kubeconfig) as client:
            t0 = time.perf_counter()
            await _bounded(nodes, lambda i: client.create(NODES, _node(i)))
            print(f"created {nodes} nodes in {time.perf_counter() - t0:.1f} s", flush=True)
            if in_process:
                from scheduler.scheduler import Scheduler
                sched = Scheduler(client)
                scheduler_task = asyncio.create_task(sched.run(), name="bench-scheduler")
                await asyncio.wait_for(sched.ready.wait(), 60)
            else:
                log = (workdir / "scheduler.log").open("wb")
                scheduler_proc = subprocess.Popen([sys.executable, "-c", _SCHEDULER_CODE, str(server.kubeconfig)],
                                                  cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                                  env={**os.environ, "PYTHONPATH": str(_ROOT)})
                await asyncio.sleep(2.0)  # informers list (nodes) and start watching
            created: dict[str, float] = {}
            bound: dict[str, float] = {}
            done = asyncio.Event()
            listed = await client.list(PODS, namespace="default")

            async def watch() -> None:
                async for event in client.watch(PODS, namespace="default",
                                                resource_version=listed["metadata"]["resourceVersion"]):
                    now = time.perf_counter()
                    name = event.object.get("metadata", {}).get("name", "")
                    if event.type == "ADDED":
                        created.setdefault(name, now)
                    if (event.object.get("spec") or {}).get("nodeName") and name not in bound:
                        created.setdefault(name, now)
                        bound[name] = now
                        if len(bound) >= pods:
                            done.set()
                            return

            watcher = asyncio.create_task(watch(), name="bench-watch")
            t_create = time.perf_counter()
            await _bounded(pods, lambda i: client.create(PODS, _pod(i)))
            create_s = time.perf_counter() - t_create
            print(f"created {pods} pods in {create_s:.1f} s ({pods / create_s:.0f}/s)", flush=True)
            try:
                await asyncio.wait_for(done.wait(), timeout=max(120.0, pods / 20))
            except TimeoutError:
                print(f"timed out: {len(bound)}/{pods} pods bound", flush=True)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            latencies = [bound[n] - created[n] for n in bound if n in created]
            span = max(bound.values()) - min(created.values()) if bound else float("nan")
            rate = len(bound) / span if bound else 0.0
            return {"nodes": nodes, "pods": pods, "bound": len(bound), "seconds": span, "rate": rate,
                    "p50": _percentile(latencies, 0.50), "p99": _percentile(latencies, 0.99),
                    "create_rate": pods / create_s}
    finally:
        if scheduler_task is not None:
            scheduler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler_task
        if scheduler_proc is not None:
            scheduler_proc.terminate()
            try:
                scheduler_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                scheduler_proc.kill()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="100 nodes, 500 pods")
    parser.add_argument("--in-process", action="store_true", help="run the scheduler in this event loop")
    args = parser.parse_args(argv)
    nodes, pods = (100, 500) if args.quick else (args.nodes, args.pods)
    with tempfile.TemporaryDirectory(prefix="kubelab-sched-bench-") as tmp:
        result = asyncio.run(bench(nodes, pods, in_process=args.in_process, workdir=Path(tmp)))
    print(f"scheduler: {result['bound']:.0f}/{pods} pods bound on {nodes} nodes in {result['seconds']:.1f} s "
          f"-> {result['rate']:.0f} pods/s (target {TARGET:.0f}: ratio {result['rate'] / TARGET:.2f}); "
          f"creation->binding p50 {result['p50'] * 1000:.0f} ms, p99 {result['p99'] * 1000:.0f} ms; "
          f"pods created at {result['create_rate']:.0f}/s", flush=True)
    return 0 if result["bound"] == pods else 1


if __name__ == "__main__":
    raise SystemExit(main())
