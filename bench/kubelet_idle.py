"""Idle cost of a Docker kubelet: ``python bench/kubelet_idle.py [--pods 20] [--idle 20] [--quick]``.

Brings up the same cluster as ``bench/pod_startup.py`` (an apiserver process and one Docker kubelet
process, see :class:`bench.pod_startup.DockerBenchCluster`), creates ``--pods`` busybox httpd pods
bound to the node, waits until every one is Running and Ready, lets things settle for 2 s, then
samples both processes from ``/proc`` for ``--idle`` seconds: RSS (mean and max of one sample a
second) and CPU% of one core (user + system ticks over the window). ``--quick``: 5 pods, 5 s.
Everything it created is removed on exit.
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
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import docker  # noqa: E402

from bench.pod_startup import (  # noqa: E402
    DockerBenchCluster,
    ReadyWatch,
    pod_manifest,
    proc_cpu_seconds,
    proc_rss_mb,
)
from machinery.client import ApiClient  # noqa: E402
from machinery.resources import PODS  # noqa: E402


async def start_pods(cluster: DockerBenchCluster, pods: int) -> float:
    """Create ``pods`` pods at once and wait until all are Ready; return the seconds it took."""
    async with ApiClient.from_kubeconfig(cluster.kubeconfig, user_agent="bench-kubelet-idle") as client:
        watch = ReadyWatch(client)
        await watch.start()
        started = time.monotonic()
        try:
            await asyncio.gather(*(client.create(PODS, pod_manifest(f"idle-{i}", cluster.node)) for i in range(pods)))
            await asyncio.gather(*(watch.ready(f"idle-{i}", timeout=60 + 2 * pods) for i in range(pods)))
        finally:
            await watch.stop()
        return time.monotonic() - started


def sample(pids: dict[str, int], seconds: float) -> dict[str, Any]:
    """RSS (MiB, mean and max of 1 s samples) and CPU% of one core of each process over ``seconds``."""
    cpu0 = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
    rss: dict[str, list[float]] = {name: [] for name in pids}
    started = time.monotonic()
    while True:
        for name, pid in pids.items():
            rss[name].append(proc_rss_mb(pid))
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        time.sleep(min(1.0, seconds - elapsed))
    elapsed = time.monotonic() - started
    figures: dict[str, Any] = {"idle_seconds": round(elapsed, 1)}
    for name, pid in pids.items():
        figures[f"{name}_cpu_seconds"] = proc_cpu_seconds(pid) - cpu0[name]
        figures[f"{name}_cpu_percent"] = 100 * figures[f"{name}_cpu_seconds"] / max(elapsed, 1e-9)
        figures[f"{name}_rss_mb"] = sum(rss[name]) / len(rss[name])
        figures[f"{name}_rss_max_mb"] = max(rss[name])
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=20, help="running pods on the node (default 20)")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds sampled while idle (default 20)")
    parser.add_argument("--quick", action="store_true", help="5 pods, 5 s")
    parser.add_argument("--json", type=Path, help="also write the figures (and the cluster name) here")
    args = parser.parse_args(argv)
    pods, idle = (5, 5.0) if args.quick else (args.pods, args.idle)
    client = docker.from_env(timeout=300)
    with DockerBenchCluster(client) as cluster:
        assert cluster.kubelet is not None and cluster.apiserver is not None
        print(f"cluster {cluster.cluster}: kubelet pid {cluster.kubelet.pid}, apiserver pid {cluster.apiserver.pid}")
        pids = {"kubelet": cluster.kubelet.pid, "apiserver": cluster.apiserver.pid}
        before = sample(pids, 0.0)
        ready_after = asyncio.run(start_pods(cluster, pods))
        print(f"{pods} pods Ready in {ready_after:.1f} s; settling 2 s, then sampling {idle:g} s")
        time.sleep(2.0)
        figures = sample(pids, idle)
    figures.update(pods=pods, cluster=cluster.cluster, pods_ready_s=ready_after,
                   kubelet_rss_before_pods_mb=before["kubelet_rss_mb"],
                   apiserver_rss_before_pods_mb=before["apiserver_rss_mb"])
    print(f"== SUMMARY idle with {pods} running pods ({figures['idle_seconds']:g} s sampled)")
    for name in pids:
        print(f"{name:<10} RSS {figures[f'{name}_rss_mb']:6.1f} MiB (max {figures[f'{name}_rss_max_mb']:.1f}, "
              f"{figures[f'{name}_rss_before_pods_mb']:.1f} before pods)   CPU {figures[f'{name}_cpu_percent']:5.2f} % "
              f"({figures[f'{name}_cpu_seconds']:.2f} CPU-s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
