"""What one proxy may see: host names, ``exportTo``, the ``Sidecar`` resource, workload selectors.

Pure functions over :class:`meshd.control.model.MeshSnapshot` objects, used by the rest of
:mod:`meshd.control.compile`. Istio's rules:

* a short host (``reviews``) is relative to the namespace of the rule naming it
  (``reviews.<ns>.svc.cluster.local``); ``reviews.ns`` is completed the same way;
* ``exportTo`` (on VirtualService and DestinationRule specs, and as the Service annotation
  ``networking.istio.io/exportTo``) lists namespaces: ``*`` everyone (the default), ``.`` the
  object's own namespace, ``~`` nobody, or namespace names;
* a ``Sidecar`` in the proxy's namespace selecting its labels (else the namespace's one without a
  selector, else the root namespace's) limits the Services to its ``egress[].hosts``
  (``<namespace>/<host>``, ``*`` and ``.`` allowed on both sides, ``*.suffix`` hosts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from meshd.control.model import Obj, key_of

__all__ = ["ProxyNode", "Scope", "exported_to", "fqdn", "selects", "service_fqdn"]

EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


@dataclass(frozen=True)
class ProxyNode:
    """The workload a proxy serves (from the Node it sent, checked against its certificate)."""

    namespace: str
    pod: str = ""
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = ""

    def cache_key(self) -> tuple[object, ...]:
        """Proxies with equal keys get equal configuration (except the pod-specific inbound names)."""
        return self.namespace, self.service_account, tuple(sorted(self.labels.items())), self.pod


def fqdn(host: str, namespace: str, domain: str = "cluster.local") -> str:
    """``reviews`` or ``reviews.ns`` → ``reviews.ns.svc.cluster.local``; other names unchanged."""
    host = host.lower()
    if "*" in host:
        return host
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.{domain}"
    if len(parts) == 2:
        return f"{host}.svc.{domain}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.{domain}"
    return host


def service_fqdn(service: Obj, domain: str = "cluster.local") -> str:
    namespace, name = key_of(service)
    return f"{name}.{namespace}.svc.{domain}"


def host_matches(pattern: str, host: str) -> bool:
    """``*`` or ``*.suffix`` wildcards, else equality (both already FQDNs)."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return pattern == host


def exported_to(export_to: Iterable[str] | None, owner_namespace: str, namespace: str) -> bool:
    entries = [e.strip() for e in (export_to or []) if e and e.strip()]
    if not entries:
        return True
    return any(entry in ("*", namespace) or (entry == "." and owner_namespace == namespace) for entry in entries)


def selects(match_labels: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (match_labels or {}).items())


class Scope:
    """Visibility of one proxy in one snapshot."""

    def __init__(self, node: ProxyNode, sidecars: Iterable[Obj], root_namespace: str) -> None:
        self.node = node
        self.egress_hosts = _egress_hosts(node, list(sidecars), root_namespace)

    def sees_service(self, service: Obj) -> bool:
        namespace, _ = key_of(service)
        annotation = ((service.get("metadata") or {}).get("annotations") or {}).get(EXPORT_TO_ANNOTATION)
        export = annotation.split(",") if isinstance(annotation, str) else None
        if not exported_to(export, namespace, self.node.namespace):
            return False
        if self.egress_hosts is None:
            return True
        host = service_fqdn(service)
        for ns_part, host_part in self.egress_hosts:
            ns_ok = ns_part in ("*", namespace) or (ns_part == "." and namespace == self.node.namespace)
            if ns_ok and host_matches(fqdn(host_part, namespace) if "*" not in host_part else host_part, host):
                return True
        return False

    def sees_rule(self, rule: Obj) -> bool:
        namespace, _ = key_of(rule)
        spec = rule.get("spec") or {}
        if not exported_to(spec.get("exportTo"), namespace, self.node.namespace):
            return False
        selector = (spec.get("workloadSelector") or {}).get("matchLabels")
        return not selector or (namespace == self.node.namespace and selects(selector, self.node.labels))


def _egress_hosts(node: ProxyNode, sidecars: list[Obj], root_namespace: str) -> list[tuple[str, str]] | None:
    """The ``(namespace, host)`` pairs of the Sidecar that applies, None when none does."""
    def selector(s: Obj) -> Mapping[str, str] | None:
        return ((s.get("spec") or {}).get("workloadSelector") or {}).get("labels")

    own = [s for s in sidecars if key_of(s)[0] == node.namespace]
    chosen = (next((s for s in own if selector(s) and selects(selector(s), node.labels)), None)
              or next((s for s in own if not selector(s)), None)
              or next((s for s in sidecars if key_of(s)[0] == root_namespace and not selector(s)), None))
    if chosen is None:
        return None
    pairs: list[tuple[str, str]] = []
    for egress in (chosen.get("spec") or {}).get("egress") or []:
        for entry in egress.get("hosts") or []:
            ns_part, _, host_part = str(entry).partition("/")
            if not host_part:
                ns_part, host_part = "*", ns_part
            pairs.append((ns_part, host_part.lower()))
    return pairs
