"""CustomResourceDefinition benchmark: ``python bench/crd.py [--store sqlite|etcd] [--quick] [--bundle B]``.

In one run, against real apiserver processes (``kubelab.testing.start_apiserver``; for etcd, a real
``/usr/bin/etcd`` on free loopback ports via ``tests.etcd_server``) over HTTPS with keep-alive:

1. create throughput with 16 clients, ConfigMaps and then custom resources of a CRD with a
   validated schema (a default, an enum, a pattern and a CEL rule), and their ratio (target: custom
   resources at >= 80% of ConfigMaps);
2. a ~1 MB CRD bundle applied with the real ``kubectl apply -f`` (client-side, then
   ``--server-side``, each on a fresh apiserver): seconds until kubectl returns and until every
   CRD is ``Established`` (target: <= 2 s). The bundle is Istio's ``crd-all.gen.yaml`` when it is
   at ``/tmp/kl/istio-crds.yaml`` (never part of the repository), otherwise (or with
   ``--bundle synthetic``) the synthetic bundle of the same shape from :mod:`bench.crd_bundle`.

Every figure is printed as it is measured, then a summary with the targets.
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
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from bench.crd_bundle import rule_count, synthetic_bundle  # noqa: E402
from bench.workload import closed_loop, percentile  # noqa: E402
from kubelab.testing import RunningApiServer, kubectl, start_apiserver  # noqa: E402
from machinery.kubeconfig import load_kubeconfig  # noqa: E402
from tests.etcd_server import EtcdServer  # noqa: E402

ISTIO_BUNDLE = Path("/tmp/kl/istio-crds.yaml")
GROUP = "bench.example.com"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
JSON = {"Content-Type": "application/json"}
CONCURRENCY = 16
ESTABLISHED_TIMEOUT = 60.0

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "required": ["size"], "properties": {
                                   "size": {"type": "string", "enum": ["small", "large"]},
                                   "owner": {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9-]+$"},
                                   "replicas": {"type": "integer", "minimum": 0, "default": 1,
                                                "x-kubernetes-validations": [
                                                    {"rule": "self <= 100", "message": "at most 100 replicas"}]},
                               }},
                               "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                           }}}}]},
}


def say(label: str, value: str) -> None:
    print(f"  {label:<58} {value}", flush=True)


@contextlib.contextmanager
def apiserver(store: str, workdir: Path, etcd: EtcdServer | None) -> Iterator[RunningApiServer]:
    kwargs: dict[str, Any] = {}
    if etcd is not None:
        kwargs = {"etcd_servers": [etcd.client_url], "etcd_prefix": f"/kubelab-bench-crd-{time.time_ns()}"}
    server = start_apiserver(workdir, store=store, timeout=60, **kwargs)
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def session(server: RunningApiServer, limit: int) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=limit, ssl=load_kubeconfig(server.kubeconfig).ssl_context())
    async with aiohttp.ClientSession(server.url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        yield s


async def established(s: aiohttp.ClientSession) -> int:
    """How many CRDs report ``Established=True``."""
    async with s.get(CRDS) as r:
        items = orjson.loads(await r.read())["items"]
    return sum(1 for crd in items for c in (crd.get("status") or {}).get("conditions") or []
               if c.get("type") == "Established" and c.get("status") == "True")


async def wait_established(s: aiohttp.ClientSession, count: int) -> None:
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT
    while await established(s) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRDs not Established within {ESTABLISHED_TIMEOUT:.0f} s")
        await asyncio.sleep(0.01)


# ---- 1. creates/s ------------------------------------------------------------------------------
async def create_rates(server: RunningApiServer, count: int, results: dict[str, Any]) -> None:
    async with session(server, CONCURRENCY) as s:
        async with s.post("/api/v1/namespaces", json={"metadata": {"name": "bench"}}) as r:
            assert r.status in (201, 409), await r.text()
        async with s.post(CRDS, data=orjson.dumps(WIDGET_CRD), headers=JSON) as r:
            assert r.status == 201, await r.text()
        await wait_established(s, 1)

        def poster(path: str, body: Any) -> Any:
            async def create(i: int) -> int:
                async with s.post(path, data=orjson.dumps(body(i)), headers=JSON) as r:
                    await r.read()
                    return r.status
            return create

        rows = (
            ("configmap", "/api/v1/namespaces/bench/configmaps",
             lambda i: {"metadata": {"name": f"cm-{i}", "labels": {"app": "bench"}}, "data": {"k": "v" * 64}}),
            ("custom", f"/apis/{GROUP}/v1/namespaces/bench/widgets",
             lambda i: {"apiVersion": f"{GROUP}/v1", "kind": "Widget",
                        "metadata": {"name": f"w-{i}", "labels": {"app": "bench"}},
                        "spec": {"size": "small", "owner": "bench-team", "replicas": 3}}),
        )
        for name, path, body in rows:
            create = poster(path, body)
            for i in range(-20, 0):  # warm-up: connections, first admission, compiled schema
                await create(i)
            out = await closed_loop(create, count=count, concurrency=CONCURRENCY, expected=201)
            if out.errors:
                raise RuntimeError(f"{name} creates failed: {out.errors}")
            rate = out.ok / out.elapsed
            results[f"{name}_create_per_s"] = round(rate)
            results[f"{name}_create_p99_ms"] = round(percentile(out.latencies, .99) * 1000, 2)
            label = "ConfigMap" if name == "configmap" else "custom resource (schema + CEL)"
            say(f"HTTP creates/s, {label}, {CONCURRENCY} clients, {count} objects",
                f"{rate:,.0f}/s  (p99 {results[f'{name}_create_p99_ms']} ms)")
    ratio = results["custom_create_per_s"] / results["configmap_create_per_s"]
    results["custom_vs_configmap"] = round(ratio, 3)
    say("custom resource / ConfigMap create rate", f"{ratio:.0%} (target >= 80%)")


# ---- 2. bundle apply ---------------------------------------------------------------------------
async def apply_bundle(server: RunningApiServer, bundle: Path, crds: int, *, server_side: bool) -> tuple[float, float]:
    """Seconds until ``kubectl apply`` returns, and until every CRD is Established."""
    async with session(server, 2) as s:
        started = time.monotonic()
        await asyncio.to_thread(kubectl, "apply", "-f", str(bundle), *(["--server-side"] if server_side else []),
                                kubeconfig=server.kubeconfig, timeout=300)
        applied = time.monotonic() - started
        await wait_established(s, crds)
        return applied, time.monotonic() - started


def bundle_path(workdir: Path, choice: str) -> tuple[Path, str]:
    if choice == "istio" or (choice == "auto" and ISTIO_BUNDLE.exists()):
        return ISTIO_BUNDLE, "Istio crd-all.gen.yaml"
    path = workdir / "synthetic-crds.yaml"
    path.write_text(synthetic_bundle())
    return path, "synthetic (bench/crd_bundle.py)"


def run(store: str, quick: bool, workdir: Path, bundle_choice: str = "auto") -> dict[str, Any]:
    results: dict[str, Any] = {"store": store}
    with contextlib.ExitStack() as stack:
        etcd = None
        if store == "etcd":
            etcd = EtcdServer(workdir / "etcd")
            etcd.start()
            stack.callback(etcd.stop)
        count = 300 if quick else 3000
        print(f"== {store}: creates", flush=True)
        with apiserver(store, workdir / "creates", etcd) as server:
            asyncio.run(create_rates(server, count, results))
        bundle, source = bundle_path(workdir, bundle_choice)
        text = bundle.read_text()
        crds = text.count("\nkind: CustomResourceDefinition") + text.startswith("kind: CustomResourceDefinition")
        results.update(bundle_source=source, bundle_bytes=len(text.encode()), bundle_crds=crds,
                       bundle_rules=rule_count(text))
        print(f"== {store}: bundle {source}: {crds} CRDs, {len(text.encode()) / 1e6:.2f} MB, "
              f"{results['bundle_rules']} rules", flush=True)
        if shutil.which("kubectl") is None and not Path("/usr/bin/kubectl").exists():
            say("bundle apply", "skipped: kubectl is not installed")
            return results
        for mode, server_side in (("client_side", False), ("server_side", True)):
            with apiserver(store, workdir / f"bundle-{mode}", etcd) as server:
                applied, ready = asyncio.run(apply_bundle(server, bundle, crds, server_side=server_side))
            results[f"bundle_{mode}_apply_s"] = round(applied, 2)
            results[f"bundle_{mode}_established_s"] = round(ready, 2)
            say(f"kubectl apply {'--server-side' if server_side else '(client-side)'}: returned / all Established",
                f"{applied:.2f} s / {ready:.2f} s (target <= 2 s)")
    return results


def print_summary(results: dict[str, Any]) -> None:
    print(f"\n== SUMMARY ({results['store']})")
    rows = [
        ("ConfigMap creates/s (16 clients)", f"{results['configmap_create_per_s']:,}/s", "-"),
        ("custom resource creates/s (16 clients)", f"{results['custom_create_per_s']:,}/s", "-"),
        ("custom / ConfigMap", f"{results['custom_vs_configmap']:.0%}",
         "ok" if results["custom_vs_configmap"] >= 0.8 else "MISS"),
    ]
    for mode in ("client_side", "server_side"):
        key = f"bundle_{mode}_established_s"
        if key in results:
            rows.append((f"bundle apply ({mode.replace('_', '-')}) to all Established", f"{results[key]:.2f} s",
                         "ok" if results[key] <= 2.0 else "MISS"))
    for label, value, verdict in rows:
        print(f"  {label:<48} {value:>12}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of under a minute")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--bundle", choices=("auto", "istio", "synthetic"), default="auto",
                        help=f"auto: Istio's when {ISTIO_BUNDLE} exists, else the synthetic one")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix=f"kubelab-bench-crd-{args.store}-"))
    try:
        results = run(args.store, args.quick, workdir, args.bundle)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_summary(results)
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
