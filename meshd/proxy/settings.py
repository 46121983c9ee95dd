"""The sidecar's settings: one dataclass, filled from the environment the injector sets and from flags.

``python -m meshd.proxy`` builds :class:`ProxySettings` with :func:`from_env` and hands it to the
proxy; tests build it directly (loopback addresses, ephemeral ports, an injected original
destination lookup).

Environment of the ``istio-proxy`` container (Istio's names, so manifests read the same):

=================================  =========================================================================
``POD_NAME``                       downward API ``metadata.name``
``POD_NAMESPACE``                  downward API ``metadata.namespace``
``INSTANCE_IP``                    downward API ``status.podIP``
``SERVICE_ACCOUNT``                downward API ``spec.serviceAccountName``
``ISTIO_META_WORKLOAD_NAME``       the workload (Deployment, else the pod's owner, else the pod) for telemetry
``ISTIO_METAJSON_LABELS``          the pod's labels as a JSON object (written by the injector at admission)
``CA_ADDR``                        meshd's address, ``istiod.istio-system.svc:15012`` (name or ``IP:port``)
``DISCOVERY_ADDRESS``              discovery address when it differs from ``CA_ADDR`` (default: ``CA_ADDR``)
``ISTIO_KUBE_APP_PROBERS``         the app's original probes, Istio's JSON: ``{"/app-health/<container>/livez":
                                   {"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP",
                                   "httpHeaders": [...]}, "timeoutSeconds": 1}, ...}``; ``tcpSocket``
                                   (``{"port": N}``) also served; keys end in ``livez``, ``readyz`` or ``startupz``
``ISTIO_PROMETHEUS_ANNOTATIONS``   the pod's ``prometheus.io/*`` annotations moved here as JSON
                                   ``{"scrape": "true", "path": "/metrics", "port": "8080"}``: the app's
                                   metrics are merged into 15020 ``/stats/prometheus``
``TERMINATION_DRAIN_DURATION_SECONDS``  drain on SIGTERM (default 5)
``PROXY_LOG_LEVEL``                ``info`` (default), ``debug``, ``warning``
=================================  =========================================================================

Files: the projected service-account token (audience ``istio-ca``) at
``/var/run/secrets/tokens/istio-token`` and the mesh root (ConfigMap ``istio-ca-root-cert``, key
``root-cert.pem``) at ``/var/run/secrets/istio/root-cert.pem``. meshd's serving certificate must
carry the DNS SAN ``istiod.istio-system.svc`` (checked whatever address was dialled).

Ports (from :mod:`meshd.api.identity`): 15001 outbound, 15006 inbound, 15000 admin (127.0.0.1
only), 15020 merged metrics and ``/app-health/...``, 15021 ``/healthz/ready``. The proxy runs as
uid/gid 1337; it reaches the app on ``127.0.0.1:<port>``.

Runtime dependencies (what the ``kubelab/proxyv2`` image needs): uvloop, httptools, h2 (with hpack
and hyperframe), orjson, and cryptography -- the latter only in the short-lived child that makes
the key and CSR (:mod:`meshd.proxy.keygen`). grpcio is not used: the proxy speaks gRPC to meshd
over its own HTTP/2 stack (:mod:`meshd.proxy.grpcclient`).

Outside a pod (tests, benchmarks) the flags ``--original-dst HOST:PORT`` (every accepted
connection's original destination) and ``--explicit-destination-header`` (HTTP requests name their
``ClusterIP:port`` in ``x-kubelab-original-dst``) replace iptables, with ``--*-port`` and
``--bind-address 127.0.0.1``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from meshd.api.identity import (
    ADMIN_PORT,
    DISCOVERY_PORT,
    INBOUND_PORT,
    OUTBOUND_PORT,
    READY_PORT,
    STATUS_PORT,
    SpiffeId,
)

__all__ = ["DEFAULT_DISCOVERY", "OriginalDst", "ProxySettings", "from_env"]

DEFAULT_DISCOVERY = f"istiod.istio-system.svc:{DISCOVERY_PORT}"
MESHD_SERVER_NAME = "istiod.istio-system.svc"

OriginalDst = Callable[[object], "tuple[str, int] | None"]
"""Given an accepted socket, the address the client dialled (``None``: unknown)."""


@dataclass
class ProxySettings:
    """Everything the proxy needs to know about itself and where it runs."""

    pod_name: str = "proxy"
    namespace: str = "default"
    pod_ip: str = "127.0.0.1"
    service_account: str = "default"
    workload: str = ""
    """Telemetry's ``*_workload``; defaults to the pod name."""
    labels: dict[str, str] = field(default_factory=dict)

    discovery_address: str = DEFAULT_DISCOVERY
    ca_address: str = DEFAULT_DISCOVERY
    meshd_server_name: str = MESHD_SERVER_NAME
    """The name checked in meshd's serving certificate."""
    token_path: str = "/var/run/secrets/tokens/istio-token"
    root_cert_path: str = "/var/run/secrets/istio/root-cert.pem"
    cert_validity_seconds: int = 86_400
    """The leaf lifetime asked for (meshd may grant less); rotation at half of the granted life."""

    bind_address: str = "0.0.0.0"
    """Where the outbound and inbound listeners bind (tests: 127.0.0.1)."""
    outbound_port: int = OUTBOUND_PORT
    inbound_port: int = INBOUND_PORT
    admin_port: int = ADMIN_PORT
    status_port: int = STATUS_PORT
    ready_port: int = READY_PORT
    app_host: str = "127.0.0.1"
    """Inbound traffic goes to ``app_host:<original port>``."""

    original_dst: OriginalDst | None = None
    """None: SO_ORIGINAL_DST (iptables REDIRECT in a pod). Tests inject a lookup (inbound: it names the
    app port, so several sidecars share one host)."""
    explicit_destination_header: bool = False
    """Tests and benchmarks: HTTP requests may name their ClusterIP:port in ``x-kubelab-original-dst``."""

    app_probers: dict[str, dict[str, object]] = field(default_factory=dict)
    prometheus_annotations: dict[str, str] = field(default_factory=dict)
    drain_seconds: float = 5.0
    ready_hold_seconds: float = 2.0
    """Until the proxy was ready once, how long a ``/healthz/ready`` request waits for readiness
    before it gets its 503 (below the injected startup probe's ``timeoutSeconds``, 3)."""
    log_level: str = "info"
    access_log: bool = True
    install_signal_handlers: bool = True

    @property
    def identity(self) -> SpiffeId:
        return SpiffeId(self.namespace, self.service_account)

    @property
    def workload_name(self) -> str:
        return self.workload or self.pod_name

    @property
    def node_id(self) -> str:
        return f"sidecar~{self.pod_ip}~{self.pod_name}.{self.namespace}~{self.namespace}.svc.cluster.local"


def _json_object(text: str, what: str) -> dict[str, object]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"{what}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{what}: expected a JSON object")
    return value


def from_env(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ProxySettings:
    """Settings from the injector's environment, overridden by flags (``python -m meshd.proxy --help``)."""
    env = os.environ if environ is None else environ
    ca = env.get("CA_ADDR") or DEFAULT_DISCOVERY
    parser = argparse.ArgumentParser(prog="python -m meshd.proxy", description="meshd's sidecar proxy")
    parser.add_argument("--discovery-address", default=env.get("DISCOVERY_ADDRESS") or ca)
    parser.add_argument("--ca-address", default=ca)
    parser.add_argument("--token-path", default=ProxySettings.token_path)
    parser.add_argument("--root-cert-path", default=ProxySettings.root_cert_path)
    parser.add_argument("--bind-address", default=ProxySettings.bind_address)
    parser.add_argument("--drain-seconds", type=float,
                        default=float(env.get("TERMINATION_DRAIN_DURATION_SECONDS") or 5))
    parser.add_argument("--log-level", default=env.get("PROXY_LOG_LEVEL") or "info")
    for name, default in (("outbound", OUTBOUND_PORT), ("inbound", INBOUND_PORT), ("admin", ADMIN_PORT),
                          ("status", STATUS_PORT), ("ready", READY_PORT)):
        parser.add_argument(f"--{name}-port", type=int, default=default)
    parser.add_argument("--app-host", default="127.0.0.1")
    parser.add_argument("--original-dst", default="", metavar="HOST:PORT",
                        help="outside a pod (tests, benchmarks): the original destination of every accepted "
                             "connection instead of SO_ORIGINAL_DST")
    parser.add_argument("--explicit-destination-header", action="store_true",
                        help="outside a pod: HTTP requests name their ClusterIP:port in x-kubelab-original-dst")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    original_dst: OriginalDst | None = None
    if args.original_dst:
        host, _, port = args.original_dst.rpartition(":")
        fixed = (host, int(port))
        original_dst = lambda sock: fixed  # noqa: E731
    labels = {str(k): str(v) for k, v in _json_object(env.get("ISTIO_METAJSON_LABELS", ""), "ISTIO_METAJSON_LABELS")
              .items()}
    probers = {str(k): v for k, v in _json_object(env.get("ISTIO_KUBE_APP_PROBERS", ""), "ISTIO_KUBE_APP_PROBERS")
               .items() if isinstance(v, dict)}
    prom = {str(k): str(v) for k, v in
            _json_object(env.get("ISTIO_PROMETHEUS_ANNOTATIONS", ""), "ISTIO_PROMETHEUS_ANNOTATIONS").items()}
    return ProxySettings(
        pod_name=env.get("POD_NAME", "proxy"),
        namespace=env.get("POD_NAMESPACE", "default"),
        pod_ip=env.get("INSTANCE_IP", "127.0.0.1"),
        service_account=env.get("SERVICE_ACCOUNT", "default"),
        workload=env.get("ISTIO_META_WORKLOAD_NAME", ""),
        labels=labels,
        discovery_address=args.discovery_address,
        ca_address=args.ca_address,
        token_path=args.token_path,
        root_cert_path=args.root_cert_path,
        bind_address=args.bind_address,
        app_probers=probers,
        prometheus_annotations=prom,
        drain_seconds=args.drain_seconds,
        log_level=args.log_level,
        outbound_port=args.outbound_port,
        inbound_port=args.inbound_port,
        admin_port=args.admin_port,
        status_port=args.status_port,
        ready_port=args.ready_port,
        app_host=args.app_host,
        original_dst=original_dst,
        explicit_destination_header=args.explicit_destination_header,
        access_log=not args.no_access_log,
    )
