"""The ``kubelab`` command: ``up``, ``down``, ``status`` and the cluster's processes themselves
(``apiserver``, ``scheduler``, ``controller-manager``, ``kubelet``).

Entry point of the ``kubelab`` console script and of ``python -m kubelab``. Thin by design:
flags become settings, the work is done by :mod:`kubelab.launcher` (processes),
:mod:`kubelab.etcd` (a local etcd) and each component's ``server.run`` (imported lazily, so
``kubelab down`` never pays for loading a server). Returns a process exit code.

``kubelab up --hollow-nodes N`` also starts the scheduler, the controller-manager and one
``kubelab kubelet --hollow --count N`` process (nodes ``hollow-node-1`` .. ``hollow-node-N``),
each with its own client certificate (``system:kube-scheduler``,
``system:kube-controller-manager``, ``system:node:hollow-node`` in ``system:nodes``).

``kubelab image build|load|ls`` builds and lists the registry-free ``kubelab/*`` images
(:mod:`kubelab.images`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apiserver.settings import ApiServerSettings
from kubelab import launcher
from kubelab.etcd import EtcdNotInstalledError, ensure_local_etcd
from kubelet.settings import KubeletSettings, parse_labels, parse_taint

__all__ = ["build_parser", "main"]

APISERVER = "apiserver"
ETCD = "etcd"
SCHEDULER = "scheduler"
CONTROLLER_MANAGER = "controller-manager"
HOLLOW_KUBELET = "kubelet-hollow"
HOLLOW_NODE_PREFIX = "hollow-node"
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
    up.add_argument("--hollow-nodes", type=int, default=0, metavar="N",
                    help="also start the scheduler, the controller-manager and N hollow nodes")
    _add_node_lifecycle(up)
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
    _add_components(commands)
    _add_image_commands(commands)
    return parser


def _add_kubeconfig(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=Path, required=True, help="credentials and apiserver address")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")


def _add_leader_elect(parser: argparse.ArgumentParser, *, default: bool) -> None:
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=default,
                        help="take a Lease in kube-system before acting, so only one replica acts")


def _add_node_lifecycle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-monitor-grace-period", type=float, default=40.0, metavar="S",
                        help="seconds without a node heartbeat before the node is Ready=Unknown (default 40)")
    parser.add_argument("--pod-eviction-timeout", type=float, default=300.0, metavar="S",
                        help="seconds pods tolerate an unreachable/not-ready node before eviction (default 300)")


def _taint(value: str) -> dict[str, Any]:
    try:
        return parse_taint(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _labels(value: str) -> dict[str, str]:
    try:
        return parse_labels(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_components(commands: Any) -> None:
    scheduler = commands.add_parser(SCHEDULER, help="run the scheduler in the foreground")
    _add_kubeconfig(scheduler)
    scheduler.add_argument("--config", type=Path, default=None, metavar="FILE",
                           help="KubeSchedulerConfiguration-shaped profile file")
    _add_leader_elect(scheduler, default=False)
    scheduler.add_argument("--metrics-port", type=int, default=0, metavar="N",
                           help="serve /metrics and /healthz on 127.0.0.1:N (0: off)")
    scheduler.set_defaults(handler=cmd_scheduler)

    manager = commands.add_parser(CONTROLLER_MANAGER, help="run the controller-manager in the foreground")
    _add_kubeconfig(manager)
    _add_leader_elect(manager, default=True)
    _add_node_lifecycle(manager)
    manager.set_defaults(handler=cmd_controller_manager)

    kubelet = commands.add_parser("kubelet", help="run a node agent (or many hollow nodes) in the foreground")
    _add_kubeconfig(kubelet)
    kubelet.add_argument("--node-name", required=True,
                         help="node name; with --hollow the prefix of <name>-1 .. <name>-<count>")
    kubelet.add_argument("--hollow", action="store_true", help="simulate containers (fake runtime)")
    kubelet.add_argument("--count", type=int, default=1, help="hollow nodes this process runs (default 1)")
    kubelet.add_argument("--taint", type=_taint, action="append", default=[], metavar="KEY=VALUE:EFFECT",
                         help="register the node with this taint (repeatable)")
    kubelet.add_argument("--labels", type=_labels, default={}, metavar="K=V,...", help="extra node labels")
    kubelet.add_argument("--cpu", default="4", help="node cpu capacity (default 4)")
    kubelet.add_argument("--memory", default="8Gi", help="node memory capacity (default 8Gi)")
    kubelet.add_argument("--pods", type=int, default=110, help="node pod capacity (default 110)")
    kubelet.add_argument("--node-lease-renew-interval", type=float, default=10.0, metavar="S",
                         help="seconds between node lease renewals (default 10)")
    kubelet.add_argument("--crash-loop-base-delay", type=float, default=10.0, metavar="S",
                         help="first CrashLoopBackOff delay, doubling to 5 min (default 10)")
    kubelet.add_argument("--fake-start-delay", type=float, default=0.1, metavar="S",
                         help="hollow nodes: seconds from container start to running (default 0.1)")
    kubelet.set_defaults(handler=cmd_kubelet)


def main(argv: list[str] | None = None) -> int:
    """Run ``kubelab`` with ``argv`` (default: the process arguments); return the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "state_dir", None) is not None:
        args.state_dir = args.state_dir.expanduser().resolve()
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
        code = _up_components(args)
        if code == 0:
            _print_usage(state_dir)
        return code

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
    code = _up_components(args)
    if code == 0:
        _print_usage(state_dir)
    return code


def _ensure_running(state_dir: Path, name: str, argv: list[str]) -> launcher.ManagedProcess:
    running = launcher.read_process(state_dir, name)
    if running is not None and running.alive:
        print(f"{name} already running (pid {running.pid})")
        return running
    process = launcher.start_process(state_dir, name, argv)
    print(f"started {name} (pid {process.pid}), log: {launcher.log_path(state_dir, name)}")
    return process


def _up_components(args: argparse.Namespace) -> int:
    """Start the scheduler, the controller-manager and the hollow kubelet; wait for Ready nodes."""
    count: int = args.hollow_nodes
    if count <= 0:
        return 0
    state_dir: Path = args.state_dir
    try:
        scheduler_kc = launcher.component_kubeconfig(state_dir, SCHEDULER, user="system:kube-scheduler")
        manager_kc = launcher.component_kubeconfig(state_dir, CONTROLLER_MANAGER,
                                                   user="system:kube-controller-manager")
        kubelet_kc = launcher.component_kubeconfig(state_dir, HOLLOW_KUBELET,
                                                   user=f"system:node:{HOLLOW_NODE_PREFIX}", groups=["system:nodes"])
    except launcher.NotReadyError as exc:
        print(f"kubelab up failed: {exc}", file=sys.stderr)
        return 1
    lifecycle = ["--node-monitor-grace-period", f"{args.node_monitor_grace_period:g}",
                 "--pod-eviction-timeout", f"{args.pod_eviction_timeout:g}"]
    processes = [
        _ensure_running(state_dir, SCHEDULER, launcher.component_command(SCHEDULER, kubeconfig=scheduler_kc)),
        _ensure_running(state_dir, CONTROLLER_MANAGER, launcher.component_command(
            CONTROLLER_MANAGER, kubeconfig=manager_kc, extra_args=lifecycle)),
        _ensure_running(state_dir, HOLLOW_KUBELET, launcher.kubelet_command(
            kubeconfig=kubelet_kc, node_name=HOLLOW_NODE_PREFIX, hollow=True, count=count,
            # Leases renew well within the (possibly lab-shortened) grace period, as 10 s is to 40 s.
            extra_args=["--node-lease-renew-interval", f"{min(10.0, args.node_monitor_grace_period / 4):g}"])),
    ]
    print(f"waiting for {count} node(s) to be Ready ...")
    try:
        nodes = launcher.wait_nodes_ready(state_dir, count=count, timeout=args.timeout, watch=processes)
    except launcher.NotReadyError as exc:
        print(f"kubelab up failed: {exc}", file=sys.stderr)
        for process in processes:
            if not launcher.is_alive(process.pid, process.start_time):
                _print_log_tail(state_dir, process.name)
        return 1
    _print_table([("NAME", "STATUS", "VERSION"), *launcher.node_rows(nodes)])
    return 0


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _stop_order(name: str) -> int:
    """Kubelets first (they confirm pod deletions), controllers next, the apiserver, its store last."""
    if name.startswith("kubelet"):
        return 0
    return {SCHEDULER: 1, CONTROLLER_MANAGER: 1, APISERVER: 2, ETCD: 3}.get(name, 1)


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
    _print_table(rows)

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


def cmd_apiserver(args: argparse.Namespace) -> int:
    # Lazy: only the apiserver process pays for loading the server.
    from apiserver.server import run

    _configure_logging(args.verbose)
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


def _configure_logging(verbose: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cmd_scheduler(args: argparse.Namespace) -> int:
    from scheduler.server import run
    from scheduler.settings import SchedulerSettings

    _configure_logging(args.verbose)
    run(SchedulerSettings(kubeconfig=args.kubeconfig.expanduser(), config=args.config,
                          leader_elect=args.leader_elect, metrics_port=args.metrics_port))
    return 0


def cmd_controller_manager(args: argparse.Namespace) -> int:
    from controllers.server import run
    from controllers.settings import ControllerManagerSettings

    _configure_logging(args.verbose)
    toleration = int(args.pod_eviction_timeout)
    run(ControllerManagerSettings(
        kubeconfig=args.kubeconfig.expanduser(),
        leader_elect=args.leader_elect,
        node_monitor_grace_period=args.node_monitor_grace_period,
        pod_eviction_timeout=args.pod_eviction_timeout,
        default_not_ready_toleration_seconds=toleration,
        default_unreachable_toleration_seconds=toleration,
    ))
    return 0


def kubelet_settings(args: argparse.Namespace) -> KubeletSettings:
    """The :class:`kubelet.settings.KubeletSettings` of parsed ``kubelab kubelet`` flags."""
    return KubeletSettings(
        kubeconfig=args.kubeconfig.expanduser(), node_name=args.node_name, hollow=args.hollow, count=args.count,
        labels=dict(args.labels), taints=list(args.taint), cpu=args.cpu, memory=args.memory, pods=args.pods,
        lease_renew_interval=args.node_lease_renew_interval, crash_loop_base_delay=args.crash_loop_base_delay,
        fake_start_delay=args.fake_start_delay,
    )


def cmd_kubelet(args: argparse.Namespace) -> int:
    from kubelet.server import run

    _configure_logging(args.verbose)
    if args.count < 1 or (args.count > 1 and not args.hollow):
        print("kubelab kubelet: --count needs --hollow and must be at least 1", file=sys.stderr)
        return 2
    run(kubelet_settings(args))
    return 0


# --- kubelab image: build/load/list the registry-free images (kubelab/images.py) ---------------------------


def _add_image_commands(commands: Any) -> None:
    image = commands.add_parser("image", help="build, load and list the kubelab/* container images (no registry)")
    verbs = image.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    build = verbs.add_parser("build", help="build images locally (default: all); existing tags are kept")
    build.add_argument("names", nargs="*", metavar="NAME", help="busybox, python, nginx (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    build.set_defaults(handler=cmd_image_build)
    load = verbs.add_parser("load", help="load images from a `docker save` tar")
    load.add_argument("file", type=Path, metavar="FILE")
    load.set_defaults(handler=cmd_image_load)
    ls = verbs.add_parser("ls", help="list the kubelab/* images")
    ls.set_defaults(handler=cmd_image_ls)


def _docker_client() -> Any:
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"cannot reach the Docker engine: {exc}", file=sys.stderr)
        return None
    return client


def _run_image_command(action: Any) -> int:
    from kubelab.images import ImageBuildError

    client = _docker_client()
    if client is None:
        return 1
    try:
        code: int = action(client)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return code


def cmd_image_build(args: argparse.Namespace) -> int:
    from kubelab import images

    def build(client: Any) -> int:
        images.ensure_images(client, args.names or list(images.IMAGES), force=args.force,
                             progress=lambda line: print(line, flush=True))
        return 0

    return _run_image_command(build)


def cmd_image_load(args: argparse.Namespace) -> int:
    from kubelab import images

    def load(client: Any) -> int:
        for tag in images.load(client, args.file):
            print(f"Loaded image: {tag}")
        return 0

    return _run_image_command(load)


def cmd_image_ls(args: argparse.Namespace) -> int:
    from kubelab import images

    def ls(client: Any) -> int:
        rows = [("REPOSITORY", "TAG", "IMAGE ID", "SIZE")]
        for info in images.list_images(client):
            repository, _, tag = info.tag.rpartition(":")
            rows.append((repository, tag, info.id[:12], f"{info.size / 1e6:.1f}MB"))
        _print_table(rows)
        return 0

    return _run_image_command(ls)
