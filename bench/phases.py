"""The measured phases of the apiserver benchmark, against one running apiserver process.

``bench.apiserver`` builds a :class:`Bench` per store and awaits :meth:`Bench.run`, which
fills ``Bench.results`` (flat ``name -> number``) and prints each figure as it is measured:
create throughput (16 clients, ConfigMaps) next to the raw store rate, open-loop create/get
latency, pods with status and their full list (JSON and Table), watch fan-out to watchers
in child processes, and the apiserver's RSS and CPU. All requests go over HTTPS with
keep-alive through one ``TCPConnector`` per phase, with its ``limit`` set to the concurrency.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from array import array
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.hotspots import Profiler
from bench.storage import raw_create_rate
from bench.watchers import WatcherReport, watcher_process
from bench.workload import (
    TABLE_ACCEPT,
    Outcome,
    ProcessSampler,
    closed_loop,
    configmap,
    open_loop,
    percentile,
    pod,
    pod_status,
    read_rss_mb,
)
from machinery.kubeconfig import load_kubeconfig

JSON = {"Content-Type": "application/json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@dataclass(frozen=True)
class Sizes:
    """How much load each phase applies (``--quick`` shrinks every one)."""

    creates: int = 5000
    latency_seconds: float = 10.0
    latency_rate: float = 200.0
    pods: int = 5000
    list_runs: int = 5
    watchers: int = 500
    watcher_processes: int = 2
    watch_rate: float = 100.0
    watch_seconds: float = 10.0
    raw_creates: int = 5000
    phases: tuple[str, ...] = ("creates", "latency", "pods", "watch")
    """Which phases run (``--phases``); the RSS figures are taken whichever run."""

    @staticmethod
    def quick() -> Sizes:
        return Sizes(creates=1000, latency_seconds=3.0, pods=500, list_runs=3, watchers=50,
                     watcher_processes=1, watch_seconds=3.0, raw_creates=1000)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def say(label: str, value: str) -> None:
    print(f"  {label:<58} {value}", flush=True)


class Bench:
    """One store's run: ``server`` is the apiserver URL, ``pid`` its process."""

    def __init__(self, *, store: str, server: str, kubeconfig: Path, pid: int, sizes: Sizes, workdir: Path,
                 etcd_url: str = "", profile_dir: Path | None = None) -> None:
        self.store = store
        self.server = server
        self.kubeconfig = kubeconfig
        self.pid = pid
        self.sizes = sizes
        self.workdir = workdir
        self.etcd_url = etcd_url
        self.ssl = load_kubeconfig(kubeconfig).ssl_context()
        self.sampler = ProcessSampler(pid)
        self.profiler = Profiler(pid, profile_dir, prefix=store) if profile_dir else None
        self.results: dict[str, Any] = {}

    @asynccontextmanager
    async def session(self, limit: int) -> AsyncIterator[aiohttp.ClientSession]:
        connector = aiohttp.TCPConnector(limit=limit, ssl=self.ssl)
        async with aiohttp.ClientSession(self.server, connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            yield session

    @asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        """Mark a phase: CPU and peak RSS of the apiserver over it, and its py-spy profile."""
        mark = self.sampler.begin()
        if self.profiler:
            self.profiler.start(name)
        try:
            yield
        finally:
            if self.profiler:
                await self.profiler.stop()
            self.results[f"{name}_apiserver_cpu_pct"] = round(self.sampler.cpu_percent(mark), 1)
            self.results[f"{name}_apiserver_peak_rss_mb"] = round(self.sampler.peak_mb, 1)
            say(f"[{name}] apiserver CPU / peak RSS",
                f"{self.results[f'{name}_apiserver_cpu_pct']:.0f}% of a core / {self.sampler.peak_mb:.1f} MiB")

    def _record(self, name: str, out: Outcome) -> None:
        if out.errors:
            self.results[f"{name}_errors"] = out.errors
            say(f"{name} errors", str(out.errors))

    async def run(self) -> dict[str, Any]:
        self.sampler.start()
        try:
            print(f"== store {self.store}: apiserver pid {self.pid} at {self.server}", flush=True)
            async with self.session(4) as s:
                for ns in ("bench", "x", "w"):
                    async with s.post("/api/v1/namespaces", json={"metadata": {"name": ns}}) as r:
                        if r.status not in (201, 409):
                            raise RuntimeError(f"creating namespace {ns}: {r.status} {await r.text()}")
            await asyncio.sleep(1.0)
            self.results["rss_idle_mb"] = round(read_rss_mb(self.pid), 1)
            say("apiserver RSS at idle", f"{self.results['rss_idle_mb']:.1f} MiB")
            if "creates" in self.sizes.phases:
                await self.creates()
            if "latency" in self.sizes.phases:
                await self.latency()
            if "pods" in self.sizes.phases:
                await self.pods_and_list()
                self.results["rss_after_pods_mb"] = round(read_rss_mb(self.pid), 1)
                say(f"apiserver RSS after {self.sizes.pods} pods", f"{self.results['rss_after_pods_mb']:.1f} MiB")
            if "watch" in self.sizes.phases:
                await self.watch_fanout()
            self.results["rss_final_mb"] = round(read_rss_mb(self.pid), 1)
            self.results["rss_peak_mb"] = max(v for k, v in self.results.items() if k.endswith("_rss_mb"))
            say("apiserver peak RSS over the run", f"{self.results['rss_peak_mb']:.1f} MiB")
        finally:
            await self.sampler.stop()
        return self.results

    # ---- 1. create throughput ---------------------------------------------------------------
    async def creates(self) -> None:
        n = self.sizes.creates
        raw = await raw_create_rate(self.store, workdir=self.workdir, etcd_url=self.etcd_url,
                                    count=self.sizes.raw_creates)
        self.results["raw_store_creates_per_s"] = round(raw)
        say(f"raw {self.store} store creates/s (16 tasks, same durability)", f"{raw:,.0f}")
        async with self.session(16) as s:
            async def create(i: int) -> int:
                async with s.post("/api/v1/namespaces/bench/configmaps", data=orjson.dumps(configmap(f"cm-{i}")),
                                  headers=JSON) as r:
                    await r.read()
                    return r.status

            await create(-1)  # warm-up: the connection and the first admission
            async with self.phase("create"):
                out = await closed_loop(create, count=n, concurrency=16, expected=201)
        rate = out.ok / out.elapsed
        self.results["create_per_s"] = round(rate)
        self.results["create_vs_raw"] = round(rate / raw, 3) if raw else None
        self._record("create", out)
        say(f"HTTP creates/s (ConfigMaps, 16 clients, {n} objects)", f"{rate:,.0f}")
        say("  closed-loop p50 / p99", f"{_ms(percentile(out.latencies, .5))} / "
            f"{_ms(percentile(out.latencies, .99))} ms")
        say("HTTP create rate / raw store rate", f"{rate / raw:.1%}" if raw else "n/a")

    # ---- 2. open-loop latency ---------------------------------------------------------------
    async def latency(self) -> None:
        rate, secs = self.sizes.latency_rate, self.sizes.latency_seconds
        async with self.session(100) as s:
            async def create(i: int) -> int:
                async with s.post("/api/v1/namespaces/bench/configmaps",
                                  data=orjson.dumps(configmap(f"lat-{i}")), headers=JSON) as r:
                    await r.read()
                    return r.status

            async def get(i: int) -> int:
                async with s.get(f"/api/v1/namespaces/bench/configmaps/cm-{i % self.sizes.creates}") as r:
                    await r.read()
                    return r.status

            for verb, fn, code in (("create", create, 201), ("get", get, 200)):
                async with self.phase(f"latency_{verb}"):
                    out = await open_loop(fn, rate=rate, duration=secs, expected=code)
                self._record(f"latency_{verb}", out)
                p50, p99 = percentile(out.latencies, .5), percentile(out.latencies, .99)
                self.results[f"{verb}_p50_ms"], self.results[f"{verb}_p99_ms"] = _ms(p50), _ms(p99)
                say(f"{verb} latency at open-loop {rate:.0f}/s for {secs:.0f} s: p50 / p99 / max",
                    f"{_ms(p50)} / {_ms(p99)} / {_ms(max(out.latencies, default=0))} ms ({out.ok} ok)")

    # ---- 3. pods and their list -------------------------------------------------------------
    async def pods_and_list(self) -> None:
        n = self.sizes.pods
        async with self.session(16) as s:
            async def create(i: int) -> int:
                async with s.post("/api/v1/namespaces/x/pods", data=orjson.dumps(pod(f"web-{i:05d}", i)),
                                  headers=JSON) as r:
                    await r.read()
                    return r.status

            async def set_status(i: int) -> int:
                async with s.patch(f"/api/v1/namespaces/x/pods/web-{i:05d}/status",
                                   data=orjson.dumps({"status": pod_status(i)}), headers=MERGE_PATCH) as r:
                    await r.read()
                    return r.status

            async with self.phase("pods"):
                made = await closed_loop(create, count=n, concurrency=16, expected=201)
                patched = await closed_loop(set_status, count=n, concurrency=16, expected=200)
            self._record("pod_create", made)
            self._record("pod_status", patched)
            self.results["pod_create_per_s"] = round(made.ok / made.elapsed)
            self.results["pod_status_patch_per_s"] = round(patched.ok / patched.elapsed)
            say(f"pod creates/s, then status merge-patches/s ({n} pods, 16 clients)",
                f"{made.ok / made.elapsed:,.0f}, {patched.ok / patched.elapsed:,.0f}")
            async with s.get("/api/v1/namespaces/x/pods/web-00000") as r:
                self.results["pod_bytes"] = len(await r.read())
            say("one pod as JSON", f"{self.results['pod_bytes']} bytes")

            variants: tuple[tuple[str, str, dict[str, str]], ...] = (
                ("list", "", {}), ("list_table", "", {"Accept": TABLE_ACCEPT}), ("list_rv0", "?resourceVersion=0", {}))
            async with self.phase("list"):
                for name, query, headers in variants:
                    times, size, count = [], 0, 0
                    for _ in range(self.sizes.list_runs):
                        started = time.perf_counter()
                        async with s.get(f"/api/v1/namespaces/x/pods{query}", headers=headers) as r:
                            body = await r.read()
                        times.append(time.perf_counter() - started)
                        if r.status != 200:
                            break
                        size = len(body)
                    if r.status != 200:
                        self.results[f"{name}_error"] = f"HTTP {r.status}: {body[:200].decode(errors='replace')}"
                        say(f"{name.replace('_', ' ')} FAILED", self.results[f"{name}_error"])
                        continue
                    doc = orjson.loads(body)
                    count = len(doc.get("items") or doc.get("rows") or [])
                    self.results[f"{name}_p50_ms"] = _ms(percentile(times, .5))
                    say(f"{name.replace('_', ' ')} of {count} pods ({size / 1e6:.1f} MB): p50 of "
                        f"{len(times)} / min", f"{_ms(percentile(times, .5))} / {_ms(min(times))} ms")

    # ---- 4. watch fan-out -------------------------------------------------------------------
    async def watch_fanout(self) -> None:
        z = self.sizes
        ctx = multiprocessing.get_context("spawn")
        per = [z.watchers // z.watcher_processes + (1 if i < z.watchers % z.watcher_processes else 0)
               for i in range(z.watcher_processes)]
        pipes, procs = [], []
        loop = asyncio.get_running_loop()
        try:
            for i, count in enumerate(per):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=watcher_process, name=f"bench-watchers-{i}",
                                   args=(self.server, str(self.kubeconfig),
                                         "/api/v1/namespaces/w/configmaps?watch=true", count, child))
                proc.start()
                child.close()
                pipes.append(parent)
                procs.append(proc)
            connected = failed = 0
            for p in pipes:
                _, ok, bad = await loop.run_in_executor(None, p.recv)
                connected, failed = connected + ok, failed + bad
            say(f"watchers connected ({len(procs)} client processes)", f"{connected} ok, {failed} failed")
            async with self.session(32) as s:
                async def write(i: int) -> int:
                    body = configmap(f"w-{i}", annotations={"bench/sent": f"{time.time():.6f}"})
                    async with s.post("/api/v1/namespaces/w/configmaps", data=orjson.dumps(body),
                                      headers=JSON) as r:
                        await r.read()
                        return r.status

                async with self.phase("watch"):
                    out = await open_loop(write, rate=z.watch_rate, duration=z.watch_seconds, expected=201)
                    await asyncio.sleep(2.0)
                    for p in pipes:
                        p.send("stop")
                    reports: list[WatcherReport] = []
                    for p in pipes:
                        _, report = await loop.run_in_executor(None, p.recv)
                        reports.append(report)
            self._record("watch_writes", out)
            self._watch_results(out, reports, connected)
        finally:
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)

    def _watch_results(self, writes: Outcome, reports: list[WatcherReport], connected: int) -> None:
        delays: array[float] = array("d")
        for r in reports:
            delays.frombytes(r.delays)
        expected = writes.ok * connected
        p50, p99 = percentile(delays, .5), percentile(delays, .99)
        self.results.update({
            "watch_p50_ms": _ms(p50), "watch_p99_ms": _ms(p99), "watch_events": len(delays),
            "watch_events_expected": expected, "watchers": connected,
            "watch_client_cpu_pct": [round(100 * r.cpu_seconds / r.wall_seconds, 1) for r in reports],
        })
        say(f"watch: {writes.ok} writes at {self.sizes.watch_rate:.0f}/s to {connected} watchers",
            f"{len(delays):,} of {expected:,} events delivered")
        say("watch delivery delay p50 / p99 / max", f"{_ms(p50)} / {_ms(p99)} / {_ms(max(delays, default=0))} ms")
        say("watch client processes CPU (% of a core each)", str(self.results["watch_client_cpu_pct"]))
        ended = sum(r.ended_early for r in reports)
        if ended:
            self.results["watch_streams_ended_early"] = ended
            say("watch streams the server closed early", str(ended))
