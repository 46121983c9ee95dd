"""``kubelab down``: stop every process of a cluster, then remove what it made on Docker.

Processes stop in an order that keeps the cluster consistent to the end: the supervisor first
(it would restart the others), then the kubelets (they confirm pod deletions), the scheduler and
the controller-manager, the apiserver, its store last. Then the cluster's containers, pod
network and iptables chains go (:func:`kubelab.laptop.cleanup`), and ``down`` prints what it
removed. ``kubelab up`` uses :func:`give_up` and :func:`cleanup_cluster` to undo a start that failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kubelab import laptop, launcher, supervision
from kubelab.cli_flags import add_state_dir
from kubelab.component_commands import APISERVER, CONTROLLER_MANAGER, SCHEDULER
from kubelab.etcd import PROCESS_NAME as ETCD

__all__ = ["add_down_command", "cleanup_cluster", "cmd_down", "give_up", "stop_everything"]


def add_down_command(commands: Any) -> None:
    down = commands.add_parser("down", help="stop every process of the cluster")
    add_state_dir(down)
    down.set_defaults(handler=cmd_down)


def _stop_order(name: str) -> int:
    """The supervisor first (it would restart the others), then kubelets (they confirm pod
    deletions), controllers next, the apiserver, its store last."""
    if name == supervision.SUPERVISOR:
        return -1
    if name.startswith("kubelet"):
        return 0
    return {SCHEDULER: 1, CONTROLLER_MANAGER: 1, APISERVER: 2, ETCD: 3}.get(name, 1)


def stop_everything(state_dir: Path) -> list[str]:
    """Stop the supervisor, then every recorded process; forget the desired components.

    Returns what happened, a line per process.
    """
    lines = []
    for process in sorted(launcher.list_processes(state_dir), key=lambda p: (_stop_order(p.name), p.name)):
        outcome, pid = launcher.stop_process(state_dir, process.name)
        if outcome is launcher.StopOutcome.STALE:
            lines.append(f"{process.name} (pid {pid}) was not running; removed its stale pid file")
        elif outcome is not launcher.StopOutcome.NOT_RECORDED:
            lines.append(f"{outcome.value} {process.name} (pid {pid})")
    supervision.components_path(state_dir).unlink(missing_ok=True)
    supervision.status_path(state_dir).unlink(missing_ok=True)
    return lines


def give_up(state_dir: Path, name: str | None = None) -> None:
    """Undo a failed ``up``: stop ``name``, and the supervisor too if nothing else runs."""
    if name is not None:
        launcher.stop_process(state_dir, name, grace=5.0)
    if not any(p.alive and p.name != supervision.SUPERVISOR for p in launcher.list_processes(state_dir)):
        stop_everything(state_dir)


def cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    if not launcher.list_processes(state_dir):
        print("kubelab is not running (nothing to stop)")
        stop_everything(state_dir)
        cleanup_cluster(state_dir)
        return 0
    for line in stop_everything(state_dir):
        print(line)
    (state_dir / "apiserver.port").unlink(missing_ok=True)
    cleanup_cluster(state_dir)
    return 0


def cleanup_cluster(state_dir: Path) -> None:
    """Remove the cluster's containers, network and iptables chains; say what was removed."""
    cluster = laptop.cluster_name(state_dir)
    report = laptop.cleanup(cluster)
    if report.containers or report.networks or report.chains or report.problems:
        for line in report.lines(cluster):
            print(line)
