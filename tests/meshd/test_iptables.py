"""istio-init's capture rules compared with Istio's golden outputs (``tools/istio-iptables/pkg/capture/testdata``).

Each case gives ``istio-iptables`` flags and the ``nat`` rules Istio writes for them (its golden
files, DNS capture off, REDIRECT mode); the cleanup of earlier rules is checked on a saved table.
"""

from __future__ import annotations

import pytest

from meshd.proxy.iptables import CaptureConfig, main, parse_args, restore_input, rules
from meshd.proxy.iptables_apply import cleanup_commands

HEAD = """-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006"""

OWNER_1337 = """-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN"""

INJECTED_FLAGS = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*",
                  "-d", "15090,15021,15020"]


def golden(*parts: str) -> list[str]:
    return "\n".join(parts).splitlines()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        # The injector's flags: inbound-wildcard-exclude.golden with kube-virt-interfaces.golden's catch-all.
        pytest.param(INJECTED_FLAGS, golden(
            HEAD,
            "-A PREROUTING -p tcp -j ISTIO_INBOUND",
            "-A ISTIO_INBOUND -p tcp -m multiport --dports 15090,15021,15020 -j RETURN",
            "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
            "-A OUTPUT -j ISTIO_OUTPUT",
            OWNER_1337,
            "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"), id="injected-defaults"),
        # inbound-ports-include.golden: -b 32000,31000 and no outbound capture.
        pytest.param(["-p", "15001", "-z", "15006", "-u", "1337", "-b", "32000,31000"], golden(
            HEAD,
            "-A PREROUTING -p tcp -j ISTIO_INBOUND",
            "-A ISTIO_INBOUND -p tcp --dport 32000 -j ISTIO_IN_REDIRECT",
            "-A ISTIO_INBOUND -p tcp --dport 31000 -j ISTIO_IN_REDIRECT",
            "-A OUTPUT -j ISTIO_OUTPUT",
            OWNER_1337), id="inbound-ports-include"),
        # outbound-ports-exclude.golden: -o 22,80,443.
        pytest.param(["-u", "1337", "-o", "22,80,443"], golden(
            HEAD,
            "-A OUTPUT -j ISTIO_OUTPUT",
            "-A ISTIO_OUTPUT -p tcp -m multiport --dports 22,80,443 -j RETURN",
            "-A ISTIO_OUTPUT -p udp -m multiport --dports 22,80,443 -j RETURN",
            OWNER_1337), id="outbound-ports-exclude"),
        # ip-range.golden (its DNS lines aside): -i 9.9.0.0/16 -x 1.1.0.0/16.
        pytest.param(["-u", "1337", "-i", "9.9.0.0/16", "-x", "1.1.0.0/16"], golden(
            HEAD,
            "-A OUTPUT -j ISTIO_OUTPUT",
            OWNER_1337,
            "-A ISTIO_OUTPUT -d 1.1.0.0/16 -j RETURN",
            "-A ISTIO_OUTPUT -d 9.9.0.0/16 -j ISTIO_REDIRECT",
            "-A ISTIO_OUTPUT -j RETURN"), id="ip-range"),
        # A single excluded inbound port is one --dport (outbound-ports-exclude-single.golden's form).
        pytest.param(["-u", "1337", "-b", "*", "-d", "15020"], golden(
            HEAD,
            "-A PREROUTING -p tcp -j ISTIO_INBOUND",
            "-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN",
            "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
            "-A OUTPUT -j ISTIO_OUTPUT",
            OWNER_1337), id="inbound-wildcard-single-exclude"),
    ],
)
def test_rules_match_istio_golden(flags: list[str], expected: list[str]) -> None:
    config, dry_run = parse_args(flags)
    assert not dry_run
    assert rules(config) == expected


def test_gid_defaults_to_uid_and_several_owners_each_get_their_rules() -> None:
    config, _ = parse_args(["-u", "1337,1338", "-g", "7"])
    assert config.proxy_uids == ("1337", "1338") and config.proxy_gids == ("7",)
    lines = rules(config)
    assert "-A ISTIO_OUTPUT -m owner --uid-owner 1338 -j RETURN" in lines
    assert "-A ISTIO_OUTPUT -m owner --gid-owner 7 -j RETURN" in lines
    assert not any("--gid-owner 1337" in line for line in lines)
    assert parse_args(["-u", "5"])[0].proxy_gids == ("5",)


def test_restore_input_is_one_nat_transaction() -> None:
    text = restore_input(CaptureConfig(include_ip_ranges=("*",)))
    assert text.startswith("* nat\n-N ISTIO_INBOUND\n") and text.endswith("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(["-m", "TPROXY"], "only REDIRECT", id="tproxy"),
        pytest.param(["-b", "80,http"], "-b: invalid port 'http'", id="bad-port"),
        pytest.param(["-i", "10.0.0.0/33"], "-i: invalid CIDR", id="bad-cidr"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_args(flags)


def test_ipv6_ranges_are_left_to_ip6tables() -> None:
    config, _ = parse_args(["-i", "10.96.0.0/12,fd00::/8", "-x", "fd01::/64"])
    assert config.include_ip_ranges == ("10.96.0.0/12",) and config.exclude_ip_ranges == ()


def test_dry_run_prints_and_applies_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*INJECTED_FLAGS, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out == restore_input(parse_args(INJECTED_FLAGS)[0])
    assert main(["-m", "TPROXY"]) == 2


SAVED = """# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sat Dec  5 11:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_INBOUND - [0:0]
:ISTIO_OUTPUT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -d 10.1.0.0/16 -j RETURN
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp -m multiport --dports 15090,15021,15020 -j RETURN
COMMIT
"""


def test_cleanup_removes_jumps_then_chains() -> None:
    assert cleanup_commands(SAVED) == [
        ["-D", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"],
        ["-D", "OUTPUT", "-j", "ISTIO_OUTPUT"],
        ["-F", "ISTIO_INBOUND"], ["-F", "ISTIO_OUTPUT"],
        ["-X", "ISTIO_INBOUND"], ["-X", "ISTIO_OUTPUT"],
    ]
    assert cleanup_commands("*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n") == []
