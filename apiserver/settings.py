"""Settings of one apiserver process (filled from ``kubelab apiserver`` flags or by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from machinery.netguard import AllowedNetworks


@dataclass
class ApiServerSettings:
    """Everything the apiserver needs to start; defaults suit a laptop cluster."""

    state_dir: Path
    """Holds ``pki/``, the SQLite file and the kubeconfig; created if missing."""

    store: str = "sqlite"
    """Backend: ``sqlite`` (embedded file in the state dir), ``etcd`` or ``memory`` (tests)."""

    etcd_servers: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    """etcd client URLs, used when ``store == "etcd"``."""

    etcd_prefix: str = ""
    """Prepended to every etcd key, so several clusters (or test runs) can share one etcd."""

    etcd_cache_list_wait: float = 0.1
    """Seconds a consistent list waits for the watch cache to reach etcd's current revision
    before reading from etcd instead (see ``ApiContext.consistent_list_wait``); 0 never waits."""

    bind_address: str = "127.0.0.1"
    """Address the HTTPS listener binds."""

    port: int = 6443
    """HTTPS port; 0 picks a free one (the chosen port is written to ``state_dir/apiserver.port``)."""

    max_request_bytes: int = 3 * 1024 * 1024
    """Request bodies above this get 413, as Kubernetes' 3 MiB limit."""

    compaction_interval_seconds: float = 300.0
    """How often old revisions are compacted (Kubernetes compacts every 5 minutes)."""

    compaction_keep_revisions: int = 10_000
    """How many recent revisions survive a compaction (watch resume window)."""

    watch_cache_events: int = 1_000
    """Events each resource's watch cache keeps; older resumes are served from the store."""

    service_cidr: str = "10.96.0.0/12"
    """ClusterIPs are allocated from here (used by later components)."""

    allowed_networks: list[str] = field(default_factory=list)
    """Networks the apiserver may dial besides loopback and ``service_cidr`` (CIDRs): the cluster's
    own, e.g. the Docker pod network its kubelets listen on (``kubelab up`` passes it). Kubelets and
    webhooks elsewhere are refused, never dialled (``machinery.netguard``)."""

    default_not_ready_toleration_seconds: int = 300
    """``tolerationSeconds`` of the not-ready toleration every new pod gets (DefaultTolerationSeconds)."""

    default_unreachable_toleration_seconds: int = 300
    """``tolerationSeconds`` of the unreachable toleration every new pod gets."""

    service_account_issuer: str = "https://kubernetes.default.svc.cluster.local"
    """``iss`` of the service-account tokens this apiserver signs (``--service-account-issuer``)."""

    api_audiences: list[str] = field(default_factory=list)
    """Audiences a bearer token must name to authenticate here (``--api-audiences``); empty
    means the issuer, as kube-apiserver defaults it."""

    service_account_max_token_seconds: int = 48 * 3600
    """Longest life a TokenRequest gets; longer requests are shortened to it
    (``--service-account-max-token-expiration``)."""

    authorization_mode: str = "Node,RBAC"
    """``Node,RBAC`` (default: the Node authorizer limits each kubelet to its pods' secrets,
    configmaps, claims and tokens, then Kubernetes' roles and bindings decide), ``RBAC`` alone, or
    ``AlwaysAllow`` (every authenticated caller may do anything; for tests and benchmarks)
    (``--authorization-mode``)."""

    advertise_address: str = ""
    """Where pods reach this apiserver (the host's address on the Docker pod network): also
    listened on, and made the endpoint of the ``default/kubernetes`` Service. Empty: only
    ``bind_address``, and the Service's endpoint is that."""

    metrics_resolution: float = 15.0
    """Seconds between two scrapes of every kubelet's statistics for the metrics.k8s.io API
    (metrics-server's ``--metric-resolution``)."""

    @property
    def dial_networks(self) -> AllowedNetworks:
        """Where the apiserver may connect: loopback, ``service_cidr`` and ``allowed_networks``."""
        return AllowedNetworks.of([self.service_cidr, *self.allowed_networks])

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def sqlite_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"
