"""Workload identity and the mesh's well-known names and ports (Istio's, so habits carry over).

A workload's only identity is its SPIFFE ID ``spiffe://<trust domain>/ns/<namespace>/sa/<service
account>``, carried as the single URI SAN of its leaf certificate. Used by the CA (to name what it
signs), by proxies (to verify peers) and by telemetry (``source_principal``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADMIN_PORT",
    "CA_AUDIENCE",
    "DISCOVERY_PORT",
    "INBOUND_PORT",
    "INJECTION_LABEL",
    "INJECT_POD_LABEL",
    "MESH_ALPN",
    "METRICS_PORT",
    "OUTBOUND_PORT",
    "PROXY_GID",
    "PROXY_UID",
    "READY_PORT",
    "ROOT_CERT_CONFIGMAP",
    "ROOT_NAMESPACE",
    "STATUS_PORT",
    "TRUST_DOMAIN",
    "SpiffeId",
]

TRUST_DOMAIN = "cluster.local"
ROOT_NAMESPACE = "istio-system"
"""meshd's namespace, and the root namespace whose PeerAuthentication applies mesh-wide."""
ROOT_CERT_CONFIGMAP = "istio-ca-root-cert"
"""The ConfigMap (key ``root-cert.pem``) meshd keeps in every namespace."""
CA_AUDIENCE = "istio-ca"
"""The audience of the projected service-account token a sidecar presents with its CSR."""
INJECTION_LABEL = "istio-injection"
INJECT_POD_LABEL = "sidecar.istio.io/inject"

DISCOVERY_PORT = 15012
"""meshd's gRPC port (Discovery and Certificates), behind the Service ``istiod.istio-system``."""
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
ADMIN_PORT = 15000
"""The proxy's admin endpoint (localhost only): config dump, ``/quitquitquit``."""
STATUS_PORT = 15020
"""Merged Prometheus metrics (``/stats/prometheus``) and rewritten app probes (``/app-health/...``)."""
READY_PORT = 15021
"""``/healthz/ready``: 200 once the proxy has its first configuration and certificate."""
METRICS_PORT = 15090
PROXY_UID = 1337
PROXY_GID = 1337
MESH_ALPN = "istio"
"""ALPN protocol that marks sidecar-to-sidecar mTLS (plain clients never offer it)."""


@dataclass(frozen=True)
class SpiffeId:
    """``spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>``."""

    namespace: str
    service_account: str
    trust_domain: str = TRUST_DOMAIN

    @property
    def uri(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """The identity named by ``uri``; ValueError when it is not of Istio's form."""
        prefix = "spiffe://"
        if not uri.startswith(prefix):
            raise ValueError(f"not a SPIFFE ID: {uri!r}")
        trust_domain, _, path = uri[len(prefix):].partition("/")
        parts = path.split("/")
        if not trust_domain or len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa" or not parts[1] or not parts[3]:
            raise ValueError(f"not a workload SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>): {uri!r}")
        return cls(namespace=parts[1], service_account=parts[3], trust_domain=trust_domain)
