"""Settings of the ``kubelab scheduler`` process (filled by the CLI, read by :mod:`scheduler.server`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SchedulerSettings:
    kubeconfig: Path
    """Kubeconfig used to reach the apiserver (its current context)."""

    config: Path | None = None
    """Optional scheduler config file (YAML/JSON, KubeSchedulerConfiguration-shaped); None: defaults."""

    leader_elect: bool = False
    """Take the ``kube-system/<lease_name>`` Lease before scheduling, so only one replica acts."""

    lease_name: str = "kube-scheduler"
    """The Lease used for leader election."""

    metrics_port: int = 0
    """Port for /metrics and /healthz on 127.0.0.1; 0 turns the server off."""

    percentage_of_nodes_to_score: int | None = None
    """Stop filtering after this % of nodes were found feasible; None/0: Kubernetes' adaptive default."""

    bind_concurrency: int = 32
    """Binding requests in flight at once."""

    identity: str = ""
    """Leader-election identity; empty: ``<hostname>_<random>``."""
