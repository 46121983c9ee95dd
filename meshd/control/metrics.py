"""meshd's Prometheus metrics, under Istio's names so its dashboards and alerts carry over.

One :class:`MeshdMetrics` per process (no module-level registry: tests make their own), filled by
the CA (:mod:`meshd.control.certify`) and the discovery server (:mod:`meshd.control.push`), and
served at ``/metrics`` on the debug port (:mod:`meshd.control.debug`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["MeshdMetrics"]


class MeshdMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.csr_count = Counter("citadel_server_csr_count", "CSRs received by the CA.", registry=r)
        self.certs_issued = Counter("citadel_server_success_cert_issuance_count",
                                    "Workload certificates signed.", registry=r)
        self.csr_errors = Counter("citadel_server_csr_sign_error_count", "CSRs refused.", ["reason"], registry=r)
        self.root_expiry = Gauge("citadel_server_root_cert_expiry_timestamp",
                                 "Unix time the mesh root certificate expires.", registry=r)
        self.chain_expiry = Gauge("citadel_server_cert_chain_expiry_timestamp",
                                  "Unix time the CA's signing certificate expires.", registry=r)
        self.proxies = Gauge("pilot_xds", "Connected proxies.", registry=r)
        self.pushes = Counter("pilot_xds_pushes", "Responses sent to proxies.", ["type"], registry=r)
        self.rejects = Counter("pilot_total_xds_rejects", "Responses proxies NACKed.", ["type"], registry=r)
        self.push_time = Histogram("pilot_proxy_convergence_time",
                                   "Seconds from a change to its push to a proxy.", registry=r,
                                   buckets=(0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30))
        self.debounced = Counter("pilot_debounce_events", "Changes merged into one push.", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
