"""Rollout benchmark: ``python bench/rollout.py [--nodes 100] [--replicas 1000] [--quick]``.

Brings up a laptop cluster with hollow nodes (``kubelab up --hollow-nodes N`` in a temporary state
dir, on a free port), then measures, through the API as ``kubectl rollout status`` reads it:

- apply of an N-replica Deployment until every replica is updated, ready and available;
- a rolling image update of it until it has rolled out again;
- the control plane's RSS (apiserver + scheduler + controller-manager) with the pods running.

Targets: 1,000 replicas on 100 nodes Ready in ≤ 10 s; the rolling update in ≤ 20 s;
control-plane RSS ≤ 300 MB. Everything it starts is stopped on exit (``kubelab down``).
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
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from kubelab import launcher  # noqa: E402
from machinery.client import ApiClient  # noqa: E402
from machinery.resources import DEPLOYMENTS  # noqa: E402

CONTROL_PLANE = ("apiserver", "scheduler", "controller-manager")


def deployment(replicas: int, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench", "namespace": "default", "labels": {"app": "bench"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "bench"}},
                         "spec": {"containers": [{"name": "web", "image": image,
                                                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}},
        },
    }


def rolled_out(d: dict[str, Any]) -> bool:
    """The same test ``kubectl rollout status`` applies."""
    spec, status, meta = d.get("spec") or {}, d.get("status") or {}, d["metadata"]
    want = int(spec.get("replicas", 1))
    return (int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
            and int(status.get("updatedReplicas", 0)) == want
            and int(status.get("replicas", 0)) == want
            and int(status.get("availableReplicas", 0)) == want)


async def wait_rolled_out(client: ApiClient, timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        d = await client.get(DEPLOYMENTS, "bench", namespace="default")
        if rolled_out(d):
            return time.perf_counter() - start
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not rolled out within {timeout} s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(state_dir: Path, replicas: int) -> dict[str, float]:
    async with ApiClient.from_kubeconfig(state_dir / "kubeconfig") as client:
        await client.create(DEPLOYMENTS, deployment(replicas, "kubelab/nginx:1.22"), namespace="default")
        first = await wait_rolled_out(client, timeout=120)
        print(f"  apply of {replicas} replicas to all available       {first:8.2f} s")
        rss = {}
        for name in CONTROL_PLANE:
            process = launcher.read_process(state_dir, name)
            rss[name] = rss_mib(process.pid) if process else 0.0
        print("  control-plane RSS: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items())
              + f" = {sum(rss.values()):.0f} MiB")
        await client.patch(DEPLOYMENTS, "bench",
                           {"spec": {"template": {"spec": {"containers": [{"name": "web",
                                                                          "image": "kubelab/nginx:1.23"}]}}}},
                           namespace="default", patch_type="strategic")
        update = await wait_rolled_out(client, timeout=180)
        print(f"  rolling image update to all available           {update:8.2f} s")
        return {"apply_s": first, "update_s": update, "control_plane_rss_mib": sum(rss.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="10 nodes, 100 replicas")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.replicas = 10, 100
    kubelab = [sys.executable, "-m", "kubelab"]
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-rollout-") as tmp:
        state_dir = Path(tmp)
        print(f"== kubelab up --hollow-nodes {args.nodes}")
        t0 = time.perf_counter()
        subprocess.run([*kubelab, "up", "--state-dir", str(state_dir), "--port", "0",
                        "--hollow-nodes", str(args.nodes)], check=True, stdout=subprocess.DEVNULL)
        print(f"  cluster up with {args.nodes} Ready hollow nodes   {time.perf_counter() - t0:8.2f} s")
        try:
            figures = asyncio.run(measure(state_dir, args.replicas))
        finally:
            subprocess.run([*kubelab, "down", "--state-dir", str(state_dir)], check=False,
                           stdout=subprocess.DEVNULL)
    print("\n== SUMMARY")
    print(f"  apply → all available ({args.replicas} replicas, {args.nodes} nodes): "
          f"{figures['apply_s']:.2f} s (target ≤ 10 s)")
    print(f"  rolling update: {figures['update_s']:.2f} s (target ≤ 20 s)")
    print(f"  control-plane RSS: {figures['control_plane_rss_mib']:.0f} MiB (target ≤ 300 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
