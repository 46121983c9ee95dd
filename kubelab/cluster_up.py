"""``kubelab up``: start a cluster in the background under its supervisor and wait until it is ready.

The steps, each idempotent so a second ``up`` reuses what runs:

1. with ``--nodes N`` (default 2; 0 when ``--hollow-nodes`` is given), real nodes on Docker: it
   refuses to start without a reachable Docker engine (printing what to install/run, never
   installing), builds the base image on first use and creates the pod network
   ``kubelab-<cluster>`` (:mod:`kubelab.laptop`: the cluster name, pod subnet and service range
   derive from the state dir);
2. the supervisor (:mod:`kubelab.supervision`), which restarts any component that exits;
3. with ``--store etcd`` and no ``--etcd-servers``, a local etcd member (:mod:`kubelab.etcd`);
4. the apiserver, awaited on ``/readyz``; a port picked by ``--port 0`` is pinned so that
   restarts come back where every kubeconfig points;
5. the scheduler, the controller-manager, the kubelets and meshd (unless ``--no-mesh``), each with
   its own client certificate (``system:kube-scheduler``, ``system:kube-controller-manager``,
   ``system:node:<node>`` in ``system:nodes``). ``--hollow-nodes N`` runs one
   ``kubelab kubelet --hollow --count N`` process (nodes ``hollow-node-1`` .. ``hollow-node-N``);
   Docker nodes are ``kubelab kubelet`` ``node-1`` .. ``node-N``, node ``i`` with its own
   InternalIP and /24 pod CIDR in the pod subnet (:mod:`kubelet.network.node_address`). All nodes
   share one Docker engine and so the host's netfilter: only ``node-1`` runs the network agent
   role, i.e. the service proxy (iptables, once for the whole cluster) and the cluster DNS, bound
   to the pod network's gateway IP, which every pod gets as its nameserver (Docker's embedded DNS
   at 127.0.0.11 forwards to it);
6. it waits for Ready nodes and an answering DNS, then prints the next steps.

A failed start stops what it started (:func:`kubelab.cluster_down.give_up`) and prints the tail
of the failing component's log.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubelab import laptop, launcher, supervision
from kubelab.cli_flags import DEFAULT_STATE_DIR, add_node_lifecycle, add_state_dir, add_store
from kubelab.cluster_down import cleanup_cluster, give_up
from kubelab.component_commands import APISERVER, CONTROLLER_MANAGER, SCHEDULER
from kubelab.etcd import EtcdNotInstalledError, ensure_local_etcd
from kubelab.mesh_cli import start_meshd
from kubelab.output import print_table

__all__ = ["add_up_command", "cmd_up"]

HOLLOW_KUBELET = "kubelet-hollow"
HOLLOW_NODE_PREFIX = "hollow-node"
NODE_PREFIX = "node"


def add_up_command(commands: Any) -> None:
    up = commands.add_parser("up", help="start the cluster in the background and wait until it is ready")
    add_state_dir(up)
    add_store(up, ["sqlite", "etcd"])
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
    up.add_argument("--mesh-cni", action="store_true",
                    help="mesh CNI mode: no istio-init container; the Docker kubelets program each meshed pod's "
                         "traffic capture when they create its sandbox")
    add_node_lifecycle(up)
    up.set_defaults(handler=cmd_up)


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
        recorded = supervision.read_components(state_dir)[1].get(APISERVER)
        if recorded is not None:
            _warn_kept_flags(recorded, _apiserver_argv(args, []))
        else:
            _, etcd_servers = _local_etcd(args)  # reused as it runs (an up from before supervision)
            supervision.register(state_dir, APISERVER, _pinned_port(_apiserver_argv(args, etcd_servers), url))
        code = _up_components(args)
        if code == 0:
            _print_usage(state_dir)
        return code

    code, etcd_servers = _local_etcd(args)
    if code != 0:
        give_up(state_dir)
        return code
    recorded = supervision.read_components(state_dir)[1].get(APISERVER)
    if recorded is None:
        # A port file left by an earlier run would point the readiness probe at a dead port.
        (state_dir / "apiserver.port").unlink(missing_ok=True)
    argv = recorded or _apiserver_argv(args, etcd_servers)
    if recorded is not None:
        _warn_kept_flags(recorded, _apiserver_argv(args, etcd_servers))
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
        give_up(state_dir, APISERVER)
        if args.nodes > 0:
            cleanup_cluster(state_dir)  # the pod network made by _prepare_docker
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


def kept_flags(recorded: Sequence[str], asked: Sequence[str]) -> list[str]:
    """The apiserver flags ``asked`` for that differ from the ``recorded`` ones a restart keeps, as
    ``--flag VALUE (kept: VALUE)``; the etcd endpoints and a ``--port 0`` (any port) never differ."""
    old, new = _flag_values(recorded), _flag_values(asked)
    ignored = {"--etcd-servers"} | ({"--port"} if new.get("--port") == "0" else set())
    return [f"{flag} {new.get(flag, '(none)')!r} (kept: {old.get(flag, '(none)')!r})"
            for flag in sorted(set(old) | set(new)) if flag not in ignored and old.get(flag) != new.get(flag)]


def _flag_values(argv: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for at, token in enumerate(argv):
        if token.startswith("--"):
            following = argv[at + 1] if at + 1 < len(argv) else ""
            values[token] = "" if following.startswith("-") else following
    return values


def _warn_kept_flags(recorded: Sequence[str], asked: Sequence[str]) -> None:
    changed = kept_flags(recorded, asked)
    if changed:
        print("kubelab up: the apiserver restarts with the flags of this cluster's first start; "
              f"ignored: {'; '.join(changed)}. Run 'kubelab down' first to change them.", file=sys.stderr)


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
    meshd: launcher.ManagedProcess | None = None
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
            meshd = start_meshd(state_dir, bind_address=args.dns_ip if args.nodes > 0 else "127.0.0.1",
                                         ensure_running=lambda name, argv: _ensure_running(state_dir, name, argv),
                                         cni=args.mesh_cni)
            processes.append(meshd)
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
    if meshd is not None:
        # As istioctl install waits for istiod: a pod created before the injector is registered
        # would run without its sidecar.
        try:
            launcher.wait_meshd_ready(state_dir, meshd, timeout=args.timeout)
        except launcher.NotReadyError as exc:
            print(f"kubelab up failed: {exc}", file=sys.stderr)
            _print_log_tail(state_dir, meshd.name)
            return 1
        print("meshd is ready (sidecar injector registered)")
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
