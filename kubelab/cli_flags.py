"""Flags that several ``kubelab`` subcommands share, defined once so they read the same everywhere.

``--state-dir`` (every command that acts on a cluster), ``--store``/``--etcd-servers`` (``up``
and ``apiserver``), ``--kubeconfig``/``-v`` and ``--leader-elect`` (the components), and the
node lifecycle timings (``up`` passes them on to the controller-manager). Used by
:mod:`kubelab.cli` and the modules of each subcommand.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DEFAULT_STATE_DIR",
    "add_kubeconfig",
    "add_leader_elect",
    "add_node_lifecycle",
    "add_state_dir",
    "add_store",
]

DEFAULT_STATE_DIR = Path("~/.kubelab")


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="cluster state: PKI, kubeconfig, store, pid files and logs (default: ~/.kubelab)",
    )


def add_store(parser: argparse.ArgumentParser, choices: Sequence[str]) -> None:
    parser.add_argument("--store", choices=list(choices), default="sqlite", help="storage backend")
    parser.add_argument(
        "--etcd-servers",
        type=_comma_list,
        default=[],
        metavar="URLS",
        help="comma-separated etcd client URLs (with --store etcd)",
    )


def add_kubeconfig(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=Path, required=True, help="credentials and apiserver address")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")


def add_leader_elect(parser: argparse.ArgumentParser, *, default: bool) -> None:
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=default,
                        help="take a Lease in kube-system before acting, so only one replica acts")


def add_node_lifecycle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-monitor-grace-period", type=float, default=40.0, metavar="S",
                        help="seconds without a node heartbeat before the node is Ready=Unknown (default 40)")
    parser.add_argument("--pod-eviction-timeout", type=float, default=300.0, metavar="S",
                        help="seconds pods tolerate an unreachable/not-ready node before eviction (default 300)")
