"""Apiserver benchmark: ``python bench/apiserver.py [--store sqlite|etcd|both] [--quick] [--phases P,..]``.

For each store it starts a real apiserver process (``kubelab.testing.start_apiserver``; for
etcd, first a real ``/usr/bin/etcd`` on free loopback ports via ``tests.etcd_server``), runs
the phases of :mod:`bench.phases` over HTTPS with keep-alive, prints every figure as it is
measured, and ends with one table comparing both stores with the targets. ``--profile DIR``
records a py-spy profile of the apiserver per phase (see :mod:`bench.hotspots`).
Every process it starts is stopped on exit, Ctrl-C or SIGTERM included.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory would come first on sys.path and "apiserver" would
# name this file instead of the package: put the repository root there instead.
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

from bench.phases import Bench, Sizes  # noqa: E402
from kubelab.testing import start_apiserver  # noqa: E402
from tests.etcd_server import EtcdServer  # noqa: E402


@dataclass(frozen=True)
class Target:
    """One row of the summary: a figure, its goal, and whether a value meets it."""

    label: str
    key: str
    goal: str
    met: Callable[[dict[str, Any]], bool | None]
    unit: str = ""


def _num(results: dict[str, Any], key: str) -> float | None:
    value = results.get(key)
    return float(value) if isinstance(value, int | float) else None


def _at_most(key: str, limit: float) -> Callable[[dict[str, Any]], bool | None]:
    def check(results: dict[str, Any]) -> bool | None:
        value = _num(results, key)
        return None if value is None else value <= limit
    return check


def _creates_met(results: dict[str, Any]) -> bool | None:
    rate, ratio = _num(results, "create_per_s"), _num(results, "create_vs_raw")
    if rate is None:
        return None
    if results.get("store") == "etcd":
        return ratio is not None and ratio >= 0.5
    return rate >= 1000


TARGETS = (
    Target("HTTP creates/s, 16 clients (ConfigMaps)", "create_per_s", "sqlite >=1000; etcd >=50% raw",
           _creates_met, "/s"),
    Target("raw store creates/s (16 tasks)", "raw_store_creates_per_s", "-", lambda r: None, "/s"),
    Target("HTTP / raw store create rate", "create_vs_raw", "etcd >= 0.5", lambda r: None),
    Target("create p50 @200/s open loop", "create_p50_ms", "-", lambda r: None, " ms"),
    Target("create p99 @200/s open loop", "create_p99_ms", "<= 25 ms", _at_most("create_p99_ms", 25), " ms"),
    Target("get p50 @200/s open loop", "get_p50_ms", "-", lambda r: None, " ms"),
    Target("get p99 @200/s open loop", "get_p99_ms", "<= 10 ms", _at_most("get_p99_ms", 10), " ms"),
    Target("list pods JSON, p50", "list_p50_ms", "<= 300 ms", _at_most("list_p50_ms", 300), " ms"),
    Target("list pods Table, p50", "list_table_p50_ms", "<= 300 ms", _at_most("list_table_p50_ms", 300), " ms"),
    Target("list pods rv=0 (cache), p50", "list_rv0_p50_ms", "-", lambda r: None, " ms"),
    Target("watch delay p50", "watch_p50_ms", "-", lambda r: None, " ms"),
    Target("watch delay p99", "watch_p99_ms", "<= 100 ms", _at_most("watch_p99_ms", 100), " ms"),
    Target("apiserver RSS idle", "rss_idle_mb", "-", lambda r: None, " MiB"),
    Target("apiserver RSS after pods", "rss_after_pods_mb", "<= 150 MB", _at_most("rss_after_pods_mb", 150),
           " MiB"),
    Target("apiserver RSS peak (watch phase)", "watch_apiserver_peak_rss_mb", "<= 150 MB",
           _at_most("watch_apiserver_peak_rss_mb", 150), " MiB"),
)


def _cell(results: dict[str, Any] | None, target: Target) -> str:
    if results is None:
        return "-"
    value = results.get(target.key)
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if isinstance(value, int | float) and abs(value) >= 100 else f"{value}"
    met = target.met(results)
    return f"{text}{target.unit}" + ("" if met is None else ("  ok" if met else "  MISS"))


def print_summary(all_results: dict[str, dict[str, Any]], sizes: Sizes) -> None:
    print(f"\n== SUMMARY ({sizes.creates} creates, {sizes.pods} pods, {sizes.watchers} watchers"
          f"{', quick' if sizes.creates != Sizes().creates else ''})")
    header = f"{'figure':<42} {'target':<30} {'sqlite':>18} {'etcd':>18}"
    print(header)
    print("-" * len(header))
    for t in TARGETS:
        print(f"{t.label:<42} {t.goal:<30} {_cell(all_results.get('sqlite'), t):>18} "
              f"{_cell(all_results.get('etcd'), t):>18}")
    for store, results in all_results.items():
        if "error" in results:
            print(f"{store}: FAILED: {results['error']}")


def run_store(store: str, sizes: Sizes, workdir: Path, profile_dir: Path | None) -> dict[str, Any]:
    """Start the store (etcd) and an apiserver on it, run every phase, stop both."""
    with contextlib.ExitStack() as stack:
        etcd_url = ""
        started = time.perf_counter()
        if store == "etcd":
            etcd = EtcdServer(workdir / "etcd")
            etcd.start()
            stack.callback(etcd.stop)
            etcd_url = etcd.client_url
        server = start_apiserver(workdir / "state", store=store, etcd_servers=[etcd_url] if etcd_url else None,
                                 etcd_prefix="/kubelab-bench" if etcd_url else "", timeout=60)
        stack.callback(server.stop)
        print(f"\n== {store}: apiserver ready in {time.perf_counter() - started:.1f} s", flush=True)
        bench = Bench(store=store, server=server.url, kubeconfig=server.kubeconfig, pid=server.pid, sizes=sizes,
                      workdir=workdir, etcd_url=etcd_url, profile_dir=profile_dir)
        try:
            asyncio.run(bench.run())
        except Exception as exc:
            tail = "\n".join(server.log_path.read_text(errors="replace").splitlines()[-15:])
            print(f"{store} run failed: {type(exc).__name__}: {exc}\n--- apiserver log tail ---\n{tail}", flush=True)
            bench.results["error"] = f"{type(exc).__name__}: {exc}"
        if any(key.endswith("_error") for key in bench.results):
            lines = [line for line in server.log_path.read_text(errors="replace").splitlines() if "rror" in line]
            tail = "\n".join(lines[-8:])
            print(f"--- apiserver log errors ({store}) ---\n{tail}", flush=True)
        bench.results["store"] = store
        return bench.results


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", choices=("sqlite", "etcd", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of under a minute")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--profile", type=Path, help="py-spy profile of each phase into this directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    parser.add_argument("--phases", default=",".join(Sizes().phases),
                        help="comma-separated subset of: %(default)s")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    sizes = Sizes.quick() if args.quick else Sizes()
    phases = tuple(name.strip() for name in args.phases.split(",") if name.strip())
    unknown = sorted(set(phases) - set(Sizes().phases))
    if unknown:
        parser.error(f"--phases: unknown phase(s) {', '.join(unknown)}; choose from {', '.join(Sizes().phases)}")
    sizes = dataclasses.replace(sizes, phases=phases)
    stores = ["sqlite", "etcd"] if args.store == "both" else [args.store]
    all_results: dict[str, dict[str, Any]] = {}
    failed = False
    for store in stores:
        workdir = Path(tempfile.mkdtemp(prefix=f"kubelab-bench-{store}-"))
        try:
            all_results[store] = run_store(store, sizes, workdir, args.profile)
        except KeyboardInterrupt:
            print("\ninterrupted; stopping", flush=True)
            return 130
        except Exception as exc:  # setup failed: report and go on with the other store
            failed = True
            all_results[store] = {"store": store, "error": f"{type(exc).__name__}: {exc}"}
            print(f"{store} run failed: {exc}", flush=True)
        finally:
            if args.keep:
                print(f"  work directory kept: {workdir}")
            else:
                import shutil

                shutil.rmtree(workdir, ignore_errors=True)
    failed = failed or any("error" in r for r in all_results.values())
    print_summary(all_results, sizes)
    if args.json:
        payload = {"sizes": sizes.__dict__, "results": all_results, "machine_cpus": _cpus()}
        args.json.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    return 1 if failed else 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
