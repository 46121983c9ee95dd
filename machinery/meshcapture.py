"""A meshed pod's traffic capture as pure text: Istio's ``istio-iptables`` flags and annotations in,
``iptables-restore`` input out.

Two programs install the same rules in a pod's network namespace, so the rules live here, in
machinery, where both may import them:

* the ``istio-init`` init container runs ``python -m meshd.proxy.iptables`` with the flags the
  injector wrote (:func:`parse_args`, :func:`restore_input`);
* in CNI mode there is no ``istio-init``: the injector writes the capture settings as Istio's
  redirect annotations (:func:`redirect_annotations`) and the node agent -- a Docker node's
  kubelet, in the role of Istio's ``istio-cni`` plugin -- applies the rules when it creates the
  pod's sandbox, before any container runs (:func:`node_capture_args` decides whether a pod asks
  for that and with which flags).

:func:`capture_args` turns a pod's ``traffic.sidecar.istio.io/*`` annotations into the flags, with
Istio's defaults. The rules are Istio's, chain by chain (REDIRECT mode)::

    PREROUTING ─tcp─▶ ISTIO_INBOUND ── 15008 and excluded ports (-d): RETURN
                                    └─ included ports (-b, "*" = all tcp) ─▶ ISTIO_IN_REDIRECT ─▶ REDIRECT :15006
    OUTPUT ─▶ ISTIO_OUTPUT ── excluded outbound ports (-o, tcp and udp): RETURN
                           ├─ from 127.0.0.6 on lo (the proxy's inbound passthrough): RETURN
                           ├─ uid/gid 1337 to a non-loopback address over lo (the pod's own IP): ISTIO_IN_REDIRECT
                           ├─ other owners over lo: RETURN;  uid/gid 1337 anywhere: RETURN (no loop)
                           ├─ to 127.0.0.1: RETURN;  excluded CIDRs (-x): RETURN
                           └─ included CIDRs (-i, "*" = everything) ─▶ ISTIO_REDIRECT ─▶ REDIRECT :15001

Only TCP is captured; DNS capture and TPROXY mode are not implemented (``-m TPROXY`` is refused).
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "INIT_CONTAINER",
    "INTERCEPTION_MODE",
    "PROXY_CONTAINER",
    "STATUS_ANNOTATION",
    "TRAFFIC",
    "CaptureConfig",
    "capture_args",
    "node_capture_args",
    "parse_args",
    "redirect_annotations",
    "restore_input",
    "rules",
]

OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
PROXY_UID = 1337
EXCLUDED_INBOUND = ("15090", "15021", "15020")
"""The proxy's own ports (Prometheus, readiness, status): never captured inbound."""
INIT_CONTAINER = "istio-init"
PROXY_CONTAINER = "istio-proxy"
STATUS_ANNOTATION = "sidecar.istio.io/status"
"""Written by the injector on every pod it injected."""
INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"
TRAFFIC = "traffic.sidecar.istio.io/"
"""Prefix of the capture annotations (``includeOutboundIPRanges``, ``excludeInboundPorts`` ...)."""
_REDIRECT_KEYS = ("includeOutboundIPRanges", "excludeOutboundIPRanges", "includeInboundPorts",
                  "excludeInboundPorts", "excludeOutboundPorts")
_DEFAULTS = {"includeOutboundIPRanges": "*", "excludeOutboundIPRanges": "", "includeInboundPorts": "*",
             "excludeInboundPorts": "", "excludeOutboundPorts": ""}

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


def _annotation(annotations: Mapping[str, str], name: str) -> str:
    value = annotations.get(TRAFFIC + name)
    return _DEFAULTS[name] if value is None else str(value).strip()


def capture_args(annotations: Mapping[str, str]) -> list[str]:
    """``istio-iptables`` flags: Istio's defaults with the pod's ``traffic.sidecar.istio.io/*`` annotations."""
    excluded_inbound = list(EXCLUDED_INBOUND)
    extra = _annotation(annotations, "excludeInboundPorts")
    excluded_inbound += [p.strip() for p in extra.split(",") if p.strip() and p.strip() not in excluded_inbound]
    args = ["-p", str(OUTBOUND_PORT), "-z", str(INBOUND_PORT), "-u", str(PROXY_UID), "-m", "REDIRECT",
            "-i", _annotation(annotations, "includeOutboundIPRanges"),
            "-x", _annotation(annotations, "excludeOutboundIPRanges"),
            "-b", _annotation(annotations, "includeInboundPorts"),
            "-d", ",".join(excluded_inbound)]
    excluded_outbound = _annotation(annotations, "excludeOutboundPorts")
    if excluded_outbound:
        args += ["-o", excluded_outbound]
    return args


def redirect_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """What the injector writes in CNI mode, as Istio does: the interception mode and every capture
    setting with its effective value (the user's, else Istio's default; the mode is always REDIRECT),
    for the node agent to read."""
    out = {INTERCEPTION_MODE: "REDIRECT"}  # the only mode implemented: the injector warns about any other
    out.update({TRAFFIC + key: _annotation(annotations, key) for key in _REDIRECT_KEYS})
    return out


def _containers(spec: Mapping[str, Any], field_name: str) -> list[str]:
    return [str(c.get("name")) for c in spec.get(field_name) or [] if isinstance(c, Mapping)]


def node_capture_args(pod: Mapping[str, Any]) -> list[str] | None:
    """The flags the node agent applies for ``pod`` when it creates its sandbox, or None when the pod
    does not ask for it: as Istio's CNI plugin, a pod injected (``sidecar.istio.io/status``) with an
    ``istio-proxy`` container, no ``istio-init`` (it programs the rules itself then), not on the
    host's network. ValueError for an interception mode other than REDIRECT."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    if STATUS_ANNOTATION not in annotations or spec.get("hostNetwork"):
        return None
    inits = _containers(spec, "initContainers")
    if INIT_CONTAINER in inits or PROXY_CONTAINER not in [*inits, *_containers(spec, "containers")]:
        return None
    mode = str(annotations.get(INTERCEPTION_MODE) or "REDIRECT")
    if mode != "REDIRECT":
        raise ValueError(f"{INTERCEPTION_MODE} {mode!r} is not supported (only REDIRECT)")
    return capture_args(annotations)
