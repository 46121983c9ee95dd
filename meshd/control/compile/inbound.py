"""Inbound: the workload's resolved PeerAuthentication mode (per port), its app ports' protocols and
the AuthorizationPolicies that select it (compiled by :mod:`meshd.control.compile.authz`).

Used by :mod:`meshd.control.compile.proxy`. Istio's resolution, most specific first:

1. a PeerAuthentication in the workload's namespace whose ``selector.matchLabels`` match its
   labels (oldest wins), with its ``portLevelMtls`` for individual (container) ports;
2. the namespace's PeerAuthentication without a selector;
3. the root namespace's (``istio-system``) without a selector: mesh-wide.

``UNSET`` (or no ``mtls``) inherits from the next level; with nothing left it is ``PERMISSIVE``.
A port-level ``UNSET`` inherits the workload's resolved mode.
"""

from __future__ import annotations

from meshd.api.resources import Inbound, InboundPort, MtlsMode, Protocol
from meshd.control.compile.authz import compile_authz
from meshd.control.compile.clusters import port_protocol, service_ports, workload_name
from meshd.control.compile.scope import ProxyNode, selects
from meshd.control.model import MeshSnapshot, Obj, key_of

__all__ = ["compile_inbound", "resolve_mtls"]

_MODES: tuple[MtlsMode, ...] = ("STRICT", "PERMISSIVE", "DISABLE")


def _mode(raw: object) -> MtlsMode | None:
    mode = str((raw or {}).get("mode") or "") if isinstance(raw, dict) else ""
    return next((m for m in _MODES if m == mode), None)


def resolve_mtls(snapshot: MeshSnapshot, node: ProxyNode, root_namespace: str) -> tuple[MtlsMode, dict[int, MtlsMode]]:
    """(the workload's mode, per-port modes that differ from it)."""
    def selector(pa: Obj) -> dict[str, str] | None:
        return ((pa.get("spec") or {}).get("selector") or {}).get("matchLabels") or None

    own = [pa for pa in snapshot.peer_authentications if key_of(pa)[0] == node.namespace]
    workload = next((pa for pa in own if selector(pa) and selects(selector(pa), node.labels)), None)
    namespace = next((pa for pa in own if not selector(pa)), None)
    mesh = next((pa for pa in snapshot.peer_authentications
                 if key_of(pa)[0] == root_namespace and not selector(pa)), None)
    mode: MtlsMode = "PERMISSIVE"
    for level in (mesh, namespace, workload):
        found = _mode((level or {}).get("spec", {}).get("mtls")) if level is not None else None
        if found is not None:
            mode = found
    ports: dict[int, MtlsMode] = {}
    if workload is not None:
        for port, setting in ((workload.get("spec") or {}).get("portLevelMtls") or {}).items():
            port_mode = _mode(setting)
            if port_mode is not None and port_mode != mode:
                ports[int(port)] = port_mode
    return mode, ports


def _app_ports(snapshot: MeshSnapshot, node: ProxyNode, pod: Obj | None) -> dict[int, Protocol]:
    """Target ports of the Services selecting this workload, with their protocols."""
    container_ports: dict[str, int] = {}
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name"):
                container_ports[str(port["name"])] = int(port.get("containerPort") or 0)
    result: dict[int, Protocol] = {}
    for (namespace, _), service in snapshot.services.items():
        selector = (service.get("spec") or {}).get("selector")
        if namespace != node.namespace or not selector or not selects(selector, node.labels):
            continue
        for port in service_ports(service):
            target = port.get("targetPort", port.get("port"))
            number = container_ports.get(target, 0) if isinstance(target, str) else int(target or 0)
            if number:
                result.setdefault(number, port_protocol(port))
    return result


def _canonical(labels: dict[str, str], workload: str) -> tuple[str, str]:
    service = (labels.get("service.istio.io/canonical-name") or labels.get("app.kubernetes.io/name")
               or labels.get("app") or workload)
    revision = (labels.get("service.istio.io/canonical-revision") or labels.get("app.kubernetes.io/version")
                or labels.get("version") or "latest")
    return service, revision


def compile_inbound(snapshot: MeshSnapshot, node: ProxyNode, root_namespace: str) -> Inbound:
    mode, port_modes = resolve_mtls(snapshot, node, root_namespace)
    pod = snapshot.pods.get((node.namespace, node.pod))
    app_ports = _app_ports(snapshot, node, pod)
    ports = [InboundPort(port=p, protocol=app_ports.get(p, "tcp"), mtls_mode=port_modes.get(p, mode))
             for p in sorted(set(app_ports) | set(port_modes))]
    workload = workload_name(pod) if pod is not None else node.pod
    service, revision = _canonical(dict(node.labels), workload)
    return Inbound(default_mtls_mode=mode, ports=tuple(ports), workload=workload, namespace=node.namespace,
                   canonical_service=service, canonical_revision=revision,
                   authz=compile_authz(snapshot, node, root_namespace))
