"""Pod facts the scheduler reads, extracted once per pod version (``PodInfo``).

Built by the scheduler's informer handlers (:mod:`scheduler.scheduler`) and read by the cache, the
queue and every plugin, so a plugin never re-parses quantities or walks the pod dict per node.
Guarantees: requests follow Kubernetes' rule ``max(sum(containers), max(initContainers)) + overhead``
(a missing request defaults to the limit, as API defaulting does); the *non-zero* requests used for
scoring count 100m CPU / 200Mi memory for a container that requests nothing, as kube-scheduler does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from machinery.quantity import parse_quantity

DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@lru_cache(maxsize=4096)
def _milli(value: str | int | float) -> int:
    return parse_quantity(value).milli_value()


@lru_cache(maxsize=4096)
def _whole(value: str | int | float) -> int:
    return parse_quantity(value).value()


def milli_cpu(value: Any) -> int:
    """A CPU quantity in millicores (0 when absent or unparsable)."""
    if value is None:
        return 0
    try:
        return _milli(value)
    except ValueError:
        return 0


def whole_value(value: Any) -> int:
    """A memory/pods quantity as an integer (0 when absent or unparsable)."""
    if value is None:
        return 0
    try:
        return _whole(value)
    except ValueError:
        return 0


def normalize_image(name: str) -> str:
    """``nginx`` -> ``nginx:latest``; digests and explicit tags stay as written."""
    if "@" in name:
        return name
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def _container_requests(container: dict[str, Any]) -> tuple[int, int, int, int]:
    """(cpu milli, memory, non-zero cpu milli, non-zero memory) of one container."""
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    cpu_raw = requests.get("cpu", limits.get("cpu"))
    mem_raw = requests.get("memory", limits.get("memory"))
    cpu = milli_cpu(cpu_raw)
    mem = whole_value(mem_raw)
    return cpu, mem, cpu if cpu_raw is not None else DEFAULT_MILLI_CPU, mem if mem_raw is not None else DEFAULT_MEMORY


@dataclass(slots=True)
class PodInfo:
    """One pod version, reduced to what scheduling needs. ``obj`` is the informer's dict (read-only)."""

    obj: dict[str, Any]
    key: str
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    node_name: str
    scheduler_name: str
    priority: int
    cpu: int
    memory: int
    nonzero_cpu: int
    nonzero_memory: int
    images: tuple[str, ...]
    tolerations: list[dict[str, Any]]
    node_selector: dict[str, str]
    affinity: dict[str, Any]
    spread_constraints: list[dict[str, Any]]
    controller_uid: str
    terminal: bool
    deleting: bool
    preemption_never: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_required_anti_affinity(self) -> bool:
        anti = self.affinity.get("podAntiAffinity") or {}
        return bool(anti.get("requiredDuringSchedulingIgnoredDuringExecution"))


def pod_info(obj: dict[str, Any]) -> PodInfo:
    """Extract a :class:`PodInfo` from a pod dict."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    cpu = mem = nz_cpu = nz_mem = 0
    images: list[str] = []
    for container in spec.get("containers") or []:
        c, m, nc, nm = _container_requests(container)
        cpu, mem, nz_cpu, nz_mem = cpu + c, mem + m, nz_cpu + nc, nz_mem + nm
        if container.get("image"):
            images.append(normalize_image(str(container["image"])))
    for container in spec.get("initContainers") or []:
        c, m, nc, nm = _container_requests(container)
        cpu, mem, nz_cpu, nz_mem = max(cpu, c), max(mem, m), max(nz_cpu, nc), max(nz_mem, nm)
    overhead = spec.get("overhead") or {}
    if overhead:
        extra_cpu, extra_mem = milli_cpu(overhead.get("cpu")), whole_value(overhead.get("memory"))
        cpu, mem, nz_cpu, nz_mem = cpu + extra_cpu, mem + extra_mem, nz_cpu + extra_cpu, nz_mem + extra_mem
    controller = next((ref.get("uid", "") for ref in meta.get("ownerReferences") or [] if ref.get("controller")), "")
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    return PodInfo(
        obj=obj,
        key=f"{namespace}/{name}" if namespace else name,
        namespace=namespace,
        name=name,
        uid=str(meta.get("uid") or ""),
        labels=dict(meta.get("labels") or {}),
        node_name=str(spec.get("nodeName") or ""),
        scheduler_name=str(spec.get("schedulerName") or "default-scheduler"),
        priority=int(spec.get("priority") or 0),
        cpu=cpu,
        memory=mem,
        nonzero_cpu=nz_cpu,
        nonzero_memory=nz_mem,
        images=tuple(images),
        tolerations=list(spec.get("tolerations") or []),
        node_selector=dict(spec.get("nodeSelector") or {}),
        affinity=dict(spec.get("affinity") or {}),
        spread_constraints=list(spec.get("topologySpreadConstraints") or []),
        controller_uid=str(controller),
        terminal=status.get("phase") in TERMINAL_PHASES,
        deleting=bool(meta.get("deletionTimestamp")),
        preemption_never=spec.get("preemptionPolicy") == "Never",
    )
