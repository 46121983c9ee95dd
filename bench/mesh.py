"""The mesh's cost on real Docker pods: ``python bench/mesh.py [--quick] [--json FILE]``.

One ``kubelab up --nodes 2`` cluster (meshd under the supervisor), one client and one server, run
twice in the same cluster: namespace ``direct`` without sidecars, namespace ``meshed`` with them
(the client's requests cross the client's sidecar, mTLS, then the server's sidecar):

* latency: ``hey`` (Debian's Go load generator, the host's binary copied into an image) in a
  client pod on node-2, against nginx serving a 1 KiB file on node-1 through the Service's
  ClusterIP: HTTP/1.1 keep-alive, 16 connections, 63 requests/s each (about 1,000 requests/s,
  open loop) for 30 s; p50/p90/p99 of both runs and the added latency;
* the sidecars during the meshed run: CPU (the containers' cgroup CPU time over the run) per
  1,000 requests/s, and RSS (``VmRSS`` of each ``istio-proxy`` process);
* config push: one VirtualService change ACKed by N real sidecars (a Deployment of ``--sidecars``
  meshed pods; the time from the write to each proxy's ACK of new routes, seen by polling
  meshd's ``/debug/syncz`` every 20 ms), and by 500 simulated proxies with the CSRs signed per
  second from ``bench/mesh_push.py`` (run as a subprocess);
* pod start, create to Ready, with and without a sidecar (median of ``--pods`` each;
  ``bench/mesh_podstart.py`` breaks it down by phase).

Targets (issue figures): added p90 <= 1 ms and p99 <= 2 ms, sidecar CPU <= 0.5 core per 1,000
requests/s, RSS <= 40 MB, push p99 <= 1 s, pod start ratio <= 1.5. ``--quick`` shrinks every
part (5 s of load, 8 sidecars, 50 simulated proxies) for the smoke test. Every address is the
cluster's own (pod network, service range) or 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import docker  # noqa: E402

from kubelab import laptop  # noqa: E402
from kubelab.images import BUSYBOX, NGINX, build_app_image  # noqa: E402
from tests.e2e.mesh_harness import MeshCluster, mesh_cluster, namespace, wait_for  # noqa: E402

HEY_IMAGE = "kubelab/hey:bench"
FILE = "/1k.txt"
WAIT = 300.0


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _on(node: str) -> dict[str, Any]:
    return {"nodeSelector": {"kubernetes.io/hostname": node}}


def _server(ns: str) -> list[dict[str, Any]]:
    script = (f"head -c 1024 /dev/zero | tr '\\0' x > /usr/share/nginx/html{FILE} && "
              "exec nginx -g 'daemon off;'")
    labels = {"app": "server"}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "server", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {**_on("node-1"), "terminationGracePeriodSeconds": 1, "containers": [{
                 "name": "app", "image": NGINX, "command": ["sh", "-c", script], "ports": [{"containerPort": 80}],
                 "readinessProbe": {"httpGet": {"path": FILE, "port": 80}, "periodSeconds": 1}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server", "namespace": ns},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 80}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hey", "namespace": ns, "labels": {"app": "hey"}},
         "spec": {**_on("node-2"), "terminationGracePeriodSeconds": 1, "containers": [{
             "name": "app", "image": HEY_IMAGE, "command": ["sleep", "36000"]}]}},
    ]


def _build_hey(client: docker.DockerClient) -> None:
    hey = shutil.which("hey")
    if hey is None:
        raise SystemExit("bench/mesh.py needs hey (Debian package hey; scripts/setup installs it)")
    with tempfile.TemporaryDirectory(prefix="kubelab-hey-") as tmp:
        shutil.copy2(hey, Path(tmp) / "hey")
        build_app_image(client, HEY_IMAGE, Path(tmp), command=["sleep", "infinity"])


def _hey(mesh: MeshCluster, ns: str, url: str, seconds: int) -> dict[str, Any]:
    done = mesh.kubectl("exec", "hey", "-n", ns, "-c", "app", "--", "/app/hey", "-z", f"{seconds}s", "-c", "16",
                        "-q", "63", "-o", "csv", url, timeout=seconds + 120)
    times: list[float] = []
    codes: dict[str, int] = {}
    for line in done.stdout.splitlines()[1:]:
        fields = line.split(",")
        if len(fields) >= 8:
            times.append(float(fields[0]))
            codes[fields[6]] = codes.get(fields[6], 0) + 1
    if not times:
        raise SystemExit(f"hey in {ns} produced no results: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return {"requests": len(times), "rps": len(times) / seconds, "codes": codes,
            **{f"p{q}_ms": _percentile(times, q / 100) * 1000 for q in (50, 90, 99)}}


def _container_id(pod: dict[str, Any], name: str) -> str:
    statuses = [*pod["status"].get("initContainerStatuses", []), *pod["status"].get("containerStatuses", [])]
    return str(next(s for s in statuses if s["name"] == name)["containerID"]).removeprefix("docker://")


def _cpu_ns(client: docker.DockerClient, container: str) -> int:
    return int(client.containers.get(container).stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"])


def _proc_cpu_s(client: docker.DockerClient, container: str) -> float:
    """CPU seconds of the container's main process (the proxy is its PID 1) from /proc, as a cross-check."""
    pid = client.containers.get(container).attrs["State"]["Pid"]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(client: docker.DockerClient, container: str) -> float:
    pid = client.containers.get(container).attrs["State"]["Pid"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def latency(mesh: MeshCluster, client: docker.DockerClient, seconds: int) -> dict[str, Any]:
    mesh.apply(namespace("direct", injected=False), namespace("meshed"), *_server("direct"), *_server("meshed"))
    figures: dict[str, Any] = {}
    for ns in ("direct", "meshed"):
        mesh.wait_ready(ns, "app=server", timeout=WAIT)
        mesh.wait_ready(ns, "app=hey", timeout=WAIT)
    mesh.wait_synced(["hey"])
    proxies = [_container_id(mesh.pods("meshed", f"app={app}")[0], "istio-proxy") for app in ("hey", "server")]
    for ns in ("direct", "meshed"):
        ip = mesh.cluster.json("get", "service", "server", "-n", ns)["spec"]["clusterIP"]
        url = f"http://{ip}{FILE}"
        _hey(mesh, ns, url, 2)  # warm-up: connections, pools, caches
        cpu_before = [_cpu_ns(client, c) for c in proxies]
        proc_before = [_proc_cpu_s(client, c) for c in proxies]
        started = time.monotonic()
        run = _hey(mesh, ns, url, seconds)
        elapsed = time.monotonic() - started
        if ns == "meshed":
            cores = [(_cpu_ns(client, c) - b) / 1e9 / elapsed for c, b in zip(proxies, cpu_before, strict=True)]
            figures["sidecar_cpu_cores_per_1k_rps"] = max(cores) / (run["rps"] / 1000)
            proc = [(_proc_cpu_s(client, c) - b) / elapsed for c, b in zip(proxies, proc_before, strict=True)]
            figures["sidecar_proc_cpu_cores_per_1k_rps"] = max(proc) / (run["rps"] / 1000)
            figures["sidecar_rss_mb"] = max(_rss_mb(client, c) for c in proxies)
        figures.update({f"{ns}_{k}": v for k, v in run.items() if k != "codes"})
        figures[f"{ns}_non_200"] = sum(n for code, n in run["codes"].items() if code != "200")
    for q in (50, 90, 99):
        figures[f"added_p{q}_ms"] = figures[f"meshed_p{q}_ms"] - figures[f"direct_p{q}_ms"]
    return figures


def _debug_url(mesh: MeshCluster) -> str:
    return f"http://127.0.0.1:{int((mesh.state_dir / 'meshd' / 'debug.port').read_text())}"


def _acked_routes(url: str, ns: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{url}/debug/syncz", timeout=10) as answer:
        records = json.loads(answer.read())
    return {r["pod"]: str(r["types"].get("routes", {}).get("ackedVersion", "")) for r in records
            if r.get("namespace") == ns}


def push(mesh: MeshCluster, sidecars: int, changes: int) -> dict[str, Any]:
    ns = "push"
    labels = {"app": "fleet"}
    mesh.apply(namespace(ns), {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fleet", "namespace": ns},
        "spec": {"replicas": sidecars, "selector": {"matchLabels": labels}, "template": {
            # Idle pods: Istio's per-pod override of the sidecar's requests (100m CPU, 128Mi by default),
            # so fifty fit on two nodes of two cores.
            "metadata": {"labels": labels, "annotations": {"sidecar.istio.io/proxyCPU": "10m",
                                                           "sidecar.istio.io/proxyMemory": "40Mi"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "app", "image": BUSYBOX, "command": ["httpd", "-f", "-p", "8080"]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fleet", "namespace": ns},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    started = time.monotonic()

    def settled() -> int | None:
        """The Ready fleet once every pod is Ready or cannot be scheduled (as many as fit)."""
        pods = mesh.pods(ns, "app=fleet")
        ready = [p for p in pods if _ready(p)]
        unschedulable = [p for p in pods if any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                                                for c in p["status"].get("conditions") or [])]
        return len(ready) if len(pods) >= sidecars and len(ready) + len(unschedulable) >= sidecars else None
    sidecars = wait_for(settled, WAIT + 10 * sidecars, f"a fleet of {sidecars} sidecars", interval=1.0)
    ready_s = time.monotonic() - started
    url = _debug_url(mesh)
    wait_for(lambda: len(_acked_routes(url, ns)) >= sidecars, WAIT, f"{sidecars} connected sidecars")
    samples: list[float] = []
    for change in range(changes):
        before = _acked_routes(url, ns)
        mesh.apply({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": "fleet", "namespace": ns},
                    "spec": {"hosts": ["fleet"], "http": [{"timeout": f"{10 + change}s",
                                                           "route": [{"destination": {"host": "fleet"}}]}]}})
        written = time.monotonic()
        seen: dict[str, float] = {}
        deadline = written + 60
        while len(seen) < len(before) and time.monotonic() < deadline:
            now = time.monotonic()
            for pod, version in _acked_routes(url, ns).items():
                if pod in before and pod not in seen and version != before[pod]:
                    seen[pod] = now - written
            time.sleep(0.02)
        if len(seen) < len(before):
            raise SystemExit(f"change {change}: only {len(seen)} of {len(before)} sidecars ACKed within 60 s")
        samples += seen.values()
    return {"real_sidecars": sidecars, "real_fleet_ready_s": ready_s,
            "real_push_p50_s": _percentile(samples, 0.5), "real_push_p99_s": _percentile(samples, 0.99),
            "real_push_max_s": max(samples)}


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def pod_start(mesh: MeshCluster, pods: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for ns in ("direct", "meshed"):
        times = []
        for i in range(pods):
            name = f"start-{i}"
            started = time.monotonic()
            mesh.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                            "name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}]}})
            def ready(n: str = name, s: str = ns) -> bool:
                return _ready(mesh.cluster.json("get", "pod", n, "-n", s))
            wait_for(ready, WAIT, name, interval=0.05)
            times.append(time.monotonic() - started)
        figures[f"pod_start_{ns}_s"] = statistics.median(times)
    figures["pod_start_ratio"] = figures["pod_start_meshed_s"] / figures["pod_start_direct_s"]
    return figures


def simulated(quick: bool) -> dict[str, Any]:
    args = ["--proxies", "50", "--changes", "2", "--csrs", "50"] if quick else ["--proxies", "500"]
    done = subprocess.run([sys.executable, str(_ROOT / "bench" / "mesh_push.py"), *args], capture_output=True,
                          text=True, timeout=1800, cwd=_ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench/mesh_push.py failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    overall = re.search(r"overall \((\d+) changes x (\d+) proxies\): p50\s+([\d.]+) ms\s+p90\s+([\d.]+) ms\s+"
                        r"p99\s+([\d.]+) ms", done.stdout)
    csrs = re.search(r"CSRs signed: \d+ at (\d+)/s", done.stdout)
    if overall is None or csrs is None:
        raise SystemExit(f"unexpected bench/mesh_push.py output: {done.stdout[-2000:]}")
    return {"simulated_proxies": int(overall[2]), "simulated_push_p50_s": float(overall[3]) / 1000,
            "simulated_push_p99_s": float(overall[5]) / 1000, "csrs_per_s": float(csrs[1])}


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def report(f: dict[str, Any]) -> None:
    print("== SUMMARY mesh")
    for ns in ("direct", "meshed"):
        print(f"{ns:7} {f[f'{ns}_requests']:6d} requests at {f[f'{ns}_rps']:6.0f}/s  p50 {f[f'{ns}_p50_ms']:6.2f} ms  "
              f"p90 {f[f'{ns}_p90_ms']:6.2f} ms  p99 {f[f'{ns}_p99_ms']:6.2f} ms  non-200 {f[f'{ns}_non_200']}")
    print(f"added   p50 {f['added_p50_ms']:.2f} ms  p90 {f['added_p90_ms']:.2f} ms (target <= 1: "
          f"{_verdict(f['added_p90_ms'], 1)})  p99 {f['added_p99_ms']:.2f} ms (target <= 2: "
          f"{_verdict(f['added_p99_ms'], 2)})")
    print(f"sidecar CPU {f['sidecar_cpu_cores_per_1k_rps']:.2f} core per 1,000 requests/s (the busier proxy; "
          f"its process alone {f['sidecar_proc_cpu_cores_per_1k_rps']:.2f}; target <= 0.5: "
          f"{_verdict(f['sidecar_cpu_cores_per_1k_rps'], 0.5)})  RSS {f['sidecar_rss_mb']:.1f} MB (target <= 40: "
          f"{_verdict(f['sidecar_rss_mb'], 40)})")
    print(f"push to {f['real_sidecars']} real sidecars: p50 {f['real_push_p50_s'] * 1000:.0f} ms  p99 "
          f"{f['real_push_p99_s'] * 1000:.0f} ms (target <= 1 s: {_verdict(f['real_push_p99_s'], 1)})  "
          f"(fleet Ready in {f['real_fleet_ready_s']:.0f} s)")
    print(f"push to {f['simulated_proxies']} simulated proxies: p50 {f['simulated_push_p50_s'] * 1000:.0f} ms  p99 "
          f"{f['simulated_push_p99_s'] * 1000:.0f} ms (target <= 1 s: {_verdict(f['simulated_push_p99_s'], 1)})")
    print(f"pod start  without sidecar {f['pod_start_direct_s']:.2f} s  with {f['pod_start_meshed_s']:.2f} s  "
          f"ratio {f['pod_start_ratio']:.2f} (target <= 1.5: {_verdict(f['pod_start_ratio'], 1.5)})")
    print(f"CSRs signed {f['csrs_per_s']:.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds of each part (smoke test)")
    parser.add_argument("--seconds", type=int, default=30, help="load duration of each latency run")
    parser.add_argument("--sidecars", type=int, default=50, help="real sidecars for the push figure")
    parser.add_argument("--changes", type=int, default=5, help="VirtualService changes pushed to them")
    parser.add_argument("--pods", type=int, default=5, help="pods started with and without a sidecar")
    parser.add_argument("--mesh-cni", action="store_true", help="run the cluster in mesh CNI mode (no istio-init)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.sidecars, args.changes, args.pods = 5, 8, 2, 2
    client = laptop.docker_client()
    _build_hey(client)
    with tempfile.TemporaryDirectory(prefix="kubelab-mesh-bench-") as tmp, \
            mesh_cluster(Path(tmp) / "state", client, up_args=("--mesh-cni",) if args.mesh_cni else ()) as mesh:
        figures: dict[str, Any] = {"cluster": mesh.cluster.cluster}
        parts: list[Callable[[], dict[str, Any]]] = [
            lambda: latency(mesh, client, args.seconds), lambda: pod_start(mesh, args.pods),
            lambda: push(mesh, args.sidecars, args.changes)]
        for part in parts:
            measured = part()
            print(json.dumps(measured), flush=True)
            figures.update(measured)
    figures.update(simulated(args.quick))
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
