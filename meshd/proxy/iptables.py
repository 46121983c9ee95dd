"""Traffic capture rules of a meshed pod: Istio's ``istio-iptables`` flags in, ``iptables-restore`` input out.

The ``istio-init`` init container (added by the injector) runs ``python -m meshd.proxy.iptables``
with Istio's flags; this module parses them (:func:`parse_args`) and generates the ``nat`` table
rules as pure text (:func:`restore_input`); :mod:`meshd.proxy.iptables_apply` feeds them to
``iptables-restore`` in the pod's network namespace (the container has ``NET_ADMIN`` and
``NET_RAW``). The rules are Istio's, chain by chain (REDIRECT mode)::

    PREROUTING ─tcp─▶ ISTIO_INBOUND ── 15008 and excluded ports (-d): RETURN
                                    └─ included ports (-b, "*" = all tcp) ─▶ ISTIO_IN_REDIRECT ─▶ REDIRECT :15006
    OUTPUT ─▶ ISTIO_OUTPUT ── excluded outbound ports (-o, tcp and udp): RETURN
                           ├─ from 127.0.0.6 on lo (the proxy's inbound passthrough): RETURN
                           ├─ uid/gid 1337 to a non-loopback address over lo (the pod's own IP): ISTIO_IN_REDIRECT
                           ├─ other owners over lo: RETURN;  uid/gid 1337 anywhere: RETURN (no loop)
                           ├─ to 127.0.0.1: RETURN;  excluded CIDRs (-x): RETURN
                           └─ included CIDRs (-i, "*" = everything) ─▶ ISTIO_REDIRECT ─▶ REDIRECT :15001

The proxy finds the address a redirected connection was meant for with ``SO_ORIGINAL_DST``.
Only TCP is captured; DNS capture and TPROXY mode are not implemented (``-m TPROXY`` is refused).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["CaptureConfig", "main", "parse_args", "restore_input", "rules"]

HBONE_PORT = 15008
"""Istio's tunnel port: never captured inbound, never redirected back from the proxy."""
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6/32"
"""The source address the proxy uses towards the app for inbound traffic (exempt from capture)."""
LOCALHOST = "127.0.0.1/32"


@dataclass(frozen=True)
class CaptureConfig:
    """The flags of ``istio-iptables`` this module honours (Istio's defaults)."""

    proxy_port: int = 15001
    """``-p``: where outbound TCP is redirected."""
    inbound_port: int = 15006
    """``-z``: where inbound TCP is redirected."""
    proxy_uids: tuple[str, ...] = ("1337",)
    """``-u``: owners whose traffic is never captured (the proxy itself)."""
    proxy_gids: tuple[str, ...] = ("1337",)
    """``-g``: the same by group (default: the uids)."""
    include_ip_ranges: tuple[str, ...] = ()
    """``-i``: outbound destinations captured; ``("*",)`` = all; empty = outbound not captured."""
    exclude_ip_ranges: tuple[str, ...] = ()
    """``-x``: outbound destinations never captured."""
    include_inbound_ports: tuple[str, ...] = ()
    """``-b``: inbound ports captured; ``("*",)`` = all; empty = inbound not captured."""
    exclude_inbound_ports: tuple[str, ...] = ()
    """``-d``: inbound ports left alone when ``-b`` is ``*``."""
    exclude_outbound_ports: tuple[str, ...] = ()
    """``-o``: outbound destination ports never captured (tcp and udp)."""
    include_outbound_ports: tuple[str, ...] = field(default=())
    """``-q``: outbound ports captured even to excluded CIDRs."""


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _ports(value: str, flag: str) -> tuple[str, ...]:
    items = _list(value)
    if items == ("*",):
        return items
    for item in items:
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise ValueError(f"{flag}: invalid port {item!r}")
    return items


def _cidrs(value: str, flag: str) -> tuple[str, ...]:
    items = _list(value)
    if items == ("*",):
        return items
    out = []
    for item in items:
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValueError(f"{flag}: invalid CIDR {item!r}") from exc
        if network.version != 4:
            continue  # IPv6 rules belong to ip6tables; pods here are IPv4 only
        out.append(str(network))
    return tuple(out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m meshd.proxy.iptables",
                                     description="program a meshed pod's traffic capture (istio-iptables flags)")
    parser.add_argument("-p", "--envoy-port", default="15001")
    parser.add_argument("-z", "--inbound-capture-port", default="15006")
    parser.add_argument("-u", "--proxy-uid", default="1337")
    parser.add_argument("-g", "--proxy-gid", default="")
    parser.add_argument("-m", "--istio-inbound-interception-mode", default="REDIRECT")
    parser.add_argument("-i", "--istio-service-cidr", default="")
    parser.add_argument("-x", "--istio-service-exclude-cidr", default="")
    parser.add_argument("-b", "--istio-inbound-ports", default="")
    parser.add_argument("-d", "--istio-local-exclude-ports", default="")
    parser.add_argument("-o", "--istio-local-outbound-ports-exclude", default="")
    parser.add_argument("-q", "--istio-include-outbound-ports", default="")
    parser.add_argument("--dry-run", action="store_true", help="print the iptables-restore input, change nothing")
    parser.add_argument("--log_output_level", default="", help="accepted for Istio compatibility")
    return parser


def parse_args(argv: Sequence[str]) -> tuple[CaptureConfig, bool]:
    """(config, dry run) from ``istio-iptables`` arguments; ValueError names a bad flag value."""
    args = _parser().parse_args(list(argv))
    if args.istio_inbound_interception_mode != "REDIRECT":
        raise ValueError(f"-m: interception mode {args.istio_inbound_interception_mode!r} is not supported "
                         "(only REDIRECT)")
    uids = _list(args.proxy_uid)
    config = CaptureConfig(
        proxy_port=int(_ports(args.envoy_port, "-p")[0]),
        inbound_port=int(_ports(args.inbound_capture_port, "-z")[0]),
        proxy_uids=uids,
        proxy_gids=_list(args.proxy_gid) or uids,
        include_ip_ranges=_cidrs(args.istio_service_cidr, "-i"),
        exclude_ip_ranges=_cidrs(args.istio_service_exclude_cidr, "-x"),
        include_inbound_ports=_ports(args.istio_inbound_ports, "-b"),
        exclude_inbound_ports=_ports(args.istio_local_exclude_ports, "-d"),
        exclude_outbound_ports=_ports(args.istio_local_outbound_ports_exclude, "-o"),
        include_outbound_ports=_ports(args.istio_include_outbound_ports, "-q"),
    )
    return config, bool(args.dry_run)


def _dports(ports: Sequence[str]) -> str:
    return f"--dport {ports[0]}" if len(ports) == 1 else f"-m multiport --dports {','.join(ports)}"


def rules(config: CaptureConfig) -> list[str]:
    """The ``nat`` table commands, in Istio's order (chain creations first)."""
    out = ["-N ISTIO_INBOUND", "-N ISTIO_REDIRECT", "-N ISTIO_IN_REDIRECT", "-N ISTIO_OUTPUT",
           f"-A ISTIO_INBOUND -p tcp --dport {HBONE_PORT} -j RETURN",
           f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {config.proxy_port}",
           f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {config.inbound_port}"]
    # Inbound.
    if config.include_inbound_ports:
        out.append("-A PREROUTING -p tcp -j ISTIO_INBOUND")
        if config.include_inbound_ports == ("*",):
            if config.exclude_inbound_ports:
                out.append(f"-A ISTIO_INBOUND -p tcp {_dports(config.exclude_inbound_ports)} -j RETURN")
            out.append("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
        else:
            out.extend(f"-A ISTIO_INBOUND -p tcp --dport {port} -j ISTIO_IN_REDIRECT"
                       for port in config.include_inbound_ports)
    # Outbound.
    out.append("-A OUTPUT -j ISTIO_OUTPUT")
    if config.exclude_outbound_ports:
        out.append(f"-A ISTIO_OUTPUT -p tcp {_dports(config.exclude_outbound_ports)} -j RETURN")
        out.append(f"-A ISTIO_OUTPUT -p udp {_dports(config.exclude_outbound_ports)} -j RETURN")
    out.append(f"-A ISTIO_OUTPUT -o lo -s {INBOUND_PASSTHROUGH_SOURCE} -j RETURN")
    for flag, owners in (("--uid-owner", config.proxy_uids), ("--gid-owner", config.proxy_gids)):
        for owner in owners:
            out.append(f"-A ISTIO_OUTPUT -o lo ! -d {LOCALHOST} -p tcp ! --dport {HBONE_PORT} -m owner {flag} {owner} "
                       "-j ISTIO_IN_REDIRECT")
            out.append(f"-A ISTIO_OUTPUT -o lo -m owner ! {flag} {owner} -j RETURN")
            out.append(f"-A ISTIO_OUTPUT -m owner {flag} {owner} -j RETURN")
    out.append(f"-A ISTIO_OUTPUT -d {LOCALHOST} -j RETURN")
    if config.include_outbound_ports:
        out.append(f"-A ISTIO_OUTPUT -p tcp {_dports(config.include_outbound_ports)} -j ISTIO_REDIRECT")
    if config.include_ip_ranges:
        out.extend(f"-A ISTIO_OUTPUT -d {cidr} -j RETURN" for cidr in config.exclude_ip_ranges)
        if config.include_ip_ranges == ("*",):
            out.append("-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
        else:
            out.extend(f"-A ISTIO_OUTPUT -d {cidr} -j ISTIO_REDIRECT" for cidr in config.include_ip_ranges)
            out.append("-A ISTIO_OUTPUT -j RETURN")
    return out


def restore_input(config: CaptureConfig) -> str:
    """The whole ``iptables-restore --noflush`` input (the ``nat`` table)."""
    return "* nat\n" + "\n".join(rules(config)) + "\nCOMMIT\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m meshd.proxy.iptables``: parse, print the rules, apply them (unless ``--dry-run``)."""
    try:
        config, dry_run = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = restore_input(config)
    print(text, end="", flush=True)
    if dry_run:
        return 0
    from meshd.proxy.iptables_apply import IptablesError, apply  # I/O only when really applying

    try:
        print(apply(text), end="", flush=True)
    except IptablesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
