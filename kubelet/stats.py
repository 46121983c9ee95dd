"""Container statistics for the kubelet's ``/stats/summary`` endpoint (Kubernetes' Summary API).

``kubelet.httpserver`` serves ``GET /stats/summary`` from a :class:`StatsProvider`; the apiserver's
metrics scraper (``apiserver.metrics_scraper``) reads it every 15 s to answer the
``metrics.k8s.io`` API, as metrics-server does. Only the fields metrics-server reads are filled:
for the node, each pod and each running container, ``cpu.usageNanoCores`` /
``usageCoreNanoSeconds`` and ``memory.workingSetBytes`` / ``usageBytes``, each with its sample
``time``.

Two providers:

* :class:`DockerStats` -- the node's running app containers (by their kubelab labels). CPU and
  memory come from the container's cgroup files (v2 ``cpu.stat`` / ``memory.current`` /
  ``memory.stat``, or v1 ``cpuacct.usage`` / ``memory.usage_in_bytes`` / ``memory.stat``), and
  from Docker's one-shot stats API when those files are not visible here. The CPU rate is the
  difference of the cumulative usage between two scrapes (the average since the start on the
  first); the working set is usage minus inactive file pages, as Kubernetes computes it. Blocking
  reads run in a worker thread. The node's own usage comes from ``/proc/stat`` and
  ``/proc/meminfo``.
* :class:`SimulatedStats` -- hollow nodes: plausible values, stable per container (derived from
  the pod's UID), or exactly what the pod's annotations say: ``kubelab.dev/fake-cpu: "250m"`` and
  ``kubelab.dev/fake-memory: "64Mi"`` (per pod, shared evenly by its running containers), read
  from the live pod so a test can change the load of a running pod.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kubelet.runtime.interface import ContainerState, ContainerStatus
from machinery.quantity import parse_quantity

Obj = dict[str, Any]

FAKE_CPU_ANNOTATION = "kubelab.dev/fake-cpu"
FAKE_MEMORY_ANNOTATION = "kubelab.dev/fake-memory"
_LABEL_CLUSTER = "kubelab.dev/cluster"
_LABEL_NODE = "kubelab.dev/node"
_LABEL_KIND = "kubelab.dev/kind"
_LABEL_POD_UID = "io.kubernetes.pod.uid"
_LABEL_NAMESPACE = "io.kubernetes.pod.namespace"
_LABEL_POD_NAME = "io.kubernetes.pod.name"
_LABEL_CONTAINER = "io.kubernetes.container.name"
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_MIN_RATE_INTERVAL = 1.0  # seconds: closer scrapes reuse the last rate


class StatsProvider(Protocol):
    """What ``/stats/summary`` is answered from."""

    async def summary(self) -> Obj: ...


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu(at: datetime, nano_cores: int, core_nanoseconds: int) -> Obj:
    return {"time": _time(at), "usageNanoCores": nano_cores, "usageCoreNanoSeconds": core_nanoseconds}


def _memory(at: datetime, working_set: int, usage: int) -> Obj:
    return {"time": _time(at), "workingSetBytes": working_set, "usageBytes": usage}


@dataclass(frozen=True)
class ContainerSample:
    """One container's usage at one moment."""

    namespace: str
    pod: str
    pod_uid: str
    container: str
    started: datetime | None
    nano_cores: int
    core_nanoseconds: int
    working_set: int
    usage: int


def summary_document(node: str, at: datetime, samples: list[ContainerSample], node_cpu: tuple[int, int],
                     node_memory: tuple[int, int], node_started: datetime | None = None) -> Obj:
    """The Summary API document (``node`` and ``pods`` with their containers)."""
    pods: dict[str, Obj] = {}
    for s in samples:
        pod = pods.setdefault(s.pod_uid, {
            "podRef": {"name": s.pod, "namespace": s.namespace, "uid": s.pod_uid},
            "startTime": _time(s.started or at), "containers": [],
            "cpu": _cpu(at, 0, 0), "memory": _memory(at, 0, 0)})
        pod["containers"].append({"name": s.container, "startTime": _time(s.started or at),
                                  "cpu": _cpu(at, s.nano_cores, s.core_nanoseconds),
                                  "memory": _memory(at, s.working_set, s.usage)})
        pod["cpu"]["usageNanoCores"] += s.nano_cores
        pod["cpu"]["usageCoreNanoSeconds"] += s.core_nanoseconds
        pod["memory"]["workingSetBytes"] += s.working_set
        pod["memory"]["usageBytes"] += s.usage
    return {"node": {"nodeName": node, "startTime": _time(node_started or at),
                     "cpu": _cpu(at, *node_cpu), "memory": _memory(at, *node_memory)},
            "pods": list(pods.values())}


# ---- hollow nodes ---------------------------------------------------------------------------
PodLookup = Callable[[str, str], Mapping[str, Any] | None]


class SimulatedRuntime(Protocol):
    """What :class:`SimulatedStats` reads of a hollow node's runtime (``kubelet.runtime.fake``)."""

    async def list_pod_uids(self) -> list[str]: ...

    def sandbox_pod(self, pod_uid: str) -> dict[str, Any] | None: ...

    async def list_containers(self, pod_uid: str) -> list[ContainerStatus]: ...


def _stable(seed: str, low: int, high: int) -> int:
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    return low + digest % (high - low + 1)


class SimulatedStats:
    """Plausible statistics of a hollow node's pods (see the module docstring)."""

    NODE_BASE_NANO_CORES = 50_000_000
    NODE_BASE_MEMORY = 256 * 1024 * 1024

    def __init__(self, node: str, runtime: SimulatedRuntime, pod_lookup: PodLookup | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.node = node
        self.runtime = runtime
        self.pod_lookup = pod_lookup
        self.clock = clock

    async def summary(self) -> Obj:
        at = self.clock()
        samples: list[ContainerSample] = []
        for uid in await self.runtime.list_pod_uids():
            pod = self.runtime.sandbox_pod(uid)
            if pod is None:
                continue
            meta = pod.get("metadata") or {}
            namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            live = self.pod_lookup(namespace, name) if self.pod_lookup is not None else None
            annotations = dict(((live or pod).get("metadata") or {}).get("annotations") or {})
            running = [c for c in await self.runtime.list_containers(uid) if c.state is ContainerState.RUNNING]
            if not running:
                continue
            cpu_milli = _milli(annotations.get(FAKE_CPU_ANNOTATION))
            memory_milli = _milli(annotations.get(FAKE_MEMORY_ANNOTATION))
            cpu_total = cpu_milli * 1_000_000 if cpu_milli is not None else None
            memory_total = memory_milli // 1000 if memory_milli is not None else None
            for c in running:
                seed = f"{uid}/{c.name}"
                nano = cpu_total // len(running) if cpu_total is not None else _stable(seed, 1, 5) * 1_000_000
                memory = (memory_total // len(running) if memory_total is not None
                          else _stable(seed + "/mem", 4, 24) * 1024 * 1024)
                started = c.started_at or at
                seconds = max((at - started).total_seconds(), 0.0)
                samples.append(ContainerSample(namespace, name, uid, c.name, c.started_at, nano,
                                               int(nano * seconds), memory, memory))
        node_nano = self.NODE_BASE_NANO_CORES + sum(s.nano_cores for s in samples)
        node_memory = self.NODE_BASE_MEMORY + sum(s.working_set for s in samples)
        return summary_document(self.node, at, samples, (node_nano, 0), (node_memory, node_memory))


def _milli(value: str | None) -> int | None:
    """The milli-value of an annotation's quantity (None when unset or not a quantity)."""
    if not value:
        return None
    try:
        return parse_quantity(str(value)).milli_value()
    except ValueError:
        return None


# ---- Docker nodes ---------------------------------------------------------------------------
@dataclass
class _Cumulative:
    core_nanoseconds: int
    monotonic: float
    nano_cores: int


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_stat(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                out[key] = int(value)
    except OSError:
        pass
    return out


def cgroup_usage(container_id: str, root: Path = _CGROUP_ROOT) -> tuple[int, int, int] | None:
    """(cumulative CPU ns, memory usage, working set) from the container's cgroup, or None."""
    for base in (root / "system.slice" / f"docker-{container_id}.scope", root / "docker" / container_id):
        usec = _read_stat(base / "cpu.stat").get("usage_usec")
        current = _read_int(base / "memory.current")
        if usec is not None and current is not None:
            inactive = _read_stat(base / "memory.stat").get("inactive_file", 0)
            return usec * 1000, current, max(current - inactive, 0)
    for parent in ("docker", f"system.slice/docker-{container_id}.scope"):
        leaf = container_id if parent == "docker" else ""
        cpu = _read_int(root / "cpuacct" / parent / leaf / "cpuacct.usage")
        memory_dir = root / "memory" / parent / leaf
        usage = _read_int(memory_dir / "memory.usage_in_bytes")
        if cpu is not None and usage is not None:
            inactive = _read_stat(memory_dir / "memory.stat").get("total_inactive_file", 0)
            return cpu, usage, max(usage - inactive, 0)
    return None


def api_usage(container: Any) -> tuple[int, int, int] | None:
    """The same from Docker's one-shot stats API (blocking)."""
    try:
        stats = container.stats(stream=False, one_shot=True)
    except Exception:  # the container went away, or an engine without one-shot stats
        return None
    cpu = int(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
    memory = stats.get("memory_stats") or {}
    usage = int(memory.get("usage") or 0)
    detail = memory.get("stats") or {}
    inactive = int(detail.get("inactive_file", detail.get("total_inactive_file", 0)) or 0)
    return cpu, usage, max(usage - inactive, 0)


def host_usage(proc: Path = Path("/proc")) -> tuple[int, int, int]:
    """The host's (cumulative CPU ns, memory in use, working set) from /proc."""
    fields = (proc / "stat").read_text().splitlines()[0].split()[1:]
    jiffies = [int(f) for f in fields]
    busy = sum(jiffies) - jiffies[3] - (jiffies[4] if len(jiffies) > 4 else 0)
    cpu_ns = busy * (10**9 // 100)  # USER_HZ is 100 on Linux
    info = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        info[key] = int(rest.split()[0]) * 1024 if rest.split() else 0
    used = info.get("MemTotal", 0) - info.get("MemAvailable", 0)
    return cpu_ns, used, used


class DockerStats:
    """Statistics of one node's containers on a Docker engine (see the module docstring)."""

    def __init__(self, client: Any, *, cluster: str, node: str, cgroup_root: Path = _CGROUP_ROOT) -> None:
        self.client = client
        self.node = node
        self.cgroup_root = cgroup_root
        self._filters = {"label": [f"{_LABEL_CLUSTER}={cluster}", f"{_LABEL_NODE}={node}"], "status": "running"}
        self._previous: dict[str, _Cumulative] = {}
        self._started = datetime.now(UTC)
        # The node's first rate is measured from here (a container's from its start).
        self._previous["node"] = _Cumulative(host_usage()[0], time.monotonic(), 0)

    async def summary(self) -> Obj:
        return await asyncio.to_thread(self._summary)

    def _rate(self, key: str, cumulative: int, since_start: float) -> int:
        now = time.monotonic()
        before = self._previous.get(key)
        if before is None:
            rate = int(cumulative / since_start) if since_start > 0 else 0
        elif now - before.monotonic < _MIN_RATE_INTERVAL:
            return before.nano_cores
        else:
            rate = max(int((cumulative - before.core_nanoseconds) / (now - before.monotonic)), 0)
        self._previous[key] = _Cumulative(cumulative, now, rate)
        return rate

    def _summary(self) -> Obj:
        at = datetime.now(UTC)
        samples: list[ContainerSample] = []
        seen: set[str] = {"node"}
        for container in self.client.containers.list(filters=self._filters, ignore_removed=True):
            labels = container.labels or {}
            if labels.get(_LABEL_KIND) == "sandbox" or not labels.get(_LABEL_CONTAINER):
                continue
            usage = cgroup_usage(container.id, self.cgroup_root) or api_usage(container)
            if usage is None:
                continue
            started = _started_at(container)
            since = (at - started).total_seconds() if started else 0.0
            cpu_ns, memory, working_set = usage
            seen.add(container.id)
            samples.append(ContainerSample(
                str(labels.get(_LABEL_NAMESPACE, "")), str(labels.get(_LABEL_POD_NAME, "")),
                str(labels.get(_LABEL_POD_UID, "")), str(labels[_LABEL_CONTAINER]), started,
                self._rate(container.id, cpu_ns, since), cpu_ns, working_set, memory))
        for gone in set(self._previous) - seen:
            del self._previous[gone]
        host_cpu, host_memory, host_working_set = host_usage()
        node_rate = self._rate("node", host_cpu, 0.0)
        return summary_document(self.node, at, samples, (node_rate, host_cpu), (host_working_set, host_memory),
                                self._started)


def _started_at(container: Any) -> datetime | None:
    text = str(((container.attrs or {}).get("State") or {}).get("StartedAt") or "")
    if not text or text.startswith("0001"):
        return None
    try:
        return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00" if "." in text else text.replace("Z", "+00:00"))
    except ValueError:
        return None
