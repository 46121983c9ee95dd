"""RBAC benchmark: ``python bench/rbac.py [--creates N] [--concurrency C] [--users U] [--decisions D]``.

Two figures, printed as measured:

1. **Authorisation decision** — :class:`apiserver.rbac.authorizer.RbacAuthorizer` over the
   default policy plus ``U`` lab users (each a namespace with an ``edit`` RoleBinding, as
   ``kubelab user add`` makes them), asked ``D`` times for an allowed and a denied request of
   a random user: p50 and p99 of one ``decide()`` (target p99 ≤ 100 µs).
2. **Create throughput, RBAC on vs off** — two real apiserver processes (SQLite, the same
   machine), ``--authorization-mode RBAC`` and ``AlwaysAllow``; a lab user (not a superuser, so
   every request goes through the rules) creates ``N`` ConfigMaps in their namespace with ``C``
   requests in flight over keep-alive HTTPS; creates/s each, and the ratio (target ≥ 90 %).
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
import base64  # noqa: E402
import random  # noqa: E402
import ssl  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import yaml  # noqa: E402

from apiserver.authn import UserInfo  # noqa: E402
from apiserver.authz import Attributes  # noqa: E402
from apiserver.rbac.authorizer import RbacAuthorizer  # noqa: E402
from apiserver.rbac.index import RbacIndex  # noqa: E402
from apiserver.rbac.policy import cluster_role_bindings, cluster_roles  # noqa: E402
from kubelab.testing import RunningApiServer, kubectl, start_apiserver  # noqa: E402
from kubelab.users import add_user  # noqa: E402
from machinery.rbac_aggregation import converge  # noqa: E402

RBAC = "rbac.authorization.k8s.io"


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def decision_latency(users: int, decisions: int) -> tuple[float, float]:
    """(p50, p99) of one decision in microseconds."""
    index = RbacIndex()
    roles = {r["metadata"]["name"]: r for r in cluster_roles()}
    converge(roles)
    for role in roles.values():
        index.apply("ClusterRole", role)
    for binding in cluster_role_bindings():
        index.apply("ClusterRoleBinding", binding)
    for i in range(users):
        index.apply("RoleBinding", {
            "metadata": {"namespace": f"student-{i}", "name": "edit"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "User", "apiGroup": RBAC, "name": f"student-{i}"}]})
    authorizer = RbacAuthorizer(index)
    rng = random.Random(1)
    samples: list[float] = []
    for n in range(decisions):
        i = rng.randrange(users)
        user = UserInfo(f"student-{i}", ("kubelab:students", "system:authenticated"))
        own = n % 2 == 0
        attributes = Attributes("list" if own else "get", "deployments", api_group="apps",
                                namespace=f"student-{i if own else (i + 1) % users}")
        start = time.perf_counter_ns()
        decision = authorizer.decide(user, attributes)
        samples.append((time.perf_counter_ns() - start) / 1000)
        assert decision.allowed is own
    return statistics.median(samples), _percentile(samples, 0.99)


async def _creates(server: RunningApiServer, kubeconfig: Path, namespace: str, count: int,
                   concurrency: int, prefix: str) -> float:
    doc = yaml.safe_load(kubeconfig.read_text())
    user = doc["users"][0]["user"]
    workdir = Path(tempfile.mkdtemp(prefix="rbac-bench-"))
    (workdir / "c.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (workdir / "c.key").write_bytes(base64.b64decode(user["client-key-data"]))
    context = ssl.create_default_context(cafile=str(server.state_dir / "pki" / "ca.crt"))
    context.load_cert_chain(str(workdir / "c.crt"), str(workdir / "c.key"))
    url = f"{server.url}/api/v1/namespaces/{namespace}/configmaps"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=concurrency)) as session:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{prefix}-{i}"},
                                     "data": {"k": "v"}})
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    assert resp.status == 201, resp.status
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


def create_rate(mode: str, count: int, concurrency: int, workdir: Path) -> float:
    with start_apiserver(workdir / mode, extra_args=["--authorization-mode", mode]) as server:
        added = add_user(server.state_dir, "bench")
        deadline = time.monotonic() + 30
        while kubectl("auth", "can-i", "create", "configmaps", kubeconfig=added.kubeconfig,
                      check=False).stdout.strip() != "yes":
            assert time.monotonic() < deadline, "the bench user never got its role"
            time.sleep(0.2)
        asyncio.run(_creates(server, added.kubeconfig, "bench", min(200, count), concurrency, "warm"))
        return asyncio.run(_creates(server, added.kubeconfig, "bench", count, concurrency, "cm"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating on/off rounds (best of each)")
    args = parser.parse_args(argv)
    p50, p99 = decision_latency(args.users, args.decisions)
    print(f"authorisation decision ({args.users} users, {args.decisions} decisions): "
          f"p50 {p50:.1f} µs, p99 {p99:.1f} µs (target p99 <= 100 µs)", flush=True)
    rates: dict[str, list[float]] = {"RBAC": [], "AlwaysAllow": []}
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-rbac-") as tmp:
        for round_ in range(args.rounds):
            for mode in ("AlwaysAllow", "RBAC"):
                rate = create_rate(mode, args.creates, args.concurrency, Path(tmp) / f"r{round_}")
                rates[mode].append(rate)
                print(f"round {round_ + 1}: ConfigMap creates/s with --authorization-mode {mode}: {rate:.0f}",
                      flush=True)
    on, off = max(rates["RBAC"]), max(rates["AlwaysAllow"])
    print(f"create throughput RBAC on / off: {on:.0f} / {off:.0f} creates/s = {100 * on / off:.1f} % "
          f"(target >= 90 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
