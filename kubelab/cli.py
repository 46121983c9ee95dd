"""The ``kubelab`` command: ``up``, ``down``, ``status`` and the ``apiserver`` process itself.

Entry point of the ``kubelab`` console script and of ``python -m kubelab``. Thin by design:
flags become settings, the work is done by :mod:`kubelab.launcher` (processes),
:mod:`kubelab.etcd` (a local etcd) and ``apiserver.server.run`` (imported lazily, so
``kubelab down`` never pays for loading the apiserver). Returns a process exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from apiserver.settings import ApiServerSettings
from kubelab import launcher
from kubelab.etcd import EtcdNotInstalledError, ensure_local_etcd

__all__ = ["build_parser", "main"]

APISERVER = "apiserver"
ETCD = "etcd"
DEFAULT_STATE_DIR = Path("~/.kubelab")


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="cluster state: PKI, kubeconfig, store, pid files and logs (default: ~/.kubelab)",
    )


def _add_store(parser: argparse.ArgumentParser, choices: Sequence[str]) -> None:
    parser.add_argument("--store", choices=list(choices), default="sqlite", help="storage backend")
    parser.add_argument(
        "--etcd-servers",
        type=_comma_list,
        default=[],
        metavar="URLS",
        help="comma-separated etcd client URLs (with --store etcd)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubelab", description="A Kubernetes-compatible lab cluster.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the cluster in the background and wait until it is ready")
    _add_state_dir(up)
    _add_store(up, ["sqlite", "etcd"])
    up.add_argument("--port", type=int, default=6443, help="apiserver HTTPS port (default 6443)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    up.set_defaults(handler=cmd_up)

    down = commands.add_parser("down", help="stop every process of the cluster")
    _add_state_dir(down)
    down.set_defaults(handler=cmd_down)

    status = commands.add_parser("status", help="show the cluster's processes and apiserver readiness")
    _add_state_dir(status)
    status.set_defaults(handler=cmd_status)

    apiserver = commands.add_parser("apiserver", help="run the API server in the foreground")
    _add_state_dir(apiserver)
    _add_store(apiserver, ["sqlite", "etcd", "memory"])
    apiserver.add_argument("--etcd-prefix", default="", help="prefix of every etcd key")
    apiserver.add_argument("--bind-address", default="127.0.0.1", help="address to listen on")
    apiserver.add_argument("--port", type=int, default=6443, help="HTTPS port; 0 picks a free one")
    apiserver.add_argument("--watch-cache-events", type=int, default=1_000,
                           help="events each resource's watch cache keeps for resuming watches")
    apiserver.add_argument("--compaction-interval", type=float, default=300.0,
                           help="seconds between storage compactions")
    apiserver.add_argument("--compaction-keep", type=int, default=10_000,
                           help="revisions a compaction keeps (the watch resume window)")
    apiserver.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")
    apiserver.set_defaults(handler=cmd_apiserver)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``kubelab`` with ``argv`` (default: the process arguments); return the exit code."""
    args = build_parser().parse_args(argv)
    state_dir: Path = args.state_dir.expanduser().resolve()
    args.state_dir = state_dir
    code: int = args.handler(args)
    return code


def _progress(elapsed: float, last: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\rwaiting for the apiserver to be ready ... {elapsed:4.0f}s ({last[:60]})\033[K")
        sys.stderr.flush()


def _print_log_tail(state_dir: Path, name: str) -> None:
    tail = launcher.log_tail(state_dir, name)
    print(f"last lines of {launcher.log_path(state_dir, name)}:", file=sys.stderr)
    for line in tail or ["(empty)"]:
        print(f"  {line}", file=sys.stderr)


def _print_usage(state_dir: Path) -> None:
    print(f"  export KUBECONFIG={state_dir / 'kubeconfig'}")
    print("  kubectl get ns")


def cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    running = launcher.read_process(state_dir, APISERVER)
    if running is not None and running.alive:
        try:
            url = launcher.wait_apiserver_ready(
                state_dir, pid=running.pid, start_time=running.start_time, timeout=args.timeout
            )
        except launcher.NotReadyError as exc:
            print(f"kubelab is running but not ready: {exc}", file=sys.stderr)
            _print_log_tail(state_dir, APISERVER)
            return 1
        print(f"kubelab is already running (apiserver pid {running.pid}, {url})")
        _print_usage(state_dir)
        return 0

    etcd_servers: list[str] = args.etcd_servers
    if args.store == "etcd" and not etcd_servers:
        try:
            etcd = ensure_local_etcd(state_dir)
        except EtcdNotInstalledError as exc:
            print(exc, file=sys.stderr)
            return 1
        except RuntimeError as exc:
            print(f"could not start etcd: {exc}", file=sys.stderr)
            return 1
        verb = "started" if etcd.started else "reusing"
        print(f"{verb} etcd (pid {etcd.pid}, {etcd.client_url})")
        etcd_servers = [etcd.client_url]

    # A port file left by an earlier run would point the readiness probe at a dead port.
    (state_dir / "apiserver.port").unlink(missing_ok=True)
    argv = launcher.apiserver_command(state_dir=state_dir, store=args.store, etcd_servers=etcd_servers, port=args.port)
    process = launcher.start_process(state_dir, APISERVER, argv)
    print(f"started apiserver (pid {process.pid}), log: {launcher.log_path(state_dir, APISERVER)}")
    if not sys.stderr.isatty():
        print("waiting for the apiserver to be ready ...")
    try:
        url = launcher.wait_apiserver_ready(
            state_dir,
            pid=process.pid,
            start_time=process.start_time,
            timeout=args.timeout,
            progress=_progress,
        )
    except launcher.NotReadyError as exc:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        print(f"kubelab up failed: {exc}", file=sys.stderr)
        _print_log_tail(state_dir, APISERVER)
        launcher.stop_process(state_dir, APISERVER, grace=5.0)
        return 1
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"kubelab is up: apiserver at {url} (store {args.store})")
    _print_usage(state_dir)
    return 0


def _stop_order(name: str) -> int:
    """Dependents first, the apiserver next, its store last."""
    return {APISERVER: 1, ETCD: 2}.get(name, 0)


def cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    processes = sorted(launcher.list_processes(state_dir), key=lambda p: (_stop_order(p.name), p.name))
    if not processes:
        print("kubelab is not running (nothing to stop)")
        return 0
    for process in processes:
        outcome, pid = launcher.stop_process(state_dir, process.name)
        if outcome is launcher.StopOutcome.STALE:
            print(f"{process.name} (pid {pid}) was not running; removed its stale pid file")
        elif outcome is not launcher.StopOutcome.NOT_RECORDED:
            print(f"{outcome.value} {process.name} (pid {pid})")
    (state_dir / "apiserver.port").unlink(missing_ok=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    processes = launcher.list_processes(state_dir)
    if not processes:
        print(f"kubelab is not running (state dir {state_dir})")
        return 0
    rows = [("COMPONENT", "PID", "STATUS")]
    rows += [(p.name, str(p.pid), "Running" if p.alive else "NotRunning (stale pid file)") for p in processes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

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
    return 0


def cmd_apiserver(args: argparse.Namespace) -> int:
    # Lazy: only the apiserver process pays for loading the server.
    from apiserver.server import run

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = ApiServerSettings(
        state_dir=args.state_dir,
        store=args.store,
        etcd_prefix=args.etcd_prefix,
        bind_address=args.bind_address,
        port=args.port,
        watch_cache_events=args.watch_cache_events,
        compaction_interval_seconds=args.compaction_interval,
        compaction_keep_revisions=args.compaction_keep,
    )
    if args.etcd_servers:
        settings.etcd_servers = list(args.etcd_servers)
    run(settings)
    return 0
