"""Metrics API latency: ``python bench/metrics_api.py [--pods 1000] [--nodes 10] [--requests 200] [--quick]``.

An apiserver process (SQLite, ``--metric-resolution 2``) and, in this process, a hollow kubelet
with ``--nodes`` nodes. ``--pods`` pods are created bound to the nodes round-robin (each with a
``kubelab.dev/fake-cpu`` annotation); once a scrape has seen every one of them, the benchmark
asks ``GET /apis/metrics.k8s.io/v1beta1/pods`` (every pod, as ``kubectl top pods -A`` does)
``--requests`` times one after another over one keep-alive HTTPS connection, then the same
number of times for one namespace with a label selector (``kubectl top pods -l``, what the HPA
controller asks), and prints p50 / p99 / max of each, and the time the first full scrape took to
appear. ``--quick``: 100 pods on 2 nodes, 30 requests. Everything lives in a temporary directory.
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
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from kubelab.testing import start_apiserver  # noqa: E402
from kubelet.hollow import KubeletGroup  # noqa: E402
from kubelet.settings import KubeletSettings  # noqa: E402
from machinery.client import ApiClient  # noqa: E402
from machinery.kubeconfig import load_kubeconfig  # noqa: E402
from machinery.resources import PODS  # noqa: E402

ALL_PODS = "/apis/metrics.k8s.io/v1beta1/pods"
SELECTED = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb-0"


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _pod(i: int, nodes: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"load-{i}", "namespace": "default", "labels": {"app": f"web-{i % 10}"},
                         "annotations": {"kubelab.dev/fake-cpu": f"{10 + i % 90}m"}},
            "spec": {"nodeName": f"hollow-node-{1 + i % nodes}", "containers": [
                {"name": "app", "image": "kubelab/nginx:1.22", "resources": {"requests": {"cpu": "100m"}}}]}}


async def _create(client: ApiClient, pods: int, nodes: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(pods):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await client.create(PODS, _pod(queue.get_nowait(), nodes))

    await asyncio.gather(*(worker() for _ in range(16)))


async def _latencies(session: aiohttp.ClientSession, url: str, requests: int) -> tuple[list[float], int]:
    samples: list[float] = []
    items = 0
    for _ in range(requests):
        started = time.perf_counter()
        async with session.get(url) as resp:
            body = await resp.read()
        samples.append((time.perf_counter() - started) * 1000)
        assert resp.status == 200, resp.status
        items = len(orjson.loads(body)["items"])
    return samples, items


def _report(what: str, samples: list[float], items: int) -> None:
    print(f"{what} ({items} items, {len(samples)} requests): p50 {_percentile(samples, 0.5):.1f} ms, "
          f"p99 {_percentile(samples, 0.99):.1f} ms, max {max(samples):.1f} ms", flush=True)


async def _bench(state_dir: Path, server_url: str, pods: int, nodes: int, requests: int) -> None:
    kubeconfig = state_dir / "kubeconfig"
    settings = KubeletSettings(kubeconfig=kubeconfig, node_name="hollow-node", hollow=True, count=nodes,
                               pki_dir=state_dir / "pki", fake_start_delay=0.05, pods=max(110, pods),
                               emit_events=False)
    async with ApiClient.from_kubeconfig(kubeconfig, user_agent="bench-metrics-api") as client:
        group = KubeletGroup(client, settings)
        await group.start()
        try:
            await group.wait_registered(60)
            started = time.monotonic()
            await _create(client, pods, nodes)
            print(f"created {pods} pods on {nodes} hollow nodes in {time.monotonic() - started:.1f} s", flush=True)
            connector = aiohttp.TCPConnector(ssl=load_kubeconfig(kubeconfig).ssl_context(), limit=1)
            async with aiohttp.ClientSession(server_url, connector=connector) as session:
                seen = 0
                while seen < pods:
                    assert time.monotonic() - started < 120 + pods / 5, f"only {seen} of {pods} pods have metrics"
                    await asyncio.sleep(0.5)
                    async with session.get(ALL_PODS) as resp:
                        seen = len(orjson.loads(await resp.read())["items"])
                print(f"every pod in the metrics API {time.monotonic() - started:.1f} s after the first create",
                      flush=True)
                await _latencies(session, ALL_PODS, min(10, requests))  # warm up
                _report(f"GET {ALL_PODS}", *await _latencies(session, ALL_PODS, requests))
                _report(f"GET {SELECTED}", *await _latencies(session, SELECTED, requests))
        finally:
            await group.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100 pods on 2 nodes, 30 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.pods, args.nodes, args.requests = 100, 2, 30
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-metrics-") as tmp, start_apiserver(
            Path(tmp) / "state", extra_args=["--metric-resolution", "2", "--authorization-mode", "AlwaysAllow"],
    ) as server:
        asyncio.run(_bench(server.state_dir, server.url, args.pods, args.nodes, args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
