"""StatefulSet startup on real Docker: ``python bench/statefulset.py [--replicas 20] [--quick] [--json FILE]``.

Brings up ``kubelab up --nodes 2`` in a temporary state dir (its own cluster name, bridge and pod
subnet; apiserver on a free port), creates a headless Service ``nginx`` and, one after the other,
two StatefulSets of ``--replicas`` ``kubelab/nginx`` pods with a readiness probe on port 80
(``httpGet /``, ``--probe-period`` seconds):

- **OrderedReady** (the default policy): pod ``n+1`` is created only once pod ``n`` is Running
  and Ready, so the total is the sum of the per-pod chains;
- **Parallel**: every pod at once (dockerd serialises container starts).

Each set is timed from its create request until a pod watch has seen every replica Ready. For
OrderedReady the chain is split per pod into the **controller gap** (pod ``n`` Ready → pod ``n+1``
created, as the watch sees both) and the **pod start** (created → Ready: scheduling, the
kubelet's sandbox and container, the first successful probe), itself split where the watch first
shows the container running (the rest is the readiness probe's: a first probe that runs before
nginx listens fails, and the next one comes a period later, as on Kubernetes). The set is deleted (and its pods
awaited gone) before the next one.

The baseline of the same run is the per-pod floor: ``--replicas`` sequential raw starts of the
same image through the Docker SDK (``docker run -d`` on a bridge network of the bench's own,
labelled with the cluster), each timed until nginx accepts a TCP connection on port 80.
``--quick`` runs 3 replicas. ``kubelab down`` and the state dir's removal run on exit, whatever
happened; ``--json FILE`` also writes the figures (and the cluster's name).
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
import ipaddress  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import docker  # noqa: E402
import docker.types  # noqa: E402

from bench.pod_startup import free_subnet, percentile, pod_is_ready  # noqa: E402
from kubelab import laptop  # noqa: E402
from kubelab.images import NGINX, ensure_images  # noqa: E402
from machinery.client import ApiClient  # noqa: E402
from machinery.resources import PODS, SERVICES, STATEFULSETS  # noqa: E402

__all__ = ["main"]

NAMESPACE = "default"
LABEL_CLUSTER = "kubelab.dev/cluster"
POLICIES = ("OrderedReady", "Parallel")


def _kubelab(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelab", *args, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=600, check=False, cwd=_ROOT)


def headless_service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
            "spec": {"clusterIP": "None", "selector": {"app": "nginx"}, "ports": [{"name": "web", "port": 80}]}}


def statefulset(name: str, replicas: int, policy: str, probe_period: int) -> dict[str, Any]:
    """``replicas`` nginx pods behind the headless Service, ready when ``GET /`` on port 80 answers."""
    labels = {"app": "nginx", "set": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "serviceName": "nginx", "replicas": replicas, "podManagementPolicy": policy,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "nginx", "image": NGINX, "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "web", "containerPort": 80}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": probe_period},
                }]},
            },
        },
    }


class PodTimes:
    """One watch over a set's pods: when each was first seen, and first seen Ready (monotonic)."""

    def __init__(self, client: ApiClient, selector: str) -> None:
        self.client, self.selector = client, selector
        self.created: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.names: set[str] = set()
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self.client.list(PODS, namespace=NAMESPACE, label_selector=self.selector)
        self._task = asyncio.create_task(self._run(str(listed["metadata"]["resourceVersion"])),
                                         name=f"bench-watch {self.selector}")

    async def _run(self, version: str) -> None:
        async for event in self.client.watch(PODS, namespace=NAMESPACE, resource_version=version,
                                             label_selector=self.selector):
            now = time.monotonic()
            name = str(event.object["metadata"]["name"])
            if event.type == "DELETED":
                self.names.discard(name)
            elif event.type in ("ADDED", "MODIFIED"):
                self.names.add(name)
                self.created.setdefault(name, now)
                if any("running" in (c.get("state") or {})
                       for c in (event.object.get("status") or {}).get("containerStatuses") or []):
                    self.running.setdefault(name, now)
                if pod_is_ready(event.object):
                    self.ready.setdefault(name, now)
            self.changed.set()

    async def until(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what}: not reached in {timeout:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def time_set(client: ApiClient, policy: str, replicas: int, probe_period: int) -> dict[str, Any]:
    """Create one set, time it to all Ready, delete it and wait until its pods are gone."""
    name = f"web-{policy.lower()}"
    watch = PodTimes(client, f"set={name}")
    await watch.start()
    try:
        started = time.monotonic()
        await client.create(STATEFULSETS, statefulset(name, replicas, policy, probe_period), namespace=NAMESPACE)
        await watch.until(lambda: len(watch.ready) >= replicas, 120 + 30 * replicas, f"{name} all Ready")
        total = max(watch.ready.values()) - started
        await client.delete(STATEFULSETS, name, namespace=NAMESPACE)
        await watch.until(lambda: not watch.names, 300, f"{name} pods gone")
    finally:
        await watch.stop()
    pods = [f"{name}-{i}" for i in range(replicas)]
    starts = [watch.ready[p] - watch.created[p] for p in pods]
    to_running = [watch.running.get(p, watch.ready[p]) - watch.created[p] for p in pods]
    figures: dict[str, Any] = {"total_s": total, "first_created_s": watch.created[pods[0]] - started,
                               "pod_start_p50_s": statistics.median(starts), "pod_start_max_s": max(starts),
                               "to_running_p50_s": statistics.median(to_running),
                               "running_to_ready_p50_s": statistics.median(
                                   watch.ready[p] - watch.running.get(p, watch.ready[p]) for p in pods)}
    if policy == "OrderedReady":
        gaps = [watch.created[pods[i + 1]] - watch.ready[pods[i]] for i in range(replicas - 1)] or [0.0]
        figures.update({"controller_gap_p50_s": statistics.median(gaps), "controller_gap_max_s": max(gaps),
                        "pod_start_sum_s": sum(starts)})
    return figures


# -- the raw Docker floor -----------------------------------------------------------------------


def _accepts(ip: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((ip, port), timeout=0.5):
        return True
    return False


def raw_floor(client: docker.DockerClient, cluster: str, count: int) -> list[float]:
    """``count`` sequential starts of nginx, each until port 80 accepts; seconds per start."""
    subnet = ipaddress.ip_network(free_subnet(client))
    network = f"kubelab-{cluster}-raw"
    ipam = docker.types.IPAMConfig(pool_configs=[
        docker.types.IPAMPool(subnet=str(subnet), gateway=str(next(subnet.hosts())))])
    client.networks.create(network, driver="bridge", ipam=ipam, labels={LABEL_CLUSTER: cluster})
    times: list[float] = []
    for i in range(count + 1):  # the first one warms the engine up and is not counted
        started = time.monotonic()
        container = client.containers.run(NGINX, name=f"{cluster}-raw-{i}", network=network, detach=True,
                                           labels={LABEL_CLUSTER: cluster})
        container.reload()
        ip = str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])
        deadline = started + 60
        while not _accepts(ip, 80):
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw nginx {i} at {ip} never accepted on port 80")
            time.sleep(0.01)
        if i:
            times.append(time.monotonic() - started)
    return times


# -- the run --------------------------------------------------------------------------------------


async def run_sets(kubeconfig: Path, replicas: int, probe_period: int) -> dict[str, dict[str, Any]]:
    async with ApiClient.from_kubeconfig(kubeconfig, user_agent="bench-statefulset") as client:
        await client.create(SERVICES, headless_service(), namespace=NAMESPACE)
        return {policy: await time_set(client, policy, replicas, probe_period) for policy in POLICIES}


def print_summary(figures: dict[str, Any]) -> None:
    n = figures["replicas"]
    raw = figures["raw"]
    print(f"== SUMMARY StatefulSet of {n} nginx pods on 2 Docker nodes (readiness probe every "
          f"{figures['probe_period_s']} s)")
    print(f"raw docker run, sequential   sum {raw['sum_s']:6.2f} s   per pod p50 {raw['p50_s']:.3f} s  "
          f"max {raw['max_s']:.3f} s  (start until port 80 accepts)")
    for policy in POLICIES:
        f = figures[policy]
        print(f"{policy:<13} all Ready    {f['total_s']:6.2f} s   pod created->Ready p50 "
              f"{f['pod_start_p50_s']:.3f} s  max {f['pod_start_max_s']:.3f} s  (created->running p50 "
              f"{f['to_running_p50_s']:.3f} s, running->Ready p50 {f['running_to_ready_p50_s']:.3f} s)")
    ordered = figures["OrderedReady"]
    print(f"OrderedReady chain           controller gap (Ready n -> created n+1) p50 "
          f"{ordered['controller_gap_p50_s']:.3f} s  max {ordered['controller_gap_max_s']:.3f} s")
    print(f"OrderedReady / raw sum       {figures['ordered_over_raw']:.2f}x")


def run(replicas: int, probe_period: int) -> dict[str, Any]:
    client = laptop.docker_client()
    tmp = Path(tempfile.mkdtemp(prefix="kubelab-sts-bench-"))
    state_dir = tmp / "state"
    cluster = laptop.cluster_name(state_dir)
    try:
        ensure_images(client, ["busybox", "nginx"])
        up = _kubelab(state_dir, "up", "--port", "0", "--nodes", "2", "--no-mesh")
        if up.returncode != 0:
            raise RuntimeError(f"kubelab up failed:\n{up.stdout}\n{up.stderr}")
        print(f"cluster {cluster}: 2 nodes up")
        raw = raw_floor(client, cluster, replicas)
        sets = asyncio.run(run_sets(state_dir / "kubeconfig", replicas, probe_period))
    finally:
        _kubelab(state_dir, "down")
        shutil.rmtree(tmp, ignore_errors=True)
        client.close()
    figures: dict[str, Any] = {"cluster": cluster, "replicas": replicas, "probe_period_s": probe_period,
                               "raw": {"sum_s": sum(raw), "p50_s": percentile(raw, 50), "max_s": max(raw)}, **sets}
    figures["ordered_over_raw"] = sets["OrderedReady"]["total_s"] / figures["raw"]["sum_s"]
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--replicas", type=int, default=20, help="pods per StatefulSet (default 20)")
    parser.add_argument("--probe-period", type=int, default=1, help="readiness probe periodSeconds (default 1)")
    parser.add_argument("--quick", action="store_true", help="3 replicas")
    parser.add_argument("--json", type=Path, help="also write the figures (and the cluster name) here")
    args = parser.parse_args(argv)
    figures = run(3 if args.quick else args.replicas, args.probe_period)
    print_summary(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
