"""NetworkPolicy rule generation: packets walked through the generated chains by a small evaluator of the
iptables subset the generator uses (addresses, protocol, port ranges, mark, RETURN/REJECT, sub-chains)."""

from __future__ import annotations

import ipaddress
import shlex
from typing import Any

import pytest

from kubelet.network.iptables_rules import ChainNames, RuleSet, render_restore
from kubelet.network.netpol_rules import PolicyInput, build_policy_rules, is_policy_chain, netpol_chain

NAMES = ChainNames("test")
GATEWAY = "10.244.0.1"
Obj = dict[str, Any]


def _pod(name: str, ip: str, ns: str = "default", *, port_name: str = "", port: int = 80, **labels: str) -> Obj:
    ports = [{"name": port_name, "containerPort": port}] if port_name else []
    return {"metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": ports}]},
            "status": {"phase": "Running", "podIP": ip}}


def _ns(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def _policy(name: str, spec: Obj, ns: str = "default") -> Obj:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


PODS = [
    _pod("web", "10.244.0.10", app="web", port_name="http", port=8080),
    _pod("client", "10.244.0.11", role="client"),
    _pod("other", "10.244.0.12", role="other"),
    _pod("prod-client", "10.244.0.20", "prod", role="client"),
]
NAMESPACES = [_ns("default"), _ns("prod", env="prod")]
WEB = {"matchLabels": {"app": "web"}}


def _verdict(rules: RuleSet, src: str, dst: str, port: int, proto: str = "tcp") -> str:
    """ACCEPT (returned to FORWARD) or REJECT, walking the entry chain as iptables would (NEW packets)."""
    chains = rules.chains["filter"]
    mark = 0

    def matches(words: list[str]) -> bool:
        i = 0
        while i < len(words):
            w = words[i]
            if w in ("-s", "-d"):
                net = ipaddress.ip_network(words[i + 1], strict=False)
                if ipaddress.ip_address(src if w == "-s" else dst) not in net:
                    return False
                i += 2
            elif w == "-p":
                if words[i + 1] != proto:
                    return False
                i += 2
            elif w == "--dport":
                low, _, high = words[i + 1].partition(":")
                if not int(low) <= port <= int(high or low):
                    return False
                i += 2
            elif w == "--mark":
                value, _, mask = words[i + 1].partition("/")
                if mark & int(mask, 16) != int(value, 16):
                    return False
                i += 2
            elif w == "--ctstate":
                return False  # only new connections are walked
            elif w == "--comment":
                i += 2
            else:
                i += 1
        return True

    def walk(chain: str) -> str | None:
        nonlocal mark
        for line in chains[chain]:
            words = shlex.split(line)[2:]
            at = words.index("-j")
            if not matches(words[:at]):
                continue
            target = words[at + 1]
            if target == "MARK":
                op, value = words[at + 2], int(words[at + 3], 16)
                mark = mark | value if op == "--or-mark" else mark & value
            elif target == "RETURN":
                return None
            elif target == "REJECT":
                return "REJECT"
            else:
                verdict = walk(target)
                if verdict is not None:
                    return verdict
        return None

    return walk(netpol_chain(NAMES)) or "ACCEPT"


def _rules(*policies: Obj) -> RuleSet:
    return build_policy_rules(PolicyInput(list(policies), PODS, NAMESPACES, (GATEWAY,)), names=NAMES)


DENY_WEB = _policy("deny", {"podSelector": WEB, "policyTypes": ["Ingress"]})
FROM_CLIENTS = _policy("clients", {"podSelector": WEB, "policyTypes": ["Ingress"], "ingress": [
    {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})
FROM_PROD = _policy("prod", {"podSelector": WEB, "policyTypes": ["Ingress"], "ingress": [
    {"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}]})
FROM_PROD_CLIENTS = _policy("prod-clients", {"podSelector": WEB, "policyTypes": ["Ingress"], "ingress": [
    {"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}, "podSelector": {"matchLabels": {"x": "y"}}}]}]})
NAMED_PORT = _policy("named", {"podSelector": WEB, "policyTypes": ["Ingress"], "ingress": [
    {"ports": [{"port": "http", "protocol": "TCP"}]}]})
PORT_RANGE = _policy("range", {"podSelector": WEB, "policyTypes": ["Ingress"], "ingress": [
    {"ports": [{"port": 9000, "endPort": 9010, "protocol": "TCP"}]}]})
IP_BLOCK = _policy("block", {"podSelector": WEB, "policyTypes": ["Ingress"], "ingress": [
    {"from": [{"ipBlock": {"cidr": "10.244.0.0/24", "except": ["10.244.0.12/32"]}}]}]})
EGRESS_DENY = _policy("egress", {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"]})
EGRESS_TO_WEB_HTTP = _policy("egress-web", {"podSelector": {"matchLabels": {"role": "client"}},
                                            "policyTypes": ["Egress"], "egress": [
    {"to": [{"podSelector": WEB}], "ports": [{"port": "http", "protocol": "TCP"}]}]})
ALLOW_ALL = _policy("all", {"podSelector": WEB, "policyTypes": ["Ingress"], "ingress": [{}]})


@pytest.mark.parametrize(("policies", "src", "dst", "port", "verdict"), [
    pytest.param((), "10.244.0.11", "10.244.0.10", 8080, "ACCEPT", id="no-policy-allows"),
    pytest.param((DENY_WEB,), "10.244.0.11", "10.244.0.10", 8080, "REJECT", id="default-deny-ingress"),
    pytest.param((DENY_WEB,), "10.244.0.10", "10.244.0.11", 80, "ACCEPT", id="deny-ingress-leaves-egress"),
    pytest.param((DENY_WEB,), GATEWAY, "10.244.0.10", 8080, "ACCEPT", id="node-to-pod-always"),
    pytest.param((DENY_WEB,), "10.244.0.11", "10.244.0.12", 80, "ACCEPT", id="unselected-pod-open"),
    pytest.param((DENY_WEB, FROM_CLIENTS), "10.244.0.11", "10.244.0.10", 8080, "ACCEPT", id="label-allowed"),
    pytest.param((FROM_CLIENTS,), "10.244.0.12", "10.244.0.10", 8080, "REJECT", id="label-other-denied"),
    pytest.param((FROM_CLIENTS,), "10.244.0.20", "10.244.0.10", 8080, "REJECT",
                 id="pod-selector-only-own-namespace"),
    pytest.param((FROM_PROD,), "10.244.0.20", "10.244.0.10", 8080, "ACCEPT", id="namespace-selector"),
    pytest.param((FROM_PROD,), "10.244.0.11", "10.244.0.10", 8080, "REJECT", id="namespace-selector-other"),
    pytest.param((FROM_PROD_CLIENTS,), "10.244.0.20", "10.244.0.10", 8080, "REJECT", id="ns-and-pod-selector"),
    pytest.param((NAMED_PORT,), "10.244.0.12", "10.244.0.10", 8080, "ACCEPT", id="named-port"),
    pytest.param((NAMED_PORT,), "10.244.0.12", "10.244.0.10", 80, "REJECT", id="named-port-other"),
    pytest.param((PORT_RANGE,), "10.244.0.12", "10.244.0.10", 9005, "ACCEPT", id="end-port-inside"),
    pytest.param((PORT_RANGE,), "10.244.0.12", "10.244.0.10", 9011, "REJECT", id="end-port-outside"),
    pytest.param((IP_BLOCK,), "10.244.0.11", "10.244.0.10", 8080, "ACCEPT", id="ip-block"),
    pytest.param((IP_BLOCK,), "10.244.0.12", "10.244.0.10", 8080, "REJECT", id="ip-block-except"),
    pytest.param((IP_BLOCK,), "10.244.1.5", "10.244.0.10", 8080, "REJECT", id="ip-block-outside"),
    pytest.param((EGRESS_DENY,), "10.244.0.11", "10.244.0.10", 8080, "REJECT", id="egress-deny"),
    pytest.param((EGRESS_DENY, EGRESS_TO_WEB_HTTP), "10.244.0.11", "10.244.0.10", 8080, "ACCEPT",
                 id="egress-named-port-to-peer"),
    pytest.param((EGRESS_TO_WEB_HTTP,), "10.244.0.11", "10.244.0.12", 80, "REJECT", id="egress-other-peer"),
    pytest.param((EGRESS_TO_WEB_HTTP, DENY_WEB), "10.244.0.11", "10.244.0.10", 8080, "REJECT",
                 id="egress-allowed-ingress-denied"),
    pytest.param((DENY_WEB, ALLOW_ALL), "10.244.0.12", "10.244.0.10", 1, "ACCEPT", id="union-of-policies"),
])
def test_verdicts(policies: tuple[Obj, ...], src: str, dst: str, port: int, verdict: str) -> None:
    assert _verdict(_rules(*policies), src, dst, port) == verdict


def test_udp_port_does_not_open_tcp() -> None:
    udp = _policy("udp", {"podSelector": WEB, "policyTypes": ["Ingress"], "ingress": [
        {"ports": [{"port": 53, "protocol": "UDP"}]}]})
    assert _verdict(_rules(udp), "10.244.0.11", "10.244.0.10", 53, "udp") == "ACCEPT"
    assert _verdict(_rules(udp), "10.244.0.11", "10.244.0.10", 53, "tcp") == "REJECT"


def test_policy_in_another_namespace_does_not_isolate() -> None:
    elsewhere = _policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]}, ns="prod")
    assert _verdict(_rules(elsewhere), "10.244.0.11", "10.244.0.10", 8080) == "ACCEPT"
    assert _verdict(_rules(elsewhere), "10.244.0.11", "10.244.0.20", 80) == "REJECT"


def test_chains_are_named_within_limits_and_owned() -> None:
    rules = _rules(DENY_WEB, FROM_CLIENTS, IP_BLOCK, EGRESS_DENY)
    names = list(rules.chains["filter"])
    assert all(len(n) <= 28 and is_policy_chain(n, NAMES) for n in names)
    assert not is_policy_chain(NAMES.services, NAMES)
    text = render_restore(rules, existing={"filter": {"KUBELAB-test-NPI-GONE"}}, tables=("filter",))
    assert text.startswith("*filter\n") and "-X KUBELAB-test-NPI-GONE" in text and "*nat" not in text
    assert "ACCEPT" not in text  # allowed packets return to FORWARD, never skip Docker's rules
