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

``kubelab up --nodes N`` (default 2; 0 when ``--hollow-nodes`` is given) runs real nodes on Docker:
it refuses to start without a reachable Docker engine (printing what to install/run, never
installing), builds the base image on first use, creates the pod network ``kubelab-<cluster>``
(:mod:`kubelab.laptop`: the cluster name, pod subnet and service range derive from the state dir)
and starts ``kubelab kubelet`` ``node-1`` .. ``node-N`` (credentials ``system:node:node-i``; node ``i``
has its own InternalIP and /24 pod CIDR in the pod subnet, :mod:`kubelet.network.node_address`).
All nodes share one Docker engine and so the host's netfilter: only ``node-1`` runs the network
agent role, i.e. the service proxy (iptables, once for the whole cluster) and the cluster DNS,
bound to the pod network's gateway IP, which every pod gets as its nameserver (Docker's embedded
DNS at 127.0.0.11 forwards to it). ``up`` waits for Ready nodes and an answering DNS.
``kubelab down`` stops the processes, then removes the cluster's containers, network and
iptables chains (:func:`kubelab.laptop.cleanup`) and prints what it removed.

``kubelab image build|load|ls`` builds and lists the registry-free ``kubelab/*`` images
(:mod:`kubelab.images`).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apiserver.settings import ApiServerSettings
from kubelab import laptop, launcher, supervision
from kubelab.etcd import EtcdNotInstalledError, ensure_local_etcd
from kubelab.image_cli import add_image_commands
from kubelab.mesh_cli import add_mesh_commands, start_meshd
from kubelab.output import print_table
from kubelab.users import add_user_commands
from kubelet.settings import KubeletSettings, parse_labels, parse_taint

__all__ = ["build_parser", "main"]

APISERVER = "apiserver"
ETCD = "etcd"
SCHEDULER = "scheduler"
CONTROLLER_MANAGER = "controller-manager"
HOLLOW_KUBELET = "kubelet-hollow"
HOLLOW_NODE_PREFIX = "hollow-node"
NODE_PREFIX = "node"
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
    up.add_argument("--log-max-mib", type=float, default=10.0, metavar="MIB",
                    help="rotate a component log to <name>.log.1 past this size (default 10)")
    up.add_argument("--nodes", type=int, default=None, metavar="N",
                    help="real nodes on Docker: N kubelets node-1..node-N (default 2, or 0 with --hollow-nodes)")
    up.add_argument("--hollow-nodes", type=int, default=0, metavar="N",
                    help="also start the scheduler, the controller-manager and N hollow nodes")
    up.add_argument("--pod-subnet", default=None, metavar="CIDR",
                    help="subnet of the Docker pod network (default 10.244.0.0/16 for ~/.kubelab)")
    up.add_argument("--service-cidr", default=None, metavar="CIDR",
                    help="ClusterIP range (default 10.96.0.0/12 for ~/.kubelab)")
    up.add_argument("--no-mesh", action="store_true", help="do not start the mesh control plane (kubelab meshd)")
    _add_node_lifecycle(up)
    up.set_defaults(handler=cmd_up)

    down = commands.add_parser("down", help="stop every process of the cluster")
    _add_state_dir(down)
    down.set_defaults(handler=cmd_down)

    status = commands.add_parser("status", help="show the cluster's processes and apiserver readiness")
    _add_state_dir(status)
    status.set_defaults(handler=cmd_status)

    supervise = commands.add_parser(
        "supervise", help="run the cluster's supervisor in the foreground (kubelab up starts it)")
    _add_state_dir(supervise)
    supervise.add_argument("--log-max-bytes", type=int, default=10 * 1024 * 1024, metavar="N",
                           help="rotate a component log to <name>.log.1 past N bytes (default 10 MiB)")
    supervise.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")
    supervise.set_defaults(handler=cmd_supervise)

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
    apiserver.add_argument("--service-cidr", default=None, metavar="CIDR", help="ClusterIP range")
    apiserver.add_argument("--allowed-networks", default="", metavar="CIDR,...",
                           help="networks the apiserver may dial (kubelets) besides loopback and the service CIDR")
    apiserver.add_argument("--advertise-address", default="", metavar="IP",
                           help="where pods reach the apiserver (also listened on; the kubernetes Service's endpoint)")
    apiserver.add_argument("--default-not-ready-toleration-seconds", type=int, default=300, metavar="S",
                           help="tolerationSeconds of the not-ready toleration added to every pod")
    apiserver.add_argument("--default-unreachable-toleration-seconds", type=int, default=300, metavar="S",
                           help="tolerationSeconds of the unreachable toleration added to every pod")
    apiserver.add_argument("--authorization-mode", choices=["Node,RBAC", "RBAC", "AlwaysAllow"],
                           default="Node,RBAC",
                           help="who may do what: the Node authorizer then RBAC (default), RBAC alone, or AlwaysAllow")
    apiserver.add_argument("--metric-resolution", type=float, default=15.0, metavar="S",
                           help="seconds between two scrapes of the kubelets' statistics (metrics.k8s.io)")
    apiserver.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")
    apiserver.set_defaults(handler=cmd_apiserver)
    _add_components(commands)
    add_image_commands(commands)
    add_mesh_commands(commands)
    add_user_commands(commands, _add_state_dir)
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
    manager.add_argument("--storage-dir", type=Path, default=None, metavar="DIR",
                         help="local-path volume directories (default ~/.kubelab/storage)")
    manager.add_argument("--horizontal-pod-autoscaler-sync-period", type=float, default=15.0, metavar="S",
                         help="seconds between two syncs of one HorizontalPodAutoscaler (default 15)")
    manager.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", type=float, default=300.0,
                         metavar="S", help="scale-down window of HPAs that set none (default 300)")
    manager.set_defaults(handler=cmd_controller_manager)

    kubelet = commands.add_parser("kubelet", help="run a node agent (or many hollow nodes) in the foreground")
    _add_kubeconfig(kubelet)
    kubelet.add_argument("--node-name", required=True,
                         help="node name; with --hollow the prefix of <name>-1 .. <name>-<count>")
    kubelet.add_argument("--hollow", action="store_true", help="simulate containers (fake runtime)")
    kubelet.add_argument("--count", type=int, default=1, help="hollow nodes this process runs (default 1)")
    kubelet.add_argument("--node-index-offset", type=int, default=0, metavar="N",
                         help="first node index (addresses and pod CIDRs) of this process (default 0)")
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
    _add_real_kubelet(kubelet)
    kubelet.set_defaults(handler=cmd_kubelet)


def _add_real_kubelet(kubelet: argparse.ArgumentParser) -> None:
    """Flags of a Docker-backed (non-hollow) node; see :class:`kubelet.settings.KubeletSettings`."""
    kubelet.add_argument("--cluster-name", default="kubelab", help="label/network/chain name of the cluster")
    kubelet.add_argument("--pod-subnet", default="10.244.0.0/16", metavar="CIDR", help="pod network subnet")
    kubelet.add_argument("--node-ip", default="", metavar="IP",
                         help="the node's InternalIP on the pod network (default: from --node-index-offset)")
    kubelet.add_argument("--pod-cidr", default="", metavar="CIDR",
                         help="the node's spec.podCIDR, its pods' IPs (default: from --node-index-offset)")
    kubelet.add_argument("--root-dir", type=Path, default=None, metavar="DIR",
                         help="kubelet state (pod volumes); default ~/.kubelab/kubelet")
    kubelet.add_argument("--pki-dir", type=Path, default=None, metavar="DIR",
                         help="cluster PKI; with it the kubelet serves HTTPS logs/exec")
    kubelet.add_argument("--server-port", type=int, default=0, metavar="N", help="kubelet HTTPS port (0: free)")
    kubelet.add_argument("--network-agent", action=argparse.BooleanOptionalAction, default=False,
                         help="run the service proxy (iptables) on this node (one node per cluster)")
    kubelet.add_argument("--run-dns", action="store_true", help="serve cluster DNS from this node")
    kubelet.add_argument("--dns-ip", default="", metavar="IP", help="cluster DNS address given to pods")
    kubelet.add_argument("--dns-port", type=int, default=53, metavar="N", help="cluster DNS port (with --run-dns)")


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
    print("next steps:")
    print(f"  export KUBECONFIG={state_dir / 'kubeconfig'}")
    print("  kubectl get nodes")
    print("  kubectl create deployment web --image=kubelab/busybox:1.35 --replicas=3 -- httpd -f -p 8080")
    print("  kubectl expose deployment web --port=80 --target-port=8080")
    print("  kubectl run client --image=kubelab/busybox:1.35 -- sleep 3600")
    print("  kubectl exec client -- wget -qO- http://web")
    default = state_dir == DEFAULT_STATE_DIR.expanduser().resolve()
    print("  kubelab down" + ("" if default else f" --state-dir {state_dir}"))


def cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if args.nodes is None:
        args.nodes = 0 if args.hollow_nodes else 2
    if args.nodes > 0 and _prepare_docker(args) != 0:
        return 1
    try:
        supervisor, started = supervision.ensure_supervisor(
            state_dir, extra_args=["--log-max-bytes", str(int(args.log_max_mib * 1024 * 1024))])
    except supervision.SupervisorError as exc:
        print(f"kubelab up failed: {exc}", file=sys.stderr)
        return 1
    if started:
        print(f"started supervisor (pid {supervisor.pid}), log: {launcher.log_path(state_dir, supervision.SUPERVISOR)}")

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
        if APISERVER not in supervision.read_components(state_dir)[1]:
            _, etcd_servers = _local_etcd(args)  # reused as it runs (an up from before supervision)
            supervision.register(state_dir, APISERVER, _pinned_port(_apiserver_argv(args, etcd_servers), url))
        code = _up_components(args)
        if code == 0:
            _print_usage(state_dir)
        return code

    code, etcd_servers = _local_etcd(args)
    if code != 0:
        _give_up(state_dir)
        return code
    recorded = supervision.read_components(state_dir)[1].get(APISERVER)
    if recorded is None:
        # A port file left by an earlier run would point the readiness probe at a dead port.
        (state_dir / "apiserver.port").unlink(missing_ok=True)
    argv = recorded or _apiserver_argv(args, etcd_servers)
    try:
        process, _ = supervision.ensure_component(state_dir, APISERVER, argv)
    except supervision.SupervisorError as exc:
        print(f"kubelab up failed: {exc}", file=sys.stderr)
        return 1
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
        _give_up(state_dir, APISERVER)
        if args.nodes > 0:
            _cleanup_cluster(state_dir)  # the pod network made by _prepare_docker
        return 1
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    # Restarts must come back where every kubeconfig points: pin a port picked by "--port 0".
    supervision.register(state_dir, APISERVER, _pinned_port(argv, url))
    print(f"kubelab is up: apiserver at {url} (store {args.store})")
    code = _up_components(args)
    if code == 0:
        _print_usage(state_dir)
    return code


def _local_etcd(args: argparse.Namespace) -> tuple[int, list[str]]:
    """(exit code, etcd servers): a supervised local member for ``--store etcd`` without servers."""
    etcd_servers: list[str] = args.etcd_servers
    if args.store != "etcd" or etcd_servers:
        return 0, etcd_servers
    state_dir: Path = args.state_dir

    def start(name: str, argv: Sequence[str]) -> launcher.ManagedProcess:
        return supervision.ensure_component(state_dir, name, argv)[0]

    try:
        etcd = ensure_local_etcd(state_dir, start=start)
    except EtcdNotInstalledError as exc:
        print(exc, file=sys.stderr)
        return 1, []
    except (RuntimeError, supervision.SupervisorError) as exc:
        print(f"could not start etcd: {exc}", file=sys.stderr)
        return 1, []
    verb = "started" if etcd.started else "reusing"
    print(f"{verb} etcd (pid {etcd.pid}, {etcd.client_url})")
    return 0, [etcd.client_url]


def _apiserver_argv(args: argparse.Namespace, etcd_servers: list[str]) -> list[str]:
    service_cidr = args.service_cidr or laptop.default_service_cidr(args.state_dir)
    return launcher.apiserver_command(state_dir=args.state_dir, store=args.store, etcd_servers=etcd_servers,
                                      port=args.port,
                                      extra_args=["--service-cidr", service_cidr,
                                                  "--allowed-networks", args.pod_subnet if args.nodes > 0 else "",
                                                  "--advertise-address", args.dns_ip if args.nodes > 0 else "",
                                                  *_toleration_args(args)])


def _toleration_args(args: argparse.Namespace) -> list[str]:
    """Pods tolerate a failed node as long as the (possibly lab-shortened) pod eviction timeout."""
    seconds = str(math.ceil(float(getattr(args, "pod_eviction_timeout", 300.0))))
    return ["--default-not-ready-toleration-seconds", seconds, "--default-unreachable-toleration-seconds", seconds]


def _pinned_port(argv: Sequence[str], url: str) -> list[str]:
    """``argv`` with ``--port`` set to the port of ``url`` (the one the apiserver listens on)."""
    pinned = list(argv)
    at = pinned.index("--port")
    pinned[at + 1] = url.rsplit(":", 1)[1]
    return pinned


def _ensure_running(state_dir: Path, name: str, argv: list[str]) -> launcher.ManagedProcess:
    try:
        process, started = supervision.ensure_component(state_dir, name, argv)
    except supervision.SupervisorError as exc:
        raise launcher.NotReadyError(str(exc)) from exc
    if started:
        print(f"started {name} (pid {process.pid}), log: {launcher.log_path(state_dir, name)}")
    else:
        print(f"{name} already running (pid {process.pid})")
    return process


def _prepare_docker(args: argparse.Namespace) -> int:
    """Docker nodes need the engine (never installed here), the base images and the pod network."""
    problem = laptop.docker_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    from kubelab.images import ImageBuildError, ensure_images
    from kubelet.network.node_address import max_node_slots

    cluster = laptop.cluster_name(args.state_dir)
    client = laptop.docker_client()
    try:
        ensure_images(client, ["busybox"], progress=lambda line: print(f"image: {line}", flush=True))
        wanted = args.pod_subnet or laptop.default_pod_subnet(args.state_dir, laptop.docker_subnets(client))
        args.pod_subnet, args.dns_ip = laptop.ensure_pod_network(client, cluster, wanted)
        room = max_node_slots(args.pod_subnet)
        if args.nodes > room:
            print(f"kubelab up failed: the pod network {args.pod_subnet} has room for {room} node(s) "
                  f"(a /24 each), not {args.nodes}", file=sys.stderr)
            return 1
    except ImageBuildError as exc:
        print(f"kubelab up failed: cannot build the base images: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the docker SDK's errors: overlapping subnet, daemon gone ...
        print(f"kubelab up failed: cannot create the pod network of cluster {cluster}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"cluster {cluster}: pod network {args.pod_subnet}, cluster DNS at {args.dns_ip}:{laptop.DNS_PORT}")
    return 0


def _docker_kubelets(args: argparse.Namespace, renew: str) -> list[launcher.ManagedProcess]:
    """Start ``kubelab kubelet`` node-1..node-N; node-1 runs the service proxy and the cluster DNS.

    All nodes share the host's netfilter (one Docker engine), so one service proxy serves them all. Node
    ``i`` gets slot ``i`` of the pod subnet: its own InternalIP and pod CIDR (:mod:`kubelet.network.node_address`).
    """
    from kubelet.network.node_address import node_network

    state_dir: Path = args.state_dir
    common = ["--cluster-name", laptop.cluster_name(state_dir), "--pod-subnet", args.pod_subnet,
              "--root-dir", str(state_dir / "kubelet"), "--pki-dir", str(state_dir / "pki"),
              "--dns-ip", args.dns_ip, "--dns-port", str(laptop.DNS_PORT), "--node-lease-renew-interval", renew]
    processes = []
    for index in range(1, args.nodes + 1):
        node = f"{NODE_PREFIX}-{index}"
        kubeconfig = launcher.component_kubeconfig(state_dir, f"kubelet-{node}", user=f"system:node:{node}",
                                                   groups=["system:nodes"])
        place = node_network(args.pod_subnet, index)
        role = ["--node-ip", place.ip, "--pod-cidr", place.pod_cidr]
        role += ["--network-agent", "--run-dns"] if index == 1 else []
        processes.append(_ensure_running(state_dir, f"kubelet-{node}", launcher.kubelet_command(
            kubeconfig=kubeconfig, node_name=node, extra_args=[*common, *role])))
    return processes


def _up_components(args: argparse.Namespace) -> int:
    """Start the scheduler, the controller-manager, the hollow and Docker kubelets; wait for Ready nodes."""
    count: int = args.hollow_nodes + args.nodes
    if count <= 0:
        return 0
    state_dir: Path = args.state_dir
    # Leases renew well within the (possibly lab-shortened) grace period, as 10 s is to 40 s.
    renew = f"{min(10.0, args.node_monitor_grace_period / 4):g}"
    try:
        scheduler_kc = launcher.component_kubeconfig(state_dir, SCHEDULER, user="system:kube-scheduler")
        manager_kc = launcher.component_kubeconfig(state_dir, CONTROLLER_MANAGER,
                                                   user="system:kube-controller-manager")
        lifecycle = ["--node-monitor-grace-period", f"{args.node_monitor_grace_period:g}",
                     "--pod-eviction-timeout", f"{args.pod_eviction_timeout:g}"]
        processes = [
            _ensure_running(state_dir, SCHEDULER, launcher.component_command(SCHEDULER, kubeconfig=scheduler_kc)),
            _ensure_running(state_dir, CONTROLLER_MANAGER, launcher.component_command(
                CONTROLLER_MANAGER, kubeconfig=manager_kc,
                extra_args=[*lifecycle, "--storage-dir", str(state_dir / "storage")])),
        ]
        if args.hollow_nodes > 0:
            kubelet_kc = launcher.component_kubeconfig(state_dir, HOLLOW_KUBELET,
                                                       user=f"system:node:{HOLLOW_NODE_PREFIX}",
                                                       groups=["system:nodes"])
            processes.append(_ensure_running(state_dir, HOLLOW_KUBELET, launcher.kubelet_command(
                kubeconfig=kubelet_kc, node_name=HOLLOW_NODE_PREFIX, hollow=True, count=args.hollow_nodes,
                extra_args=["--node-lease-renew-interval", renew])))
        if args.nodes > 0:
            processes += _docker_kubelets(args, renew)
        if not args.no_mesh:
            processes.append(start_meshd(state_dir, bind_address=args.dns_ip if args.nodes > 0 else "127.0.0.1",
                                         ensure_running=lambda name, argv: _ensure_running(state_dir, name, argv)))
    except launcher.NotReadyError as exc:
        print(f"kubelab up failed: {exc}", file=sys.stderr)
        return 1
    print(f"waiting for {count} node(s) to be Ready ...")
    try:
        nodes = launcher.wait_nodes_ready(state_dir, count=count, timeout=args.timeout, watch=processes)
    except launcher.NotReadyError as exc:
        print(f"kubelab up failed: {exc}", file=sys.stderr)
        for process in processes:
            if not launcher.is_alive(process.pid, process.start_time):
                _print_log_tail(state_dir, process.name)
        return 1
    print_table([("NAME", "STATUS", "VERSION"), *launcher.node_rows(nodes)])
    if args.nodes > 0:
        dns = processes[-args.nodes]
        if not laptop.wait_dns(args.dns_ip, laptop.DNS_PORT, timeout=args.timeout,
                               alive=lambda: launcher.is_alive(dns.pid, dns.start_time)):
            print(f"kubelab up failed: cluster DNS at {args.dns_ip}:{laptop.DNS_PORT} does not answer",
                  file=sys.stderr)
            _print_log_tail(state_dir, dns.name)
            return 1
        print(f"cluster DNS answers at {args.dns_ip}:{laptop.DNS_PORT}")
    return 0


def _stop_order(name: str) -> int:
    """The supervisor first (it would restart the others), then kubelets (they confirm pod
    deletions), controllers next, the apiserver, its store last."""
    if name == supervision.SUPERVISOR:
        return -1
    if name.startswith("kubelet"):
        return 0
    return {SCHEDULER: 1, CONTROLLER_MANAGER: 1, APISERVER: 2, ETCD: 3}.get(name, 1)


def _stop_everything(state_dir: Path) -> list[str]:
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


def _give_up(state_dir: Path, name: str | None = None) -> None:
    """Undo a failed ``up``: stop ``name``, and the supervisor too if nothing else runs."""
    if name is not None:
        launcher.stop_process(state_dir, name, grace=5.0)
    if not any(p.alive and p.name != supervision.SUPERVISOR for p in launcher.list_processes(state_dir)):
        _stop_everything(state_dir)


def cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    if not launcher.list_processes(state_dir):
        print("kubelab is not running (nothing to stop)")
        _stop_everything(state_dir)
        _cleanup_cluster(state_dir)
        return 0
    for line in _stop_everything(state_dir):
        print(line)
    (state_dir / "apiserver.port").unlink(missing_ok=True)
    _cleanup_cluster(state_dir)
    return 0


def _cleanup_cluster(state_dir: Path) -> None:
    """Remove the cluster's containers, network and iptables chains; say what was removed."""
    cluster = laptop.cluster_name(state_dir)
    report = laptop.cleanup(cluster)
    if report.containers or report.networks or report.chains or report.problems:
        for line in report.lines(cluster):
            print(line)


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


def cmd_supervise(args: argparse.Namespace) -> int:
    from kubelab.supervisor import SupervisorSettings, run

    _configure_logging(args.verbose)
    return run(SupervisorSettings(state_dir=args.state_dir, log_max_bytes=args.log_max_bytes))


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
        authorization_mode=args.authorization_mode,
    )
    if args.etcd_servers:
        settings.etcd_servers = list(args.etcd_servers)
    if args.service_cidr:
        settings.service_cidr = args.service_cidr
    settings.allowed_networks = [n.strip() for n in args.allowed_networks.split(",") if n.strip()]
    settings.advertise_address = args.advertise_address
    settings.default_not_ready_toleration_seconds = args.default_not_ready_toleration_seconds
    settings.default_unreachable_toleration_seconds = args.default_unreachable_toleration_seconds
    settings.metrics_resolution = args.metric_resolution
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
    settings = ControllerManagerSettings(
        kubeconfig=args.kubeconfig.expanduser(),
        leader_elect=args.leader_elect,
        node_monitor_grace_period=args.node_monitor_grace_period,
        pod_eviction_timeout=args.pod_eviction_timeout,
        default_not_ready_toleration_seconds=toleration,
        default_unreachable_toleration_seconds=toleration,
        horizontal_pod_autoscaler_sync_period=args.horizontal_pod_autoscaler_sync_period,
        horizontal_pod_autoscaler_downscale_stabilization=args.horizontal_pod_autoscaler_downscale_stabilization,
    )
    if args.storage_dir is not None:
        settings.storage_dir = args.storage_dir.expanduser()
    run(settings)
    return 0


def kubelet_settings(args: argparse.Namespace) -> KubeletSettings:
    """The :class:`kubelet.settings.KubeletSettings` of parsed ``kubelab kubelet`` flags."""
    settings = KubeletSettings(
        kubeconfig=args.kubeconfig.expanduser(), node_name=args.node_name, hollow=args.hollow, count=args.count,
        labels=dict(args.labels), taints=list(args.taint), cpu=args.cpu, memory=args.memory, pods=args.pods,
        lease_renew_interval=args.node_lease_renew_interval, crash_loop_base_delay=args.crash_loop_base_delay,
        fake_start_delay=args.fake_start_delay, node_index_offset=args.node_index_offset,
    )
    settings.cluster_name, settings.pod_subnet = args.cluster_name, args.pod_subnet
    settings.node_ip, settings.pod_cidr = args.node_ip, args.pod_cidr
    if args.root_dir is not None:
        settings.root_dir = args.root_dir.expanduser()
    settings.pki_dir = args.pki_dir.expanduser() if args.pki_dir is not None else _hollow_pki_dir(settings)
    settings.server_port, settings.network_agent = args.server_port, args.network_agent
    settings.run_dns, settings.dns_ip, settings.dns_port = args.run_dns, args.dns_ip, args.dns_port
    return settings


def _hollow_pki_dir(settings: KubeletSettings) -> Path | None:
    """Hollow nodes of a kubelab state dir serve their kubelet endpoints with the cluster CA: its
    kubeconfigs live in ``<state>/kubeconfigs/``, its PKI in ``<state>/pki/``."""
    pki = settings.kubeconfig.resolve().parent.parent / "pki"
    return pki if settings.hollow and (pki / "ca.key").exists() else None


def cmd_kubelet(args: argparse.Namespace) -> int:
    from kubelet.server import run

    _configure_logging(args.verbose)
    if args.count < 1 or (args.count > 1 and not args.hollow):
        print("kubelab kubelet: --count needs --hollow and must be at least 1", file=sys.stderr)
        return 2
    run(kubelet_settings(args))
    return 0
