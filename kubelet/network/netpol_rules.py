"""Pure translation of NetworkPolicies + Pods + Namespaces into iptables filter chains.

Called by :mod:`kubelet.network.netpol` on every (debounced) sync and by its tests; nothing here runs a
process or reads the API. Pod-to-pod traffic on the cluster's bridge crosses the host's FORWARD chain
(``br_netfilter``: ``net.bridge.bridge-nf-call-iptables = 1``, which Docker turns on), so that is where
policies are enforced, for every pod of the cluster at once (the nodes of a laptop cluster share the
host's netfilter).

Chains (filter table; ``<P>`` is the cluster's ``KUBELAB-<tag>`` prefix of
:class:`~kubelet.network.iptables_rules.ChainNames`; every policy chain starts with ``<P>-NP``, so the
service proxy leaves them and the entry chain alone; ``kubelab down`` removes them with the rest):

* ``<P>-NETPOL`` (jumped to first from FORWARD): ``ESTABLISHED,RELATED`` → RETURN (replies and flows
  already admitted pass); then ``-s podIP`` → ``<P>-NPE-<hash>`` for each pod isolated for egress, and
  ``-d podIP`` → ``<P>-NPI-<hash>`` for each pod isolated for ingress. Traffic touching no isolated pod
  just RETURNs to FORWARD.
* ``<P>-NPI-<hash>`` / ``<P>-NPE-<hash>`` (one per isolated pod and direction, keyed by pod IP): clear
  the allow mark, one ``-j MARK --or-mark`` rule per (peer, port) a policy allows (the union of every
  policy selecting the pod), then RETURN when marked, else REJECT. Ingress from the nodes (``node_ips``,
  addresses or CIDRs: the pod network's gateway and the nodes' InternalIPs) is always allowed, as
  Kubernetes requires for kubelet probes (probes from the host leave through OUTPUT, never FORWARD; the
  rule covers node addresses forwarding too).
* ``<P>-NPB-<hash>``: one per ipBlock with ``except``: RETURN for each excepted CIDR, else mark.

Our chains never ACCEPT: an allowed packet returns to FORWARD and meets Docker's own rules as before.
Peers are expanded to pod IPs (pod and namespace selectors); named ports are resolved per pod: the
destination pod's container ports for ingress, each peer pod's for egress (an ipBlock cannot have a
named port, as in Kubernetes). ``endPort`` becomes a ``--dport a:b`` range.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubelet.network.iptables_rules import ChainNames, RuleSet, chain_hash
from machinery.selectors import LabelSelector, from_label_selector

__all__ = ["ALLOW_MARK", "PolicyInput", "build_policy_rules", "is_policy_chain", "netpol_chain", "netpol_jump"]

ALLOW_MARK = "0x10000"
_HASH_LEN = 7

Obj = dict[str, Any]


def netpol_chain(names: ChainNames) -> str:
    """The entry chain jumped to from FORWARD."""
    return f"{names.prefix}-NETPOL"


def _policy_prefix(names: ChainNames) -> str:
    return f"{names.prefix}-NP"


def is_policy_chain(name: str, names: ChainNames) -> bool:
    """True for the chains this module owns (the service proxy must not flush or delete them)."""
    return name == netpol_chain(names) or name.startswith(_policy_prefix(names))


def netpol_jump(names: ChainNames) -> tuple[str, str, list[str]]:
    """(table, built-in chain, rule spec) of the jump into the policy chains."""
    return ("filter", "FORWARD", ["-m", "comment", "--comment", f"kubelab {names.cluster} network policies",
                                  "-j", netpol_chain(names)])


@dataclass(frozen=True)
class PolicyInput:
    """The cluster state one sync works from (plain Kubernetes dicts)."""

    policies: list[Obj]
    pods: list[Obj]
    namespaces: list[Obj]
    node_ips: tuple[str, ...] = ()


def _selector(raw: Obj | None) -> LabelSelector:
    return from_label_selector(raw or {})


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _pod_ip(pod: Obj) -> str:
    status = pod.get("status") or {}
    if (pod.get("spec") or {}).get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return ""
    return str(status.get("podIP") or "")


def _named_port(pod: Obj, name: str, protocol: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _port_matches(ports: list[Obj] | None, pod: Obj | None) -> list[str] | None:
    """iptables match fragments for a rule's ports (``[""]``: any port); None when none applies to ``pod``."""
    if not ports:
        return [""]
    out = []
    for port in ports:
        protocol = str(port.get("protocol") or "TCP")
        proto = protocol.lower()
        value = port.get("port")
        if value is None:
            out.append(f"-p {proto} ")
            continue
        if isinstance(value, str) and not value.isdigit():
            number = _named_port(pod, value, protocol) if pod is not None else None
            if number is None:
                continue
            out.append(f"-p {proto} -m {proto} --dport {number} ")
            continue
        end = port.get("endPort")
        span = f"{int(value)}:{int(end)}" if end is not None and int(end) > int(value) else str(int(value))
        out.append(f"-p {proto} -m {proto} --dport {span} ")
    return out or None


class _Cluster:
    """Indexes of pods and namespaces for peer selection."""

    def __init__(self, state: PolicyInput) -> None:
        self.namespaces = {str(ns["metadata"]["name"]): _labels(ns) for ns in state.namespaces}
        self.pods = [p for p in state.pods if _pod_ip(p)]

    def select(self, policy_ns: str, peer: Obj) -> list[Obj]:
        pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
        if ns_sel is not None:
            ns_match = _selector(ns_sel)
            allowed = {name for name, labels in self.namespaces.items() if ns_match.matches(labels)}
        else:
            allowed = {policy_ns}
        pods = _selector(pod_sel) if pod_sel is not None else None
        return [p for p in self.pods if p["metadata"].get("namespace") in allowed
                and (pods is None or pods.matches(_labels(p)))]


def _peer_matches(cluster: _Cluster, policy_ns: str, peers: list[Obj] | None, ports: list[Obj] | None,
                  target: Obj, *, ingress: bool, rules: RuleSet, names: ChainNames, chain: str) -> list[str]:
    """Match fragments (address part + port part) for one rule of one policy, for ``target``."""
    side = "-s" if ingress else "-d"
    out: list[str] = []
    if not peers:
        # any peer; ingress named ports resolve against the target, egress ones cannot be resolved here
        for port in _port_matches(ports, target if ingress else None) or []:
            out.append(port)
        return out
    for peer in peers:
        block = peer.get("ipBlock")
        if block is not None:
            port_parts = _port_matches(ports, target if ingress else None) or []
            excepts = [str(e) for e in block.get("except") or []]
            for port in port_parts:
                if not excepts:
                    out.append(f"{side} {block['cidr']} {port}")
                    continue
                sub = f"{_policy_prefix(names)}B-{chain_hash(chain + repr(block) + port, _HASH_LEN)}"
                body = rules.chain("filter", sub)
                if not body:
                    body.extend(f"-A {sub} {side} {cidr} -j RETURN" for cidr in excepts)
                    body.append(f"-A {sub} -j MARK --or-mark {ALLOW_MARK}")
                out.append(f"{side} {block['cidr']} {port}-j {sub}")
            continue
        for pod in cluster.select(policy_ns, peer):
            for port in _port_matches(ports, target if ingress else pod) or []:
                out.append(f"{side} {_pod_ip(pod)}/32 {port}")
    return out


def _isolating(policies: Iterable[Obj], pod: Obj, kind: str) -> list[Obj]:
    ns = pod["metadata"].get("namespace")
    found = []
    for policy in policies:
        spec = policy.get("spec") or {}
        if policy["metadata"].get("namespace") != ns:
            continue
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
        if kind in types and _selector(spec.get("podSelector")).matches(_labels(pod)):
            found.append(policy)
    return found


def _sort_key(pod: Obj) -> tuple[int, ...]:
    return tuple(ipaddress.ip_address(_pod_ip(pod)).packed)


def build_policy_rules(state: PolicyInput, *, names: ChainNames) -> RuleSet:
    """Every policy chain of the cluster for this state (the whole desired state, filter table only)."""
    rules = RuleSet(chains={"filter": {}})
    entry = netpol_chain(names)
    main = rules.chain("filter", entry)
    main.append(f"-A {entry} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    cluster = _Cluster(state)
    policies = sorted(state.policies, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"]))
    for pod in sorted(cluster.pods, key=_sort_key):
        ip = _pod_ip(pod)
        key = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        for kind, flag, field_, peers_key, letter in (("Egress", "-s", "egress", "to", "E"),
                                                      ("Ingress", "-d", "ingress", "from", "I")):
            selecting = _isolating(policies, pod, kind)
            if not selecting:
                continue
            chain = f"{_policy_prefix(names)}{letter}-{chain_hash(ip + '/' + kind, _HASH_LEN)}"
            main.append(f"-A {entry} -m comment --comment \"{key} {kind.lower()}\" {flag} {ip}/32 -j {chain}")
            body = rules.chain("filter", chain)
            body.append(f"-A {chain} -j MARK --and-mark 0x{~int(ALLOW_MARK, 16) & 0xFFFFFFFF:x}")
            if kind == "Ingress":
                for node_ip in state.node_ips:
                    source = node_ip if "/" in node_ip else f"{node_ip}/32"
                    body.append(f"-A {chain} -m comment --comment \"node to pod\" -s {source} "
                                f"-j MARK --or-mark {ALLOW_MARK}")
            for policy in selecting:
                pname = f"{policy['metadata'].get('namespace')}/{policy['metadata']['name']}"
                for rule in (policy.get("spec") or {}).get(field_) or []:
                    for match in _peer_matches(cluster, policy["metadata"].get("namespace", ""),
                                               rule.get(peers_key), rule.get("ports"), pod,
                                               ingress=kind == "Ingress", rules=rules, names=names, chain=chain):
                        target = "" if "-j " in match else f"-j MARK --or-mark {ALLOW_MARK}"
                        body.append(f"-A {chain} -m comment --comment \"{pname}\" {match}{target}".rstrip())
            body.append(f"-A {chain} -m mark --mark {ALLOW_MARK}/{ALLOW_MARK} -j RETURN")
            body.append(f"-A {chain} -m comment --comment \"{key} {kind.lower()} denied by policy\" -j REJECT")
    main.append(f"-A {entry} -j RETURN")
    return rules
