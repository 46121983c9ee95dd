"""Chaos benchmark: ``python bench/chaos.py [--store sqlite|etcd] [--rounds 10] [--outage 300] [--quick]``.

Brings up a cluster of hollow nodes (``kubelab up --hollow-nodes N`` in a temporary state dir,
on a free loopback port, under its supervisor), rolls out an N-replica Deployment, then:

- chaos rounds: each starts a rolling update to a new image, kills one randomly chosen
  component (apiserver, scheduler, controller-manager, the hollow kubelet, etcd with ``--store
  etcd``) with SIGKILL a few seconds later, and prints which one, the restart delay (from the kill
  to the supervisor's new process being ready: ``/readyz`` for the apiserver, a running process
  for the others) and the time from the kill to the exact converged state (Deployment Complete,
  one ReplicaSet with replicas, every pod on the newest template, no orphan, no duplicate);
- one outage round: the apiserver stopped on purpose in the middle of a rollout, held down for
  ``--outage`` seconds, started again by ``kubelab up``, and the time from its return to the
  converged state (the suite's bound: 30 s after 300 s down);
- a summary per component.

The seed of the random choices is printed; ``--seed`` replays them. Everything it starts is
stopped on exit (``kubelab down``). ``--json PATH`` also writes the figures.
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
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

from machinery.resources import DEPLOYMENTS, NAMESPACES  # noqa: E402
from tests.e2e.chaos_harness import (  # noqa: E402
    SUPERVISOR,
    Chaos,
    Cluster,
    Kill,
    Outage,
    deployment,
    outage_round,
    wait_converged,
)

NAMESPACE = "chaos"
NAME = "web"


async def run(cluster: Cluster, args: argparse.Namespace, seed: int) -> tuple[list[Kill], Outage | None]:
    async with cluster.api() as api:
        await api.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
        await api.create(DEPLOYMENTS, deployment(NAME, args.replicas, "kubelab/nginx:0.0", min_ready_seconds=1),
                         namespace=NAMESPACE)
        took = await wait_converged(api, NAMESPACE, NAME, timeout=300)
        print(f"  {args.replicas} replicas rolled out and ready                 {took:8.2f} s\n")
        print(f"== {args.rounds} chaos rounds (rolling update, then SIGKILL of a random component)")
        chaos = Chaos(cluster, api, NAMESPACE, NAME, random.Random(seed), pause=(args.pause_min, args.pause_max))
        kills = []
        for number in range(1, args.rounds + 1):
            kill = await chaos.round(number)
            await chaos.restarted(kill)
            await chaos.converged(kill, timeout=args.converge_timeout)
            print(kill.row(), flush=True)
            kills.append(kill)
        outage = None
        if args.outage > 0:
            print(f"\n== outage round: the apiserver held down {args.outage:g} s in the middle of a rollout")
            outage = await outage_round(cluster, api, NAMESPACE, NAME, image=f"kubelab/nginx:{args.rounds + 1}.0",
                                        seconds=args.outage, converge_timeout=args.converge_timeout)
            print(f"  stopped at {outage.updated_at_stop}/{args.replicas} replicas updated, down {outage.down:.1f} s, "
                  f"re-converged {outage.converge:.2f} s after it returned (bound 30 s)")
        return kills, outage


def summary(kills: list[Kill], outage: Outage | None) -> dict[str, Any]:
    print("\n== SUMMARY")
    by_component: dict[str, list[Kill]] = {}
    for kill in kills:
        by_component.setdefault(kill.component, []).append(kill)
    figures: dict[str, Any] = {}
    for component, group in sorted(by_component.items()):
        delays = [k.restart_delay for k in group if k.restart_delay is not None]
        converge = [k.converge for k in group if k.converge is not None]
        figures[component] = {"kills": len(group), "restart_delay_max_s": max(delays),
                              "restart_delay_mean_s": statistics.fmean(delays), "converge_max_s": max(converge)}
        print(f"  {component:<20} killed {len(group):2d}x  restart delay mean {statistics.fmean(delays):6.2f} s "
              f"max {max(delays):6.2f} s  re-converged max {max(converge):6.2f} s")
    converge_all = sorted(k.converge for k in kills if k.converge is not None)
    if converge_all:
        figures["converge_median_s"] = statistics.median(converge_all)
        figures["converge_max_s"] = converge_all[-1]
        print(f"  re-convergence after a kill: median {figures['converge_median_s']:.2f} s, "
              f"max {figures['converge_max_s']:.2f} s over {len(converge_all)} rounds")
    if outage is not None:
        figures["outage"] = asdict(outage)
        print(f"  outage of {outage.down:.0f} s: re-converged {outage.converge:.2f} s after the apiserver returned")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "etcd"], default="sqlite")
    parser.add_argument("--nodes", type=int, default=4, help="hollow nodes (default 4)")
    parser.add_argument("--replicas", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--outage", type=float, default=300.0, help="seconds the apiserver is held down (0: skip)")
    parser.add_argument("--pause-min", type=float, default=1.0, help="seconds from an update to its kill, at least")
    parser.add_argument("--pause-max", type=float, default=4.0, help="... and at most")
    parser.add_argument("--converge-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=None, help="replay the random choices of an earlier run")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 50 replicas, a 10 s outage")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.replicas, args.outage = 3, 50, 10.0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"chaos seed {seed} (replay with --seed {seed})")
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-chaos-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster", store=args.store, hollow_nodes=args.nodes)
        print(f"== kubelab up --hollow-nodes {args.nodes} --store {args.store}")
        started = time.perf_counter()
        try:
            cluster.up()
            print(f"  cluster up ({', '.join(cluster.components())})        {time.perf_counter() - started:8.2f} s")
            if SUPERVISOR not in cluster.processes():
                print("kubelab up started no supervisor: nothing would restart a killed component", file=sys.stderr)
                return 1
            kills, outage = asyncio.run(run(cluster, args, seed))
        finally:
            cluster.down()
    figures = summary(kills, outage)
    if args.json is not None:
        args.json.write_bytes(orjson.dumps({"seed": seed, "store": args.store, "replicas": args.replicas,
                                            "rounds": [asdict(k) for k in kills], "results": figures},
                                           option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
