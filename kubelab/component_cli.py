"""The cluster's processes as foreground commands: ``kubelab supervise | apiserver | scheduler |
controller-manager | kubelet``.

Each is a thin entry point: flags become the component's settings dataclass, then its
``server.run`` takes over (imported lazily, so only that process pays for loading a server).
``kubelab up`` starts these commands in the background (:mod:`kubelab.cluster_up`) with the
command lines of :mod:`kubelab.component_commands`; ``kubelab meshd`` lives with the mesh tools
(:mod:`kubelab.mesh_cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from apiserver.settings import ApiServerSettings
from kubelab.cli_flags import add_kubeconfig, add_leader_elect, add_node_lifecycle, add_state_dir, add_store
from kubelab.component_commands import CONTROLLER_MANAGER, SCHEDULER
from kubelet.settings import KubeletSettings, parse_labels, parse_taint

__all__ = [
    "add_component_commands",
    "cmd_apiserver",
    "cmd_controller_manager",
    "cmd_kubelet",
    "cmd_scheduler",
    "cmd_supervise",
    "kubelet_settings",
]


def add_component_commands(commands: Any) -> None:
    """``supervise``, ``apiserver``, ``scheduler``, ``controller-manager`` and ``kubelet``, in that order."""
    _add_supervise(commands)
    _add_apiserver(commands)
    _add_scheduler(commands)
    _add_controller_manager(commands)
    _add_kubelet(commands)


def _add_supervise(commands: Any) -> None:
    supervise = commands.add_parser(
        "supervise", help="run the cluster's supervisor in the foreground (kubelab up starts it)")
    add_state_dir(supervise)
    supervise.add_argument("--log-max-bytes", type=int, default=10 * 1024 * 1024, metavar="N",
                           help="rotate a component log to <name>.log.1 past N bytes (default 10 MiB)")
    supervise.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")
    supervise.set_defaults(handler=cmd_supervise)


def _add_apiserver(commands: Any) -> None:
    apiserver = commands.add_parser("apiserver", help="run the API server in the foreground")
    add_state_dir(apiserver)
    add_store(apiserver, ["sqlite", "etcd", "memory"])
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


def _add_scheduler(commands: Any) -> None:
    scheduler = commands.add_parser(SCHEDULER, help="run the scheduler in the foreground")
    add_kubeconfig(scheduler)
    scheduler.add_argument("--config", type=Path, default=None, metavar="FILE",
                           help="KubeSchedulerConfiguration-shaped profile file")
    add_leader_elect(scheduler, default=False)
    scheduler.add_argument("--metrics-port", type=int, default=0, metavar="N",
                           help="serve /metrics and /healthz on 127.0.0.1:N (0: off)")
    scheduler.set_defaults(handler=cmd_scheduler)


def _add_controller_manager(commands: Any) -> None:
    manager = commands.add_parser(CONTROLLER_MANAGER, help="run the controller-manager in the foreground")
    add_kubeconfig(manager)
    add_leader_elect(manager, default=True)
    add_node_lifecycle(manager)
    manager.add_argument("--storage-dir", type=Path, default=None, metavar="DIR",
                         help="local-path volume directories (default ~/.kubelab/storage)")
    manager.add_argument("--horizontal-pod-autoscaler-sync-period", type=float, default=15.0, metavar="S",
                         help="seconds between two syncs of one HorizontalPodAutoscaler (default 15)")
    manager.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", type=float, default=300.0,
                         metavar="S", help="scale-down window of HPAs that set none (default 300)")
    manager.set_defaults(handler=cmd_controller_manager)


def _add_kubelet(commands: Any) -> None:
    kubelet = commands.add_parser("kubelet", help="run a node agent (or many hollow nodes) in the foreground")
    add_kubeconfig(kubelet)
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
