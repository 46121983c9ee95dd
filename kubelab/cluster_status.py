"""``kubelab status``: the cluster's processes as the supervisor sees them, and whether it answers.

Prints the supervisor's table of components (:func:`kubelab.supervision.component_rows`), warns
when the supervisor itself is not running, probes the apiserver's ``/readyz`` with the admin
kubeconfig and, when kubelets run, counts the Ready nodes (:mod:`kubelab.readiness`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kubelab import launcher, supervision
from kubelab.cli_flags import add_state_dir
from kubelab.component_commands import APISERVER
from kubelab.output import print_table

__all__ = ["add_status_command", "cmd_status"]


def add_status_command(commands: Any) -> None:
    status = commands.add_parser("status", help="show the cluster's processes and apiserver readiness")
    add_state_dir(status)
    status.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    processes = launcher.list_processes(state_dir)
    if not processes and supervision.read_status(state_dir) is None:
        print(f"kubelab is not running (state dir {state_dir})")
        return 0
    print_table(supervision.component_rows(state_dir))
    if not any(p.name == supervision.SUPERVISOR and p.alive for p in processes):
        print("supervisor: not running, so components that exit stay down (kubelab up restores it)")

    apiserver = next((p for p in processes if p.name == APISERVER and p.alive), None)
    url = launcher.apiserver_url(state_dir)
    if apiserver is None or url is None:
        print("apiserver: not running")
        return 0
    context = launcher.apiserver_ssl_context(state_dir)
    if context is None:
        readyz = "kubeconfig not readable"
    else:
        code, body = launcher.probe_readyz(url, context)
        readyz = f"{code} {body}" if code is not None else f"unreachable ({body})"
    print(f"apiserver: {url}   readyz: {readyz}")
    if context is not None and any(p.name.startswith("kubelet") for p in processes):
        code, body = launcher.get_json(url, "/api/v1/nodes", context)
        if code == 200 and isinstance(body, dict):
            rows = launcher.node_rows(list(body.get("items") or []))
            ready = sum(1 for row in rows if row[1].startswith("Ready"))
            print(f"nodes: {ready}/{len(rows)} Ready")
    return 0
