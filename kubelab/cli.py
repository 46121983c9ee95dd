"""The ``kubelab`` command: its argument parser and :func:`main`, the entry point of the ``kubelab``
console script and of ``python -m kubelab``.

Thin by design: each subcommand lives in a module of its own that adds its flags to the parser
and handles the parsed arguments; :func:`main` resolves ``--state-dir`` and returns the
handler's exit code.

* ``up``, ``down``, ``status``: the cluster's lifecycle (:mod:`kubelab.cluster_up`,
  :mod:`kubelab.cluster_down`, :mod:`kubelab.cluster_status`);
* ``supervise``, ``apiserver``, ``scheduler``, ``controller-manager``, ``kubelet``: the cluster's
  processes, run in the foreground (:mod:`kubelab.component_cli`);
* ``image build|load|ls``: the registry-free ``kubelab/*`` images (:mod:`kubelab.image_cli`);
* ``mesh inject|proxy-status`` and ``meshd``: the service mesh (:mod:`kubelab.mesh_cli`);
* ``user add``: lab users (:mod:`kubelab.users`).

Flags shared by several subcommands are defined once in :mod:`kubelab.cli_flags`.
"""

from __future__ import annotations

import argparse

from kubelab.cli_flags import add_state_dir
from kubelab.cluster_down import add_down_command
from kubelab.cluster_status import add_status_command
from kubelab.cluster_up import add_up_command
from kubelab.component_cli import add_component_commands
from kubelab.image_cli import add_image_commands
from kubelab.mesh_cli import add_mesh_commands
from kubelab.users import add_user_commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubelab", description="A Kubernetes-compatible lab cluster.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_up_command(commands)
    add_down_command(commands)
    add_status_command(commands)
    add_component_commands(commands)
    add_image_commands(commands)
    add_mesh_commands(commands)
    add_user_commands(commands, add_state_dir)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``kubelab`` with ``argv`` (default: the process arguments); return the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "state_dir", None) is not None:
        args.state_dir = args.state_dir.expanduser().resolve()
    code: int = args.handler(args)
    return code
