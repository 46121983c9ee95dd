"""Settings of one ``kubelab kubelet`` process (one node, or many hollow nodes).

Filled from the CLI flags (``kubelab.cli``) or by tests; read by ``kubelet.server`` and passed
down to the node agents, the pod syncers and the fake runtime. Hollow nodes live on loopback:
addresses from :data:`HOLLOW_NODE_NETWORK`, pod IPs from :data:`HOLLOW_POD_CIDR_BASE`. Defaults are Kubernetes'
(10 s lease renewal, 40 s lease duration, 1 min status report, 10 s → 5 min crash back-off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HOLLOW_NODE_NETWORK", "HOLLOW_POD_CIDR_BASE", "KubeletSettings", "parse_labels", "parse_taint"]

HOLLOW_NODE_NETWORK = "127.200.0.0/16"
"""Hollow node ``i`` (0-based, with ``node_index_offset``) has InternalIP ``127.200.0.0 + i + 1``;
its kubelet endpoints answer there on an ephemeral port (reported in the Node status)."""

HOLLOW_POD_CIDR_BASE = "127.128.0.0/12"
"""Pod IPs of hollow nodes: node ``i`` gets ``127.128.0.0/12``'s ``i``-th /24."""

_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass
class KubeletSettings:
    """Everything a kubelet process needs; defaults suit a laptop cluster."""

    kubeconfig: Path
    """Credentials of the node (``system:node:<name>`` in ``system:nodes``)."""

    node_name: str
    """The node's name, or with ``hollow``/``count > 1`` the prefix: nodes ``<name>-1`` .. ``<name>-<count>``."""

    hollow: bool = False
    """Simulate containers (the fake runtime) instead of running them."""

    count: int = 1
    """How many nodes this process runs (hollow nodes only)."""

    labels: dict[str, str] = field(default_factory=dict)
    """Extra node labels (``--labels k=v,...``)."""

    taints: list[dict[str, Any]] = field(default_factory=list)
    """Node taints registered with the node (``--taint key=value:Effect``)."""

    cpu: str = "4"
    """``capacity.cpu`` (and allocatable) of each node."""

    memory: str = "8Gi"
    """``capacity.memory`` (and allocatable) of each node."""

    pods: int = 110
    """``capacity.pods``: Kubernetes' default maximum pods per node."""

    pod_cidr_base: str = ""
    """Each node gets the /24 of this range at its index for pod IPs (4096 nodes fit). Empty: hollow
    nodes use :data:`HOLLOW_POD_CIDR_BASE` (loopback: their pod IPs never leave the machine), other
    nodes ``10.128.0.0/12``."""

    node_index_offset: int = 0
    """Added to the node index when picking pod CIDRs and host IPs, so processes do not overlap (a Docker
    node takes slot ``node_index_offset + 1`` of the pod subnet unless ``node_ip``/``pod_cidr`` say)."""

    lease_duration_seconds: int = 40
    """``spec.leaseDurationSeconds`` of the node lease."""

    lease_renew_interval: float = 10.0
    """Seconds between lease renewals (Kubernetes: 10 s); renewals of many nodes are spread over it."""

    node_status_report_frequency: float = 60.0
    """A node status is posted at least this often even when nothing changed (Kubernetes: 1 min)."""

    sync_frequency: float = 60.0
    """Every pod of the process is synced again this often even when nothing was reported about it
    (Kubernetes' ``syncFrequency``: 1 min), so a missed event or a lost status write is repaired;
    labs and tests may shorten it. 0 turns the periodic resync off."""

    crash_loop_base_delay: float = 10.0
    """First CrashLoopBackOff delay; doubles per restart."""

    crash_loop_max_delay: float = 300.0
    """CrashLoopBackOff ceiling (Kubernetes: 5 min)."""

    fake_start_delay: float = 0.1
    """Fake runtime: seconds from start to running."""

    fake_crash_after: float = 0.5
    """Fake runtime: seconds a crashing container runs before exiting with code 1."""

    fake_stop_delay: float = 0.0
    """Fake runtime: simulated preStop/SIGTERM handling time when a container is stopped."""

    write_concurrency: int = 32
    """At most this many pod syncs / node writes in flight at once per process."""

    emit_events: bool = True
    """Record Kubernetes Events (Created, Started, Killing, BackOff) for pods."""

    qps: float = 0.0
    """Client-side rate limit of the process' API client (0: unlimited)."""

    # -- real (Docker) nodes ----------------------------------------------------------------
    cluster_name: str = "kubelab"
    """Docker objects carry ``kubelab.dev/cluster=<cluster_name>``; the pod network is ``kubelab-<name>``."""

    pod_subnet: str = "10.244.0.0/16"
    """Subnet of the cluster's Docker pod network (all nodes of a cluster share it)."""

    node_ip: str = ""
    """A Docker node's InternalIP on the pod network (``--node-ip``): added to the bridge, the kubelet
    server listens there. Empty: the address of slot ``node_index_offset + 1`` of the pod subnet
    (:func:`kubelet.network.node_address.node_network`). Hollow nodes ignore it."""

    pod_cidr: str = ""
    """A Docker node's ``spec.podCIDR`` (``--pod-cidr``), inside the pod subnet: its pods' IPs come from
    it. Empty: the /24 of slot ``node_index_offset + 1``. Hollow nodes ignore it (``pod_cidr_base``)."""

    root_dir: Path = Path.home() / ".kubelab" / "kubelet"
    """Kubelet state: pod volumes under ``<root_dir>/<node>/pods/<uid>/volumes/<name>``."""

    pki_dir: Path | None = None
    """The cluster PKI directory (CA); with it the kubelet serves HTTPS logs/exec (hollow nodes too:
    simulated logs, and a Status saying their pods run no processes)."""

    server_port: int = 0
    """Port of the kubelet HTTPS server on 127.0.0.1 (0: any free port, reported in node status)."""

    network_agent: bool = False
    """Run the service proxy (iptables, like kube-proxy) on this node. Off by default: the nodes of a
    laptop cluster share the host's netfilter, so ``kubelab up`` turns it on for one node only."""

    run_dns: bool = False
    """Serve cluster DNS from this node (one node per cluster needs it)."""

    dns_ip: str = ""
    """The cluster DNS address written into pods' resolv.conf (empty: Docker's default DNS)."""

    dns_port: int = 53
    """Port the cluster DNS listens on when ``run_dns``."""

    probe_time_scale: float = 1.0
    """Multiplier on probe periods and delays (tests shrink it)."""

    @property
    def pod_cidrs(self) -> str:
        """The range node pod CIDRs come from (``pod_cidr_base`` or its default)."""
        return self.pod_cidr_base or (HOLLOW_POD_CIDR_BASE if self.hollow else "10.128.0.0/12")

    @property
    def node_names(self) -> list[str]:
        """The nodes this process runs."""
        if self.hollow or self.count > 1:
            return [f"{self.node_name}-{i}" for i in range(1, self.count + 1)]
        return [self.node_name]


def parse_taint(text: str) -> dict[str, Any]:
    """``key=value:Effect`` or ``key:Effect`` → a Node taint dict (ValueError if malformed)."""
    body, sep, effect = text.rpartition(":")
    if not sep or effect not in _TAINT_EFFECTS or not body:
        raise ValueError(f"invalid taint {text!r}: want key[=value]:{'|'.join(_TAINT_EFFECTS)}")
    key, _, value = body.partition("=")
    if not key:
        raise ValueError(f"invalid taint {text!r}: empty key")
    taint: dict[str, Any] = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` → a dict (ValueError if an item has no ``=``)."""
    labels: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid label {item!r}: want key=value")
        labels[key] = value
    return labels
