"""Settings of the controller-manager process (``kubelab controller-manager``).

Built by the CLI from flags and read by ``controllers.manager`` and by every controller
(node lifecycle reads the grace periods and tolerations; every controller builds its workqueue
with :meth:`ControllerManagerSettings.workqueue`). A plain dataclass: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from machinery.client.workqueue import RateLimitingQueue


def _default_workers() -> dict[str, int]:
    return {
        "replicaset": 5,
        "deployment": 5,
        "garbagecollector": 20,
        "endpoints": 5,
        "nodelifecycle": 1,
        "namespace": 10,
        "serviceaccount": 1,
        "podgc": 1,
    }


@dataclass
class ControllerManagerSettings:
    """Everything the controller-manager needs; defaults are Kubernetes' defaults."""

    kubeconfig: Path | None = None
    """Kubeconfig with the controller-manager's credentials (admin kubeconfig is fine for labs)."""

    leader_elect: bool = True
    """Take a Lease before running controllers, so only one of several managers acts."""

    lease_name: str = "kube-controller-manager"
    """Name of the coordination.k8s.io Lease used for leader election."""

    lease_namespace: str = "kube-system"
    """Namespace of that Lease."""

    identity: str = ""
    """Leader-election identity; empty means ``<hostname>_<random>``."""

    lease_duration: float = 15.0
    """Seconds a non-renewed lease stays valid (Kubernetes' --leader-elect-lease-duration)."""

    renew_deadline: float = 10.0
    """Seconds the leader keeps trying to renew before giving up (--leader-elect-renew-deadline)."""

    retry_period: float = 2.0
    """Seconds between acquire/renew attempts (--leader-elect-retry-period)."""

    workers: dict[str, int] = field(default_factory=_default_workers)
    """Concurrent ``sync`` workers per controller name (e.g. ``{"replicaset": 5}``)."""

    controllers: tuple[str, ...] = ("*",)
    """Controllers to run, by name; ``*`` means all of them (like --controllers)."""

    node_monitor_grace_period: float = 40.0
    """Seconds without a node heartbeat before the node is marked ``Ready=Unknown``."""

    node_monitor_period: float = 5.0
    """Seconds between checks of node heartbeats."""

    pod_eviction_timeout: float = 300.0
    """Default toleration (seconds) for the not-ready / unreachable NoExecute taints."""

    default_not_ready_toleration_seconds: int = 300
    """tolerationSeconds added for ``node.kubernetes.io/not-ready:NoExecute``."""

    default_unreachable_toleration_seconds: int = 300
    """tolerationSeconds added for ``node.kubernetes.io/unreachable:NoExecute``."""

    terminated_pod_gc_threshold: int = 12500
    """Terminated pods kept before pod GC deletes the oldest."""

    horizontal_pod_autoscaler_sync_period: float = 15.0
    """Seconds between two syncs of one HorizontalPodAutoscaler (--horizontal-pod-autoscaler-sync-period)."""

    horizontal_pod_autoscaler_tolerance: float = 0.1
    """How far the usage ratio may stray from 1.0 before the HPA acts (--horizontal-pod-autoscaler-tolerance)."""

    horizontal_pod_autoscaler_downscale_stabilization: float = 300.0
    """Scale-down stabilization window (seconds) of HPAs that set none
    (--horizontal-pod-autoscaler-downscale-stabilization)."""

    horizontal_pod_autoscaler_cpu_initialization_period: float = 300.0
    """Seconds after a pod starts during which its CPU samples are skipped unless it is Ready and sampled
    since (--horizontal-pod-autoscaler-cpu-initialization-period)."""

    horizontal_pod_autoscaler_initial_readiness_delay: float = 30.0
    """Seconds after a pod starts during which readiness changes count as its initial readiness
    (--horizontal-pod-autoscaler-initial-readiness-delay)."""

    resync_seconds: float = 30.0
    """Informer resync period: every cached object is handed to the controllers' update handlers
    again (old == new), so each controller re-syncs every key it owns this often and heals whatever
    an event it missed or a failure left behind. kube-controller-manager resyncs every 12-24 h;
    a lab heals within half a minute instead (a sync that changes nothing writes nothing).
    0 disables periodic resyncs."""

    retry_base_delay: float = 0.005
    """Seconds before the first retry of a key whose sync failed; each further failure doubles it
    (client-go's default controller rate limiter). A failing key is retried until it succeeds."""

    retry_max_delay: float = 1000.0
    """Upper bound (seconds) of that per-key backoff (client-go: 1000 s)."""

    retry_qps: float = 10.0
    """Overall rate of retries per controller (token bucket; client-go: 10 qps, burst 100)."""

    retry_burst: int = 100
    """Burst of that overall retry bucket."""

    port: int = 0
    """Port for ``/healthz`` and ``/metrics`` on 127.0.0.1; 0 turns the endpoint off."""

    qps: float = 0.0
    """Client-side rate limit on API requests (0 = unlimited)."""

    burst: int = 0
    """Client-side burst for ``qps``."""

    storage_dir: Path = field(default_factory=lambda: Path.home() / ".kubelab" / "storage")
    """Where the local-path provisioner keeps volume directories (``kubelab up``: ``<state-dir>/storage``)."""

    def workers_for(self, name: str, default: int = 1) -> int:
        """How many workers the controller called ``name`` runs."""
        return max(1, self.workers.get(name, default))

    def workqueue(self, name: str) -> RateLimitingQueue:
        """The rate-limited workqueue of controller ``name``, with the retry settings above."""
        return RateLimitingQueue(name=name, base_delay=self.retry_base_delay, max_delay=self.retry_max_delay,
                                 qps=self.retry_qps, burst=self.retry_burst)

    def enabled(self, name: str) -> bool:
        """Whether controller ``name`` is selected by ``controllers`` (``*``, ``name``, ``-name``)."""
        if f"-{name}" in self.controllers:
            return False
        return "*" in self.controllers or name in self.controllers
