"""Pod start with and without a sidecar, phase by phase: ``python bench/mesh_podstart.py [--pods 10]``.

One ``kubelab up --nodes 2`` cluster with meshd (extra ``kubelab up`` flags through ``--up``), two
namespaces: ``plain`` (no injection label) and ``meshed`` (``istio-injection=enabled``). Pods are
created one at a time, alternating between the namespaces (so both see the same machine load);
each is a busybox ``sleep`` pinned to node-1. For every pod the bench records, on the host's
clock:

* the create request and the moment a pod watch first shows ``Ready=True`` (create to Ready);
* the Docker engine's created/started/finished times of every container of the pod (the pause
  container, ``istio-init`` when injected, ``istio-proxy``, ``app``), found by the pod-uid label;
* when a watch first showed the sidecar ``started: true`` (its startup probe passed).

``--trace`` also prints, for every meshed pod, its timeline relative to the create request: the
containers' Docker times, the pod's events (failed startup probes show as ``Unhealthy``) and the
sidecar's log lines.

It prints p50/p90 of create-to-Ready per namespace and their ratio (target: meshed/plain <= 1.5),
then the median of each phase:

``scheduled+sandbox`` create -> pause container started; ``istio-init`` pause started -> init
finished; ``proxy-create`` previous step -> istio-proxy started; ``proxy-ready`` istio-proxy started
-> started=true seen; ``app-start`` -> app container started; ``ready`` app started -> Ready seen.

Every address is the cluster's own or 127.0.0.1; the cluster is torn down on exit.
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
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import Any  # noqa: E402

import docker  # noqa: E402

from bench.pod_startup import percentile  # noqa: E402
from kubelab import laptop  # noqa: E402
from kubelab.images import BUSYBOX, ensure_images  # noqa: E402
from machinery.client.rest import ApiClient  # noqa: E402
from machinery.resources import EVENTS, NAMESPACES, PODS  # noqa: E402
from tests.e2e.docker_harness import running_cluster  # noqa: E402

NAMESPACES_UNDER_TEST = {"plain": {}, "meshed": {"istio-injection": "enabled"}}
PHASES = ("scheduled+sandbox", "istio-init", "proxy-create", "proxy-ready", "app-start", "ready")


def _pod(name: str, ns: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "labels": {"bench": "start"}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-1"}, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}]}}


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _sidecar_started(pod: dict[str, Any]) -> bool:
    return any(s.get("name") == "istio-proxy" and s.get("started")
               for s in (pod.get("status") or {}).get("initContainerStatuses") or [])


def _epoch(value: str) -> float | None:
    """A Docker engine timestamp (RFC 3339 with nanoseconds) as epoch seconds."""
    if not value or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00").timestamp()
    return base + (float("0." + frac[:9]) if frac else 0.0)


class Watch:
    """One pod watch over both namespaces; wall-clock times of Ready and of the sidecar's start."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.ready: dict[str, float] = {}
        self.sidecar: dict[str, float] = {}
        self.uids: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self.client.list(PODS, label_selector="bench=start")
        self._task = asyncio.create_task(self._run(str(listed["metadata"]["resourceVersion"])))

    async def _run(self, version: str) -> None:
        async for event in self.client.watch(PODS, resource_version=version, label_selector="bench=start"):
            if event.type not in ("ADDED", "MODIFIED"):
                continue
            pod = event.object
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            self.uids[key] = str(pod["metadata"]["uid"])
            now = time.time()
            if _sidecar_started(pod):
                self.sidecar.setdefault(key, now)
            if _ready(pod):
                self.ready.setdefault(key, now)

    async def wait(self, key: str, timeout: float = 300.0) -> float:
        deadline = time.monotonic() + timeout
        while key not in self.ready:
            if time.monotonic() > deadline:
                raise SystemExit(f"{key} not Ready within {timeout:.0f} s")
            await asyncio.sleep(0.01)
        return self.ready[key]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _containers(engine: docker.DockerClient, uid: str) -> dict[str, dict[str, float | None]]:
    found: dict[str, dict[str, float | None]] = {}
    for container in engine.containers.list(all=True, filters={"label": f"io.kubernetes.pod.uid={uid}"}):
        name = container.labels.get("io.kubernetes.container.name", "?")
        state = container.attrs["State"]
        found[name] = {"created": _epoch(container.attrs["Created"]), "started": _epoch(state.get("StartedAt", "")),
                       "finished": _epoch(state.get("FinishedAt", ""))}
    return found


def _phases(created: float, ready: float, sidecar: float | None,
            containers: dict[str, dict[str, float | None]]) -> dict[str, float]:
    pause = next((v for k, v in containers.items() if k not in ("app", "istio-init", "istio-proxy")), None)
    app = containers.get("app", {})
    marks: list[tuple[str, float | None]] = [("scheduled+sandbox", pause["started"] if pause else None)]
    if "istio-init" in containers:
        marks.append(("istio-init", containers["istio-init"]["finished"]))
    if "istio-proxy" in containers:
        marks += [("proxy-create", containers["istio-proxy"]["started"]), ("proxy-ready", sidecar)]
    marks += [("app-start", app.get("started")), ("ready", ready)]
    phases: dict[str, float] = {}
    previous = created
    for name, at in marks:
        if at is not None:
            phases[name] = at - previous
            previous = at
    return phases


async def _trace(client: ApiClient, ns: str, name: str, created: float, ready: float, sidecar: float | None,
                 containers: dict[str, dict[str, float | None]]) -> None:
    lines: list[tuple[float | None, str]] = [(ready, "Ready seen")]
    if sidecar is not None:
        lines.append((sidecar, "istio-proxy started=true seen"))
    for container, times in containers.items():
        lines += [(at, f"{container} {what}") for what, at in times.items() if at is not None]
    events = await client.list(EVENTS, namespace=ns, field_selector=f"involvedObject.name={name}")
    for event in events["items"]:
        lines.append((None, f"event {event.get('reason')}: {event.get('message')}"))
    log = await client.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}/log",
                               params={"container": "istio-proxy", "timestamps": "true"})
    for line in str(log).splitlines()[:12]:
        stamp, _, text = line.partition(" ")
        lines.append((_epoch(stamp), "proxy: " + text[:110]))
    print(f"-- {ns}/{name}")
    for at, what in sorted(lines, key=lambda x: x[0] if x[0] is not None else float("inf")):
        print(f"  {'' if at is None else f'{(at - created) * 1000:7.0f} ms':>10}  {what}")


async def measure(kubeconfig: Path, engine: docker.DockerClient, pods: int, trace: bool = False) -> dict[str, Any]:
    client = ApiClient.from_kubeconfig(kubeconfig)
    async with client:
        for ns, labels in NAMESPACES_UNDER_TEST.items():
            await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": ns, "labels": labels}})
        watch = Watch(client)
        await watch.start()
        samples: dict[str, list[dict[str, Any]]] = {ns: [] for ns in NAMESPACES_UNDER_TEST}
        try:
            # One warm-up pod per namespace (image layers, first-CSR caches), not counted.
            for i in range(-1, pods):
                for ns in NAMESPACES_UNDER_TEST:
                    name = f"start-{i + 1}" if i >= 0 else "warmup"
                    key = f"{ns}/{name}"
                    created = time.time()
                    await client.create(PODS, _pod(name, ns), namespace=ns)
                    ready = await watch.wait(key)
                    if i < 0:
                        continue
                    containers = _containers(engine, watch.uids[key])
                    samples[ns].append({"total": ready - created, "phases": _phases(
                        created, ready, watch.sidecar.get(key), containers)})
                    if trace and ns == "meshed":
                        await _trace(client, ns, name, created, ready, watch.sidecar.get(key), containers)
        finally:
            await watch.stop()
    figures: dict[str, Any] = {"pods": pods}
    for ns, runs in samples.items():
        totals = [r["total"] for r in runs]
        figures[f"{ns}_p50_s"] = percentile(totals, 50)
        figures[f"{ns}_p90_s"] = percentile(totals, 90)
        figures[f"{ns}_phases_p50_s"] = {p: statistics.median(r["phases"][p] for r in runs if p in r["phases"])
                                         for p in PHASES if any(p in r["phases"] for r in runs)}
    figures["ratio_p50"] = figures["meshed_p50_s"] / figures["plain_p50_s"]
    figures["ratio_p90"] = figures["meshed_p90_s"] / figures["plain_p90_s"]
    return figures


def report(f: dict[str, Any]) -> None:
    print(f"== SUMMARY mesh pod start ({f['pods']} pods each, one at a time)")
    for ns in NAMESPACES_UNDER_TEST:
        phases = "  ".join(f"{p} {v * 1000:.0f}" for p, v in f[f"{ns}_phases_p50_s"].items())
        print(f"{ns:7} p50 {f[f'{ns}_p50_s']:.2f} s  p90 {f[f'{ns}_p90_s']:.2f} s   phases p50 (ms): {phases}")
    verdict = "met" if f["ratio_p50"] <= 1.5 else "MISSED"
    print(f"ratio   p50 {f['ratio_p50']:.2f}  p90 {f['ratio_p90']:.2f} (target <= 1.5: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pods", type=int, default=10, help="pods measured per namespace")
    parser.add_argument("--up", action="append", default=[], help="an extra `kubelab up` argument (repeatable)")
    parser.add_argument("--trace", action="store_true", help="print each meshed pod's timeline")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    engine = laptop.docker_client()
    ensure_images(engine, ["busybox", "python", "proxyv2"])
    with tempfile.TemporaryDirectory(prefix="kubelab-podstart-") as tmp, \
            running_cluster(Path(tmp) / "state", engine, "--nodes", "2", *args.up) as cluster:
        figures = asyncio.run(measure(cluster.kubeconfig, engine, args.pods, args.trace))
    figures["up_args"] = args.up
    print(json.dumps(figures), flush=True)
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
