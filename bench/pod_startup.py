"""Pod startup benchmark on a real Docker kubelet: ``python bench/pod_startup.py [--pods 30] [--burst] [--quick]``.

Starts a ``kubelab apiserver`` process (SQLite, temporary state dir, free port) and ONE Docker-backed
kubelet as its own process (``kubelet.server.run`` with a unique cluster name and a free /23 pod
subnet; the service proxy is off so the host's iptables are untouched), then measures, in the same run:

- **kubelet**: pods bound to the node (``spec.nodeName`` set, no scheduler), from just before the
  create request until a watch shows the pod ``Running`` with ``Ready=True``;
- **raw**: the Docker SDK start of a pod by hand -- a pause container on a test network plus one app
  container with ``network_mode=container:<pause>`` (docs: shared/reference/docker-runtime.md §2).

By default pods go one at a time, a raw pod and a kubelet pod alternating (dockerd serialises
starts, so this compares like with like); ``--burst`` creates all kubelet pods at once and starts
all raw pods from as many threads. Prints p50/p99 of both and their ratio (targets: p50 ≤ 1.3 x raw,
p99 ≤ 2 s). Everything it created -- containers and networks carrying ``kubelab.dev/cluster=<its
cluster>``, the processes, the state dir -- is removed on exit.

:class:`DockerBenchCluster` is also used by ``bench/kubelet_idle.py``. ``--kubelet-child CONFIG`` is
the internal entry point of the kubelet process.
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
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import docker  # noqa: E402
import docker.types  # noqa: E402

from kubelab import launcher  # noqa: E402
from kubelab.images import BUSYBOX, ensure_images  # noqa: E402
from kubelab.testing import RunningApiServer, start_apiserver  # noqa: E402
from kubelet.runtime.docker import cleanup_cluster  # noqa: E402
from machinery.client import ApiClient  # noqa: E402
from machinery.resources import NODES, PODS  # noqa: E402

__all__ = ["DockerBenchCluster", "percentile", "pod_is_ready", "pod_manifest", "proc_cpu_seconds", "proc_rss_mb"]

LABEL_CLUSTER = "kubelab.dev/cluster"
LABEL_BENCH = "kubelab.dev/bench"
NAMESPACE = "default"
APP_COMMAND = ["httpd", "-f", "-p", "8080", "-h", "/"]


# -- figures ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (``/proc/<pid>/stat`` fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- pods ------------------------------------------------------------------------------------------


def pod_manifest(name: str, node: str) -> dict[str, Any]:
    """A busybox httpd pod bound to ``node`` (no scheduler involved).

    No service-account token is mounted: the raw ``docker run`` baseline has none, and this
    cluster runs no controller-manager to publish the ``kube-root-ca.crt`` the token volume needs."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": False,
                 "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                 "command": APP_COMMAND}]},
    }


def pod_is_ready(pod: dict[str, Any]) -> bool:
    """``Running`` with the ``Ready`` condition ``True``."""
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class ReadyWatch:
    """One pod watch; ``await ready(name)`` returns the monotonic time the pod was first seen Ready."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self._seen: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self._client.list(PODS, namespace=NAMESPACE, label_selector="app=bench")
        version = str(listed["metadata"]["resourceVersion"])
        self._task = asyncio.create_task(self._run(version), name="bench-pod-watch")

    async def _run(self, version: str) -> None:
        async for event in self._client.watch(PODS, namespace=NAMESPACE, resource_version=version,
                                              label_selector="app=bench"):
            if event.type not in ("ADDED", "MODIFIED") or not pod_is_ready(event.object):
                continue
            name = str(event.object["metadata"]["name"])
            if name not in self._seen:
                self._seen[name] = time.monotonic()
                waiter = self._waiters.get(name)
                if waiter is not None and not waiter.done():
                    waiter.set_result(self._seen[name])

    async def ready(self, name: str, timeout: float = 120.0) -> float:
        if name in self._seen:
            return self._seen[name]
        waiter = self._waiters.setdefault(name, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(waiter), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


# -- the cluster -----------------------------------------------------------------------------------


def free_subnet(client: docker.DockerClient) -> str:
    """A /23 in 10.200.0.0/13 that overlaps no existing Docker network (the node's addresses take one
    /24 of a pod network, its pods the next: :mod:`kubelet.network.node_address`)."""
    taken = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(KeyError, ValueError):
                taken.append(ipaddress.ip_network(config["Subnet"], strict=False))
    slices = list(ipaddress.IPv4Network("10.200.0.0/13").subnets(new_prefix=23))
    start = uuid.uuid4().int % len(slices)
    for step in range(len(slices)):
        candidate = slices[(start + step) % len(slices)]
        if not any(candidate.overlaps(other) for other in taken):
            return str(candidate)
    raise RuntimeError("no free /23 for the bench pod network in 10.200.0.0/13")


@dataclass
class DockerBenchCluster:
    """An apiserver process and one Docker kubelet process in a temporary state dir (context manager)."""

    docker_client: docker.DockerClient
    cluster: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    node: str = "bench-node"
    state_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kubelab-bench-")))
    subnet: str = ""
    apiserver: RunningApiServer | None = None
    kubelet: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DockerBenchCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def kubeconfig(self) -> Path:
        assert self.apiserver is not None
        return self.apiserver.kubeconfig

    def start(self, timeout: float = 60.0) -> None:
        ensure_images(self.docker_client, ["busybox"])
        self.subnet = self.subnet or free_subnet(self.docker_client)
        self.apiserver = start_apiserver(self.state_dir / "apiserver", store="sqlite")
        node_kc = launcher.component_kubeconfig(self.apiserver.state_dir, "kubelet", user=f"system:node:{self.node}",
                                                groups=["system:nodes"])
        config = {"kubeconfig": str(node_kc), "node_name": self.node, "cluster_name": self.cluster,
                  "pod_subnet": self.subnet, "root_dir": str(self.state_dir / "kubelet"),
                  "pki_dir": str(self.apiserver.state_dir / "pki")}
        log = (self.state_dir / "kubelet.log").open("ab")
        self.kubelet = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--kubelet-child",
                                         json.dumps(config)], stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=launcher.python_env(), start_new_session=True)
        log.close()
        asyncio.run(self._wait_node_ready(timeout))

    async def _wait_node_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with ApiClient.from_kubeconfig(self.kubeconfig) as client:
            while time.monotonic() < deadline:
                assert self.kubelet is not None
                if self.kubelet.poll() is not None:
                    raise RuntimeError(f"kubelet exited ({self.kubelet.returncode}):\n{self.kubelet_log_tail()}")
                with contextlib.suppress(Exception):
                    node = await client.get(NODES, self.node)
                    if any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in (node.get("status") or {}).get("conditions") or []):
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"node {self.node} not Ready in {timeout:.0f}s:\n{self.kubelet_log_tail()}")

    def kubelet_log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.state_dir / "kubelet.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def close(self) -> None:
        """Stop the kubelet and the apiserver; remove the cluster's containers, networks and state dir."""
        if self.kubelet is not None and self.kubelet.poll() is None:
            self.kubelet.terminate()
            try:
                self.kubelet.wait(10)
            except subprocess.TimeoutExpired:
                self.kubelet.kill()
                self.kubelet.wait(5)
        if self.apiserver is not None:
            self.apiserver.stop(grace=5.0)
        cleanup_cluster(self.docker_client, self.cluster)
        shutil.rmtree(self.state_dir, ignore_errors=True)


# -- raw Docker ------------------------------------------------------------------------------------


class RawPods:
    """Pods started by hand through the SDK on a network of their own (labelled with the cluster)."""

    def __init__(self, client: docker.DockerClient, cluster: str, subnet: str) -> None:
        self.client, self.cluster = client, cluster
        network = ipaddress.ip_network(subnet)
        ipam = docker.types.IPAMConfig(pool_configs=[
            docker.types.IPAMPool(subnet=str(network), gateway=str(next(network.hosts())))])
        self.network = f"kubelab-{cluster}-raw"
        client.networks.create(self.network, driver="bridge", ipam=ipam, labels={LABEL_CLUSTER: cluster})

    def start(self, index: int) -> float:
        """Start pause + app for pod ``index``; return the seconds it took."""
        labels = {LABEL_CLUSTER: self.cluster, LABEL_BENCH: "raw"}
        name = f"{self.cluster}-raw-{index}"
        started = time.monotonic()
        pause = self.client.containers.run(BUSYBOX, ["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait'],
                                           name=f"{name}-pause", hostname=name, network=self.network,
                                           labels=labels, detach=True)
        self.client.containers.run(BUSYBOX, APP_COMMAND, name=f"{name}-app", network_mode=f"container:{pause.id}",
                                   labels=labels, detach=True)
        return time.monotonic() - started


# -- the benchmark ---------------------------------------------------------------------------------


async def create_and_time(client: ApiClient, watch: ReadyWatch, name: str, node: str) -> float:
    started = time.monotonic()
    await client.create(PODS, pod_manifest(name, node))
    return await watch.ready(name) - started


async def run_bench(cluster: DockerBenchCluster, pods: int, *, burst: bool) -> dict[str, Any]:
    raw = RawPods(cluster.docker_client, cluster.cluster, free_subnet(cluster.docker_client))
    raw_times: list[float] = []
    kubelet_times: list[float] = []
    async with ApiClient.from_kubeconfig(cluster.kubeconfig, user_agent="bench-pod-startup") as client:
        watch = ReadyWatch(client)
        await watch.start()
        try:
            # Warm-up (not counted): the first pod pays for the kubelet's informer and image lookups.
            await create_and_time(client, watch, "warmup", cluster.node)
            await asyncio.to_thread(raw.start, 9999)
            if burst:
                with ThreadPoolExecutor(max_workers=pods) as pool:
                    raw_times = list(await asyncio.to_thread(lambda: list(pool.map(raw.start, range(pods)))))
                kubelet_times = list(await asyncio.gather(
                    *(create_and_time(client, watch, f"pod-{i}", cluster.node) for i in range(pods))))
            else:
                for i in range(pods):
                    raw_times.append(await asyncio.to_thread(raw.start, i))
                    kubelet_times.append(await create_and_time(client, watch, f"pod-{i}", cluster.node))
        finally:
            await watch.stop()
    return summarise(raw_times, kubelet_times, burst=burst)


def summarise(raw_times: Sequence[float], kubelet_times: Sequence[float], *, burst: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "mode": "burst" if burst else "sequential", "pods": len(kubelet_times),
        "raw_p50_s": percentile(raw_times, 50), "raw_p99_s": percentile(raw_times, 99),
        "kubelet_p50_s": percentile(kubelet_times, 50), "kubelet_p99_s": percentile(kubelet_times, 99),
    }
    figures["p50_ratio"] = figures["kubelet_p50_s"] / figures["raw_p50_s"]
    figures["p50_target_met"] = figures["p50_ratio"] <= 1.3
    figures["p99_target_met"] = figures["kubelet_p99_s"] <= 2.0
    return figures


def print_summary(figures: dict[str, Any]) -> None:
    print(f"== SUMMARY pod startup ({figures['mode']}, {figures['pods']} pods, one Docker kubelet)")
    print(f"raw Docker SDK pause+app  p50 {figures['raw_p50_s']:.3f} s   p99 {figures['raw_p99_s']:.3f} s")
    print(f"kubelet create->Ready     p50 {figures['kubelet_p50_s']:.3f} s   p99 {figures['kubelet_p99_s']:.3f} s")
    print(f"p50 ratio kubelet/raw     {figures['p50_ratio']:.2f}x  (target <= 1.3x: "
          f"{'met' if figures['p50_target_met'] else 'MISSED'})")
    print(f"p99 target <= 2 s         {'met' if figures['p99_target_met'] else 'MISSED'}")


def kubelet_child(config_json: str) -> None:
    """The kubelet process: one Docker node (service proxy off: the host's iptables stay untouched)."""
    from kubelet.server import run
    from kubelet.settings import KubeletSettings

    config = json.loads(config_json)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(KubeletSettings(
        kubeconfig=Path(config["kubeconfig"]), node_name=config["node_name"], cluster_name=config["cluster_name"],
        pod_subnet=config["pod_subnet"], root_dir=Path(config["root_dir"]), pki_dir=Path(config["pki_dir"]),
        network_agent=False, run_dns=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=30, help="pods of each kind (default 30)")
    parser.add_argument("--quick", action="store_true", help="5 pods")
    parser.add_argument("--burst", action="store_true", help="create all pods at once (default: one at a time)")
    parser.add_argument("--json", type=Path, help="also write the figures (and the cluster name) here")
    parser.add_argument("--kubelet-child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kubelet_child:
        kubelet_child(args.kubelet_child)
        return 0
    pods = 5 if args.quick else args.pods
    client = docker.from_env(timeout=300)
    with DockerBenchCluster(client) as cluster:
        print(f"cluster {cluster.cluster}: apiserver {cluster.apiserver.url if cluster.apiserver else '?'}, "
              f"node {cluster.node}, pod subnet {cluster.subnet}")
        figures = asyncio.run(run_bench(cluster, pods, burst=args.burst))
    figures["cluster"] = cluster.cluster
    print_summary(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
