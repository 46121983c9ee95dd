"""Workload metadata for telemetry labels, and how sidecars exchange it (``x-kubelab-peer-metadata``).

Istio's sidecars swap workload metadata (``istio-peer-exchange``) so each side can label its
metrics with the other's workload, app, version and canonical service. Here the source sidecar
adds one request header to requests it sends over mTLS to another sidecar
(:meth:`WorkloadMeta.header`: its own labels plus the destination Service it routed to); the
destination sidecar reads it (:meth:`WorkloadMeta.parse`) and strips it before the app sees the
request. It is trusted only on mTLS connections (the peer is then a verified sidecar). The
source side learns the destination's metadata from the endpoint in the Cluster (labels, workload,
namespace), so responses carry nothing extra. TCP connections carry no header: their source
labels stay ``unknown`` apart from the verified principal.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PEER_METADATA_HEADER", "WorkloadMeta"]

PEER_METADATA_HEADER = "x-kubelab-peer-metadata"


@dataclass(frozen=True, slots=True)
class WorkloadMeta:
    """A workload's telemetry labels."""

    workload: str = "unknown"
    namespace: str = "unknown"
    app: str = "unknown"
    version: str = "unknown"
    canonical_service: str = "unknown"
    canonical_revision: str = "latest"

    @classmethod
    def from_labels(cls, workload: str, namespace: str, labels: dict[str, str]) -> WorkloadMeta:
        app = labels.get("app") or labels.get("app.kubernetes.io/name") or ""
        version = labels.get("version") or labels.get("app.kubernetes.io/version") or ""
        return cls(workload=workload or "unknown", namespace=namespace or "unknown", app=app or "unknown",
                   version=version or "unknown",
                   canonical_service=labels.get("service.istio.io/canonical-name") or app or workload or "unknown",
                   canonical_revision=labels.get("service.istio.io/canonical-revision") or version or "latest")

    def header(self, service: str) -> str:
        return (f"w={self.workload};ns={self.namespace};app={self.app};ver={self.version};"
                f"cs={self.canonical_service};cr={self.canonical_revision};svc={service}")

    @classmethod
    def parse(cls, value: str) -> tuple[WorkloadMeta, str]:
        fields = dict(part.partition("=")[::2] for part in value.split(";"))
        meta = cls(workload=fields.get("w") or "unknown", namespace=fields.get("ns") or "unknown",
                   app=fields.get("app") or "unknown", version=fields.get("ver") or "unknown",
                   canonical_service=fields.get("cs") or "unknown", canonical_revision=fields.get("cr") or "latest")
        return meta, fields.get("svc", "")
