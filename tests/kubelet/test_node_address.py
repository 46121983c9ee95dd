"""Docker nodes' place on the pod network (kubelet.network.node_address) and node → pod policy rules."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from kubelet.network.iptables_rules import ChainNames
from kubelet.network.netpol_rules import PolicyInput, build_policy_rules
from kubelet.network.node_address import (
    NodeAddressError,
    NodeNetwork,
    bridge_interface,
    ensure_node_address,
    keep_node_address,
    max_node_slots,
    node_addresses_block,
    node_network,
)


@pytest.mark.parametrize(("subnet", "slot", "expected"), [
    pytest.param("10.244.0.0/16", 1, NodeNetwork("10.244.0.2", "10.244.1.0/24"), id="first"),
    pytest.param("10.244.0.0/16", 2, NodeNetwork("10.244.0.3", "10.244.2.0/24"), id="second"),
    pytest.param("10.224.48.0/20", 15, NodeNetwork("10.224.48.16", "10.224.63.0/24"), id="last-of-a-20"),
    pytest.param("10.244.0.0/16", 253, NodeNetwork("10.244.0.254", "10.244.253.0/24"), id="last-address"),
])
def test_node_network_layout(subnet: str, slot: int, expected: NodeNetwork) -> None:
    assert node_network(subnet, slot) == expected


def test_every_slot_is_distinct_and_inside_the_subnet() -> None:
    subnet = ipaddress.ip_network("10.224.16.0/20")
    places = [node_network(str(subnet), slot) for slot in range(1, max_node_slots(str(subnet)) + 1)]
    assert len(places) == 15
    host_block = ipaddress.ip_network(node_addresses_block(str(subnet)) or "")
    gateway = next(subnet.hosts())
    ips = [ipaddress.ip_address(p.ip) for p in places]
    cidrs = [ipaddress.ip_network(p.pod_cidr) for p in places]
    assert len(set(ips)) == len(ips) and gateway not in ips
    assert all(ip in host_block for ip in ips)
    assert all(c.subnet_of(subnet) and not c.overlaps(host_block) for c in cidrs)  # type: ignore[arg-type]
    assert all(not a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1:])


@pytest.mark.parametrize(("subnet", "slot"), [
    pytest.param("10.244.0.0/16", 0, id="slot-zero-is-the-host"),
    pytest.param("10.244.0.0/16", 254, id="past-the-host-block"),
    pytest.param("10.224.16.0/20", 16, id="past-the-subnet"),
    pytest.param("10.250.1.0/24", 1, id="subnet-too-small"),
])
def test_slots_that_do_not_fit_are_refused(subnet: str, slot: int) -> None:
    with pytest.raises(ValueError, match="pod subnet"):
        node_network(subnet, slot)


def test_node_addresses_block() -> None:
    assert node_addresses_block("10.244.0.0/16") == "10.244.0.0/24"
    assert node_addresses_block("10.250.1.0/24") is None


@pytest.mark.parametrize(("attrs", "expected"), [
    pytest.param({"Id": "0123456789abcdef0123", "Options": {}}, "br-0123456789ab", id="docker-default"),
    pytest.param({"Id": "0123456789abcdef", "Options": {"com.docker.network.bridge.name": "kl0"}}, "kl0",
                 id="named-bridge"),
])
def test_bridge_interface(attrs: dict[str, object], expected: str) -> None:
    assert bridge_interface(attrs) == expected


def _fake_ip(tmp_path: Path, *, shown: str, add_exit: int = 0, add_err: str = "") -> tuple[str, Path]:
    """An ``ip`` stand-in that prints ``shown`` for ``addr show`` and logs every call."""
    calls = tmp_path / "calls"
    script = tmp_path / "ip"
    script.write_text(
        "#!/bin/sh\n"
        f"echo \"$@\" >> {calls}\n"
        "case \"$*\" in\n"
        f"  *show*) printf '%s\\n' '{shown}' ;;\n"
        f"  *add*) echo '{add_err}' >&2; exit {add_exit} ;;\n"
        "esac\n")
    script.chmod(0o755)
    return str(script), calls


def test_ensure_node_address_adds_a_host_route_address(tmp_path: Path) -> None:
    ip_command, calls = _fake_ip(tmp_path, shown="5: br-x    inet 10.244.0.1/16 brd 10.244.255.255 scope global br-x")
    assert ensure_node_address("br-x", "10.244.0.2", ip_command=ip_command) is True
    assert calls.read_text().splitlines()[-1] == "-4 addr add 10.244.0.2/32 dev br-x"


def test_ensure_node_address_is_idempotent(tmp_path: Path) -> None:
    ip_command, calls = _fake_ip(tmp_path, shown="5: br-x    inet 10.244.0.2/32 scope global br-x")
    assert ensure_node_address("br-x", "10.244.0.2", ip_command=ip_command) is False
    assert not any(" add " in f" {line} " for line in calls.read_text().splitlines())


def test_ensure_node_address_reports_a_refusal(tmp_path: Path) -> None:
    ip_command, _ = _fake_ip(tmp_path, shown="", add_exit=2, add_err="RTNETLINK answers: Operation not permitted")
    with pytest.raises(NodeAddressError, match="Operation not permitted"):
        ensure_node_address("br-x", "10.244.0.2", ip_command=ip_command)


def test_ensure_node_address_without_the_tool(tmp_path: Path) -> None:
    with pytest.raises(NodeAddressError):
        ensure_node_address("br-x", "10.244.0.2", ip_command=str(tmp_path / "missing"))


def test_policy_rules_allow_node_addresses_and_cidrs() -> None:
    pod = {"metadata": {"name": "db", "namespace": "ns", "labels": {"app": "db"}},
           "status": {"podIP": "10.244.1.5"}, "spec": {"containers": [{"name": "c"}]}}
    deny = {"metadata": {"name": "deny", "namespace": "ns"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    rules = build_policy_rules(PolicyInput([deny], [pod], [{"metadata": {"name": "ns"}}],
                                           ("10.244.0.1", "10.244.0.0/24")), names=ChainNames("t-nodeaddr"))
    text = "\n".join(line for body in rules.chains["filter"].values() for line in body)
    assert '"node to pod" -s 10.244.0.1/32 -j MARK' in text
    assert '"node to pod" -s 10.244.0.0/24 -j MARK' in text


async def test_keep_node_address_puts_a_lost_address_back(tmp_path: Path) -> None:
    """The bridge lost the address (a restarted engine) and was first not even found: the keeper
    survives the failed look-up and adds the address back to the bridge it finds next."""
    ip_command, calls = _fake_ip(tmp_path, shown="7: br-new    inet 10.244.0.1/16 scope global br-new")
    lookups = iter([RuntimeError("network not found")])

    def bridge() -> str:
        failure = next(lookups, None)
        if failure is not None:
            raise failure
        return "br-new"

    keeper = asyncio.create_task(keep_node_address(bridge, "10.244.0.2", period=0.01, ip_command=ip_command))
    try:
        for _ in range(500):
            if calls.exists() and "-4 addr add 10.244.0.2/32 dev br-new" in calls.read_text().splitlines():
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"the address was not added back: {calls.read_text() if calls.exists() else ''}")
        assert not keeper.done()
    finally:
        keeper.cancel()
