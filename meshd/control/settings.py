"""Settings of the ``kubelab meshd`` process (istiod's role), filled from its flags.

Read by :mod:`meshd.control.server` (process wiring) and handed to every part of the control
plane: the CA (:mod:`meshd.control.ca`), the webhook server (validation and injection), the
discovery server (:mod:`meshd.control.push`) and the debug endpoint behind
``kubelab mesh proxy-status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshd.api.identity import DISCOVERY_PORT, ROOT_NAMESPACE, TRUST_DOMAIN

__all__ = ["DEBUG_PORT", "WEBHOOK_PORT", "MeshdSettings"]

WEBHOOK_PORT = 15017
"""istiod's webhook port: sidecar injection and validation of Istio resources (HTTPS)."""
DEBUG_PORT = 15014
"""istiod's debug/monitoring port: ``/metrics`` and ``/debug/syncz`` (proxy status), on 127.0.0.1."""


@dataclass
class MeshdSettings:
    """Flags of ``kubelab meshd``; defaults match a ``kubelab up`` cluster."""

    kubeconfig: Path = Path("~/.kubelab/kubeconfigs/meshd.kubeconfig")
    """The apiserver and meshd's own credentials."""
    state_dir: Path = Path("~/.kubelab/meshd")
    """Where the mesh CA lives (``ca-key.pem`` 0600, ``ca-cert.pem``, ``root-cert.pem``)."""
    ca_cert: Path | None = None
    """A user-provided root (or intermediate) certificate: meshd then signs with an intermediate
    under it, as Istio's ``cacerts``. Needs ``ca_key``."""
    ca_key: Path | None = None
    bind_address: str = "127.0.0.1"
    """Where the discovery (15012) and webhook (15017) servers listen: the host's address on the
    cluster network, the ``istiod`` Service's endpoint."""
    advertise_address: str = ""
    """The address put in the ``istiod`` Endpoints (default: ``bind_address``)."""
    discovery_port: int = DISCOVERY_PORT
    webhook_port: int = WEBHOOK_PORT
    debug_port: int = DEBUG_PORT
    """On 127.0.0.1 only; 0 picks a free port (written to ``<state_dir>/debug.port``)."""
    namespace: str = ROOT_NAMESPACE
    trust_domain: str = TRUST_DOMAIN
    root_validity_days: int = 3650
    """A self-signed root's lifetime (Istio's default, ten years)."""
    default_leaf_seconds: int = 86_400
    """A workload certificate's lifetime when the request asks for none (24 h)."""
    max_leaf_seconds: int = 86_400
    """The longest workload certificate meshd signs (requests asking more are capped)."""
    debounce_quiet: float = 0.1
    """Push after this many seconds without a change (Istio's ``PILOT_DEBOUNCE_AFTER``)."""
    debounce_max: float = 1.0
    """... but at most this long after the first change of a burst."""
    install_crds: bool = True
    """Create or update the Istio CustomResourceDefinitions on start."""
    manage_webhooks: bool = True
    """Create or update the injector and validation webhook configurations on start."""
    cni: bool = False
    """CNI mode (Istio's ``istio-cni``): inject no ``istio-init``; the nodes' agents apply the capture
    rules from the pod's redirect annotations when they create its sandbox (Docker nodes do)."""
    proxy_image: str = "kubelab/proxyv2:0.1.0"
    """The sidecar image the injector uses (``kubelab image build proxyv2`` makes it; never ``latest``,
    which Kubernetes would try to pull)."""

    @property
    def service_host(self) -> str:
        """The name meshd's serving certificates carry: ``istiod.istio-system.svc``."""
        return f"istiod.{self.namespace}.svc"

    @property
    def endpoint_address(self) -> str:
        return self.advertise_address or self.bind_address
