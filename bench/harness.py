"""Test-harness start-up benchmark: ``python bench/harness.py [--starts N] [--cluster-starts N] [--quick]``.

What a test pays for the fixtures of :mod:`kubelab.pytest_plugin`, each measured several times
(p50, min and max printed) and shown beside the published figures of other harnesses:

- ``kubelab_apiserver``: :func:`kubelab.testing.start_apiserver` until ``/readyz`` answers 200
  (a fresh state dir, PKI and SQLite store each time), then the first Pod created (API models
  build their validators on first use, so the first write of a kind pays for it);
- ``kubelab_cluster``: :func:`kubelab.testing_cluster.start_cluster` with 2 hollow nodes (``kubelab
  up``: supervisor, apiserver, scheduler, controller-manager, the hollow kubelet) until both nodes
  are Ready, and ``kubelab down`` afterwards;
- ``kubelab_namespace``: create a namespace, then delete it and wait until it is gone, on that cluster.

Anchors (docs/benchmarks.md): envtest boots etcd + kube-apiserver in 5-7 s; kwok's all-in-one
cluster answers in ~5 s (its user wanted < 1-2 s); ``kind create cluster`` takes 12.5-17 s.
Everything started is stopped on exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import orjson  # noqa: E402

from kubelab.testing import start_apiserver  # noqa: E402
from kubelab.testing_cluster import RunningCluster, start_cluster  # noqa: E402

ANCHORS = [
    ("envtest (etcd + kube-apiserver)", "5-7 s per environment"),
    ("kwok all-in-one image", "~5 s until kubectl answers"),
    ("kind create cluster", "12.5-17 s"),
    ("target for a Python apiserver on SQLite", "<= 1-2 s"),
]

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "first"},
       "spec": {"containers": [{"name": "c", "image": "kubelab/busybox:1.35"}]}}


def apiserver_start(root: Path, i: int) -> dict[str, float]:
    started = time.perf_counter()
    with start_apiserver(root / f"apiserver-{i}", timeout=120) as server:
        ready = time.perf_counter() - started
        cluster = RunningCluster(kubeconfig=server.kubeconfig)
        before = time.perf_counter()
        status, body = cluster.request("POST", "/api/v1/namespaces/default/pods", body=POD)
        if status != 201:
            raise SystemExit(f"creating the first pod: HTTP {status}: {body[:300]!r}")
        first_pod = time.perf_counter() - before
    return {"ready": ready, "first_pod": first_pod}


def cluster_start(root: Path, i: int, namespaces: int) -> dict[str, float]:
    started = time.perf_counter()
    with start_cluster(root / f"cluster-{i}", hollow_nodes=2, timeout=180) as cluster:
        ready = time.perf_counter() - started
        cycles = []
        for _ in range(namespaces):
            before = time.perf_counter()
            cluster.delete_namespace(cluster.create_namespace("bench"))
            cycles.append(time.perf_counter() - before)
        before = time.perf_counter()
    return {"ready": ready, "namespace_cycle": statistics.median(cycles) if cycles else 0.0,
            "down": time.perf_counter() - before}


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<48} p50 {statistics.median(values):6.2f} s   min {min(values):6.2f}   "
            f"max {max(values):6.2f}   (n={len(values)})")


def collect(runs: int, one: Callable[[int], dict[str, float]]) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    for i in range(runs):
        for key, value in one(i).items():
            figures.setdefault(key, []).append(value)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=7, help="apiserver starts (default 7)")
    parser.add_argument("--cluster-starts", type=int, default=3, help="cluster starts (default 3)")
    parser.add_argument("--namespaces", type=int, default=5, help="namespace cycles per cluster (default 5)")
    parser.add_argument("--quick", action="store_true", help="a short run: 2 apiserver starts, 1 cluster")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.starts, args.cluster_starts, args.namespaces = 2, 1, 2
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-harness-") as tmp:
        root = Path(tmp)
        api = collect(args.starts, lambda i: apiserver_start(root, i))
        cluster = collect(args.cluster_starts, lambda i: cluster_start(root, i, args.namespaces))
    print("== kubelab harness start-up")
    print(summary("kubelab_apiserver: start until /readyz 200", api["ready"]))
    print(summary("  then the first Pod created", api["first_pod"]))
    print(summary("kubelab_cluster: 2 hollow nodes until Ready", cluster["ready"]))
    print(summary("kubelab_namespace: create + delete until gone", cluster["namespace_cycle"]))
    print(summary("kubelab down", cluster["down"]))
    print("== anchors (published figures, other machines)")
    for name, figure in ANCHORS:
        print(f"{name:<48} {figure}")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps({"apiserver": api, "cluster": cluster}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
