"""Job throughput benchmark: ``python bench/jobs.py [--nodes 20] [--completions 500] [--parallelism 50] [--quick]``.

Brings up a laptop cluster with hollow nodes (``kubelab up --hollow-nodes N`` in a temporary state
dir, on a free port), creates one Job of one-shot pods (each hollow container exits 0 after
``--work`` seconds through ``kubelab.dev/fake-complete-after``) and measures, through the API:

- the time from the Job's creation to its ``Complete`` condition, and the completions per second;
- the time to the first succeeded pod (the pipeline's latency: create → schedule → run → count);
- how many pods were created in all (exactly ``completions`` when nothing was retried), and how many
  the Job counted failed (none: a pod run beyond the completions and deleted would count).

Everything it starts is stopped on exit (``kubelab down``).
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

from machinery.client import ApiClient  # noqa: E402
from machinery.resources import JOBS, PODS  # noqa: E402


def job(completions: int, parallelism: int, work: float) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "completions": completions, "parallelism": parallelism, "backoffLimit": 6,
            "template": {"metadata": {"annotations": {"kubelab.dev/fake-complete-after": f"{work:g}"}},
                         "spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "work", "image": "busybox", "command": ["true"],
                                                  "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}},
        },
    }


def complete(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Complete" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def failed_condition(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Failed" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


async def measure(state_dir: Path, completions: int, parallelism: int, work: float) -> dict[str, float]:
    async with ApiClient.from_kubeconfig(state_dir / "kubeconfig") as client:
        start = time.perf_counter()
        await client.create(JOBS, job(completions, parallelism, work), namespace="default")
        first: float | None = None
        last_print = start
        while True:
            obj = await client.get(JOBS, "bench", namespace="default")
            succeeded = int((obj.get("status") or {}).get("succeeded") or 0)
            now = time.perf_counter()
            if first is None and succeeded > 0:
                first = now - start
            if complete(obj):
                break
            if failed_condition(obj):
                raise RuntimeError(f"the job failed: {(obj.get('status') or {}).get('conditions')}")
            if now - last_print > 5:
                print(f"  … {succeeded}/{completions} succeeded after {now - start:.1f} s")
                last_print = now
            if now - start > 900:
                raise TimeoutError("the job did not complete within 900 s")
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - start
        pods = (await client.list(PODS, namespace="default", label_selector="batch.kubernetes.io/job-name=bench"))
        created = len(pods["items"])
        failed = int((obj.get("status") or {}).get("failed") or 0)
    print(f"  job of {completions} completions (parallelism {parallelism}) Complete   {elapsed:8.2f} s")
    print(f"  first pod succeeded                                {first or 0.0:8.2f} s")
    print(f"  completions per second                           {completions / elapsed:8.1f}")
    print(f"  pods created                                     {created:8d}")
    print(f"  pods counted failed                              {failed:8d}")
    return {"elapsed_s": elapsed, "first_s": first or 0.0, "per_s": completions / elapsed, "pods": float(created),
            "failed": float(failed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--completions", type=int, default=500)
    parser.add_argument("--parallelism", type=int, default=50)
    parser.add_argument("--work", type=float, default=1.0, help="seconds each pod's container runs")
    parser.add_argument("--quick", action="store_true", help="5 nodes, 50 completions, parallelism 10")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.completions, args.parallelism = 5, 50, 10
    kubelab = [sys.executable, "-m", "kubelab"]
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-jobs-") as tmp:
        state_dir = Path(tmp)
        print(f"== kubelab up --hollow-nodes {args.nodes}")
        t0 = time.perf_counter()
        subprocess.run([*kubelab, "up", "--state-dir", str(state_dir), "--port", "0",
                        "--hollow-nodes", str(args.nodes)], check=True, stdout=subprocess.DEVNULL)
        print(f"  cluster up with {args.nodes} Ready hollow nodes   {time.perf_counter() - t0:8.2f} s")
        try:
            figures = asyncio.run(measure(state_dir, args.completions, args.parallelism, args.work))
        finally:
            subprocess.run([*kubelab, "down", "--state-dir", str(state_dir)], check=False,
                           stdout=subprocess.DEVNULL)
    print("\n== SUMMARY")
    print(f"  {args.completions} one-shot pods, parallelism {args.parallelism}, {args.nodes} hollow nodes, "
          f"{args.work:g} s of work each: {figures['elapsed_s']:.1f} s, {figures['per_s']:.1f} completions/s "
          f"(ideal {args.parallelism / args.work:.0f}/s), {figures['pods']:.0f} pods created, "
          f"{figures['failed']:.0f} failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
