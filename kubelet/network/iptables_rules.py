"""Pure translation of Services + Endpoints into an ``iptables-restore`` document (kube-proxy's iptables mode).

Called by :mod:`kubelet.network.proxy` on every (debounced) sync and by its tests; nothing here runs a
process or reads the API. Given the Service and Endpoints objects (plain Kubernetes dicts) it builds the
complete set of kubelab chains for one cluster and renders them for ``iptables-restore --noflush``.

Layout (``<P>`` is ``KUBELAB-<tag>``, the tag being the cluster name, or a hash of it when too long, so
several clusters coexist on one host; names stay within iptables' 28-character limit):

* nat ``<P>-SERVICES`` (jumped to from PREROUTING and OUTPUT): one rule per ClusterIP:port with ready
  endpoints → ``<P>-SVC-<hash>``; last, ``-m addrtype --dst-type LOCAL`` → ``<P>-NODEPORTS``.
* nat ``<P>-SVC-<hash>``: marks the packet for masquerade (all of it, or only traffic from outside
  ``cluster_cidr`` when that is known), ClientIP affinity via ``-m recent --rcheck``, then one
  ``-m statistic --mode random --probability 1/(n-i)`` rule per endpoint → ``<P>-SEP-<hash>`` (the last
  unconditional), so each of the n endpoints gets 1/n of new connections.
* nat ``<P>-SEP-<hash>``: hairpin masquerade mark for traffic from the endpoint itself, ``-m recent --set``
  for affinity, DNAT to ``podIP:port``.
* nat ``<P>-NODEPORTS``: per nodePort, mark for masquerade and jump to the service chain.
* nat ``<P>-MARK-MASQ`` sets the mark bit; ``<P>-POSTROUTING`` (from POSTROUTING) masquerades marked
  packets and clears the bit.
* filter ``<P>-SERVICES`` (from OUTPUT, FORWARD) and ``<P>-EXTERNAL`` (from INPUT, FORWARD): REJECT for
  ports of Services without ready endpoints (REJECT only exists in the filter table), as kube-proxy does.

Guarantee: the document declares (and so flushes) only chains with the cluster's prefix, never a
built-in chain; chains that existed but are no longer wanted are flushed and deleted in the same
transaction.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChainNames", "EndpointPort", "RuleSet", "ServicePort", "build_rules", "builtin_jumps", "chain_hash",
           "chains_in_save", "cluster_tag", "render_cleanup", "render_restore", "service_ports"]

DEFAULT_AFFINITY_SECONDS = 10800
MASQ_MARK = "0x4000"
_TAG_MAX = 8  # KUBELAB-<8>-POSTROUTING and KUBELAB-<8>-SVC-<7> are exactly 28, the iptables limit
_HASH_LEN = 7


def cluster_tag(cluster: str) -> str:
    """The cluster's short tag in chain names: the name itself when short and plain, else a hash."""
    if re.fullmatch(rf"[A-Za-z0-9]{{1,{_TAG_MAX}}}", cluster):
        return cluster
    return _hash(cluster, _TAG_MAX)


def _hash(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:length]


chain_hash = _hash
"""The short hash chain names end with (shared with :mod:`kubelet.network.netpol_rules`)."""


@dataclass(frozen=True)
class ChainNames:
    """Every chain name of one cluster; all share :attr:`prefix`."""

    cluster: str

    @property
    def prefix(self) -> str:
        """``KUBELAB-<tag>``: the only chains the proxy ever creates, flushes or deletes start with it."""
        return f"KUBELAB-{cluster_tag(self.cluster)}"

    @property
    def services(self) -> str:
        """Entry chain (same name in nat and filter)."""
        return f"{self.prefix}-SERVICES"

    @property
    def nodeports(self) -> str:
        """nat chain of NodePort rules."""
        return f"{self.prefix}-NODEPORTS"

    @property
    def external(self) -> str:
        """filter chain rejecting NodePorts without endpoints."""
        return f"{self.prefix}-EXTERNAL"

    @property
    def mark_masq(self) -> str:
        """nat chain that sets the masquerade mark."""
        return f"{self.prefix}-MARK-MASQ"

    @property
    def postrouting(self) -> str:
        """nat chain that masquerades marked packets."""
        return f"{self.prefix}-POSTROUTING"

    def svc(self, port_id: str) -> str:
        """Chain spreading one service port over its endpoints."""
        return f"{self.prefix}-SVC-{_hash(port_id, _HASH_LEN)}"

    def sep(self, port_id: str, endpoint: str) -> str:
        """Chain DNATing to one endpoint of one service port."""
        return f"{self.prefix}-SEP-{_hash(port_id + '/' + endpoint, _HASH_LEN)}"


# (table, built-in chain, rule spec) for each jump into our chains; ensured with -C / -I, removed by cleanup.
def builtin_jumps(names: ChainNames) -> list[tuple[str, str, list[str]]]:
    """Jumps from built-in chains into the cluster's chains, with a comment naming the cluster."""
    comment = ["-m", "comment", "--comment", f"kubelab {names.cluster} service portals"]
    return [
        ("nat", "PREROUTING", [*comment, "-j", names.services]),
        ("nat", "OUTPUT", [*comment, "-j", names.services]),
        ("nat", "POSTROUTING", ["-m", "comment", "--comment", f"kubelab {names.cluster} postrouting",
                                "-j", names.postrouting]),
        ("filter", "OUTPUT", [*comment, "-j", names.services]),
        ("filter", "FORWARD", [*comment, "-j", names.services]),
        ("filter", "INPUT", [*comment, "-j", names.external]),
        ("filter", "FORWARD", [*comment, "-j", names.external]),
    ]


@dataclass(frozen=True)
class EndpointPort:
    """One ready backend of a service port."""

    ip: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service, with what the proxy needs to program it."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    cluster_ip: str
    port: int
    node_port: int = 0
    affinity_seconds: int = 0
    endpoints: tuple[EndpointPort, ...] = ()

    @property
    def id(self) -> str:
        """``ns/name:portname`` (kube-proxy's ServicePortName), the seed of the chain hashes."""
        return f"{self.namespace}/{self.name}:{self.port_name}/{self.protocol.lower()}"


def service_ports(service: dict[str, Any], endpoints: dict[str, Any] | None) -> list[ServicePort]:
    """The programmable ports of a Service; none for headless, ExternalName or IP-less Services."""
    spec = service.get("spec") or {}
    meta = service.get("metadata") or {}
    cluster_ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or not cluster_ip or cluster_ip == "None":
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
    result = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if protocol not in ("TCP", "UDP", "SCTP"):
            continue
        port_name = port.get("name") or ""
        backends: set[EndpointPort] = set()
        for subset in (endpoints or {}).get("subsets") or []:
            for ep_port in subset.get("ports") or []:
                if (ep_port.get("name") or "") != port_name or (ep_port.get("protocol") or "TCP") != protocol:
                    continue
                for address in subset.get("addresses") or []:
                    if address.get("ip"):
                        backends.add(EndpointPort(address["ip"], int(ep_port["port"])))
        node_port = int(port.get("nodePort") or 0) if spec.get("type") in ("NodePort", "LoadBalancer") else 0
        result.append(ServicePort(
            namespace=meta.get("namespace") or "default", name=meta.get("name") or "", port_name=port_name,
            protocol=protocol, cluster_ip=cluster_ip, port=int(port["port"]), node_port=node_port,
            affinity_seconds=affinity, endpoints=tuple(sorted(backends, key=_endpoint_sort_key))))
    return result


def _endpoint_sort_key(ep: EndpointPort) -> tuple[tuple[int, ...], int]:
    try:
        parts = tuple(int(p) for p in ep.ip.split("."))
    except ValueError:
        parts = ()
    return parts, ep.port


@dataclass
class RuleSet:
    """Chains and their rules, per table, in order."""

    chains: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {"filter": {}, "nat": {}})

    def chain(self, table: str, name: str) -> list[str]:
        """The rule list of a chain, declaring it on first use."""
        return self.chains[table].setdefault(name, [])


def _probability(remaining: int) -> str:
    # kube-proxy prints 10 decimals; 1/n, 1/(n-1) … gives each endpoint an equal share.
    return f"{1.0 / remaining:.10f}"


def build_rules(ports: list[ServicePort], *, names: ChainNames, cluster_cidr: str | None = None) -> RuleSet:
    """Every kubelab chain of the cluster for these service ports (the whole desired state)."""
    rules = RuleSet()
    nat_services = rules.chain("nat", names.services)
    nodeports = rules.chain("nat", names.nodeports)
    rules.chain("nat", names.mark_masq).append(f"-A {names.mark_masq} -j MARK --or-mark {MASQ_MARK}")
    post = rules.chain("nat", names.postrouting)
    post.append(f"-A {names.postrouting} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN")
    post.append(f"-A {names.postrouting} -j MARK --xor-mark {MASQ_MARK}")
    post.append(f"-A {names.postrouting} -m comment --comment \"kubelab service traffic requiring SNAT\" "
                f"-j MASQUERADE")
    filter_services = rules.chain("filter", names.services)
    external = rules.chain("filter", names.external)
    for sp in sorted(ports, key=lambda p: p.id):
        proto = sp.protocol.lower()
        match = f"-p {proto} -m {proto}"
        if not sp.endpoints:
            filter_services.append(
                f"-A {names.services} -m comment --comment \"{sp.id} has no endpoints\" {match} "
                f"-d {sp.cluster_ip}/32 --dport {sp.port} -j REJECT")
            if sp.node_port:
                external.append(
                    f"-A {names.external} -m comment --comment \"{sp.id} has no endpoints\" "
                    f"-m addrtype --dst-type LOCAL {match} --dport {sp.node_port} -j REJECT")
            continue
        svc_chain = names.svc(sp.id)
        nat_services.append(f"-A {names.services} -m comment --comment \"{sp.id} cluster IP\" {match} "
                            f"-d {sp.cluster_ip}/32 --dport {sp.port} -j {svc_chain}")
        svc = rules.chain("nat", svc_chain)
        source = f"! -s {cluster_cidr} " if cluster_cidr else ""
        svc.append(f"-A {svc_chain} -m comment --comment \"{sp.id} cluster IP\" {match} {source}"
                   f"-d {sp.cluster_ip}/32 --dport {sp.port} -j {names.mark_masq}")
        if sp.node_port:
            comment = f"-m comment --comment \"{sp.id}\" {match} --dport {sp.node_port}"
            nodeports.append(f"-A {names.nodeports} {comment} -j {names.mark_masq}")
            nodeports.append(f"-A {names.nodeports} {comment} -j {svc_chain}")
        sep_chains = [(ep, names.sep(sp.id, f"{ep.ip}:{ep.port}")) for ep in sp.endpoints]
        if sp.affinity_seconds:
            for ep, sep_chain in sep_chains:
                svc.append(f"-A {svc_chain} -m comment --comment \"{sp.id} -> {ep.ip}:{ep.port}\" "
                           f"-m recent --name {sep_chain} --rcheck --seconds {sp.affinity_seconds} --reap "
                           f"-j {sep_chain}")
        for i, (ep, sep_chain) in enumerate(sep_chains):
            remaining = len(sep_chains) - i
            stat = f"-m statistic --mode random --probability {_probability(remaining)} " if remaining > 1 else ""
            svc.append(f"-A {svc_chain} -m comment --comment \"{sp.id} -> {ep.ip}:{ep.port}\" {stat}"
                       f"-j {sep_chain}")
            sep = rules.chain("nat", sep_chain)
            sep.append(f"-A {sep_chain} -m comment --comment \"{sp.id}\" -s {ep.ip}/32 -j {names.mark_masq}")
            recent = f"-m recent --name {sep_chain} --set " if sp.affinity_seconds else ""
            sep.append(f"-A {sep_chain} -m comment --comment \"{sp.id}\" {recent}{match} "
                       f"-j DNAT --to-destination {ep.ip}:{ep.port}")
    nat_services.append(f"-A {names.services} -m comment --comment \"kubelab service nodeports\" "
                        f"-m addrtype --dst-type LOCAL -j {names.nodeports}")
    return rules


def render_restore(rules: RuleSet, *, existing: dict[str, set[str]] | None = None,
                   tables: tuple[str, ...] = ("filter", "nat")) -> str:
    """The ``iptables-restore --noflush`` document: declare (flush) every wanted chain, append its rules,
    and flush + delete ``existing`` chains of the cluster that are no longer wanted."""
    out: list[str] = []
    for table in tables:
        wanted = rules.chains.get(table, {})
        stale = sorted((existing or {}).get(table, set()) - set(wanted))
        out.append(f"*{table}")
        out.extend(f":{name} - [0:0]" for name in [*wanted, *stale])
        for chain_rules in wanted.values():
            out.extend(chain_rules)
        out.extend(f"-X {name}" for name in stale)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def render_cleanup(existing: dict[str, set[str]]) -> str:
    """A restore document that flushes then deletes every listed chain (jumps from built-ins must be gone)."""
    out: list[str] = []
    for table in ("filter", "nat"):
        chains = sorted(existing.get(table, set()))
        if not chains:
            continue
        out.append(f"*{table}")
        out.extend(f":{name} - [0:0]" for name in chains)
        out.extend(f"-X {name}" for name in chains)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def chains_in_save(save_output: str, prefix: str) -> set[str]:
    """Chain names starting with ``prefix + '-'`` declared in ``iptables-save`` output of one table."""
    found = set()
    for line in save_output.splitlines():
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if name.startswith(prefix + "-"):
                found.add(name)
    return found
