"""Kubernetes' CEL extension functions for ``x-kubernetes-validations``, as Python callbacks.

kube-apiserver compiles CRD rules with cel-go plus Kubernetes' libraries; the CEL engine used here
(the ``cel`` package, a Rust implementation) ships the CEL standard (macros, ``size``,
``matches``, ``contains``, ``startsWith``, ``endsWith``, conversions, ``duration``, ``timestamp``)
and accepts functions written in Python. This module supplies the rest, by the names real CRDs
call (method calls ``x.f(a)`` reach ``f(x, a)``):

- strings: ``charAt indexOf lastIndexOf lowerAscii upperAscii replace split substring trim join
  reverse format quote`` (code-point indexing; out-of-range arguments are errors, as in cel-go);
- lists: ``isSorted sum min max indexOf lastIndexOf`` (``indexOf`` serves strings and lists);
- regex: ``find findAll``;
- URLs: ``url isURL getScheme getHost getHostname getPort getEscapedPath getQuery``;
- IPs and CIDRs: ``ip isIP cidr isCIDR family isUnspecified isLoopback isLinkLocalMulticast
  isLinkLocalUnicast isGlobalUnicast containsIP containsCIDR masked prefixLength``;
- quantities: ``quantity isQuantity isInteger asInteger asApproximateFloat sign add sub
  isGreaterThan isLessThan compareTo`` (on :mod:`machinery.quantity`).

Approximation: the engine converts callback results to CEL values, so a URL, IP, CIDR or quantity
is a small tagged map (``{"__cel_type__": "url", "value": "…"}``) rather than an opaque type;
the functions above accept and return those maps, so rules compose as in Kubernetes, but
``string(ip(x))`` or ``type(url(x))`` do not behave as in cel-go.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

from machinery.quantity import Quantity, parse_quantity

from .regex import compile_go

TAG = "__cel_type__"
Function = Callable[..., Any]


class CelFunctionError(ValueError):
    """A library function refused its arguments (becomes a rule evaluation error)."""


def _tagged(kind: str, value: str) -> dict[str, str]:
    return {TAG: kind, "value": value}


def _untag(value: Any, kind: str) -> str:
    if isinstance(value, dict) and value.get(TAG) == kind:
        return str(value["value"])
    raise CelFunctionError(f"no such overload: expected {kind}")


# --- strings ----------------------------------------------------------------------------------


def _char_at(s: str, i: int) -> str:
    if i < 0 or i > len(s):
        raise CelFunctionError(f"index out of range: {i}")
    return s[i : i + 1]


def _index_of(target: Any, needle: Any, start: int = 0) -> int:
    if isinstance(target, list):
        for i, item in enumerate(target):
            if item == needle and type(item) is type(needle):
                return i
        return -1
    if start < 0 or start > len(target):
        raise CelFunctionError(f"index out of range: {start}")
    return int(target.find(needle, start))


def _last_index_of(target: Any, needle: Any, *rest: int) -> int:
    if isinstance(target, list):
        for i in range(len(target) - 1, -1, -1):
            if target[i] == needle and type(target[i]) is type(needle):
                return i
        return -1
    end = rest[0] if rest else len(target)
    if end < 0 or end > len(target):
        raise CelFunctionError(f"index out of range: {end}")
    return int(target.rfind(needle, 0, end + len(needle)))


def _substring(s: str, start: int, end: int | None = None) -> str:
    stop = len(s) if end is None else end
    if start < 0 or start > len(s) or stop < start or stop > len(s):
        raise CelFunctionError(f"index out of range: {start if start < 0 or start > len(s) else stop}")
    return s[start:stop]


def _replace(s: str, old: str, new: str, n: int = -1) -> str:
    return s.replace(old, new, n) if n >= 0 else s.replace(old, new)


def _split(s: str, sep: str, n: int = -1) -> list[str]:
    if n == 0:
        return []
    if sep == "":
        chars = list(s)
        return chars if n < 0 or n >= len(chars) else [*chars[: n - 1], "".join(chars[n - 1 :])]
    return s.split(sep, n - 1) if n > 0 else s.split(sep)


def _join(items: list[str], sep: str = "") -> str:
    if not all(isinstance(i, str) for i in items):
        raise CelFunctionError("join: list must contain strings")
    return sep.join(items)


def _lower_ascii(s: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in s)


def _upper_ascii(s: str) -> str:
    return "".join(c.upper() if c.isascii() else c for c in s)


def _format(template: str, args: list[Any]) -> str:
    """cel-go's ``strings.format`` for the common verbs (%s %d %f %e %x %o %b %%)."""
    out, arg_index, i = [], 0, 0
    while i < len(template):
        c = template[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        match = re.match(r"%(\.\d+)?([sdfexXob%])", template[i:])
        if not match:
            raise CelFunctionError(f"could not parse formatting clause at {i}")
        precision, verb = match.groups()
        i += match.end()
        if verb == "%":
            out.append("%")
            continue
        if arg_index >= len(args):
            raise CelFunctionError(f"index {arg_index} out of range")
        arg = args[arg_index]
        arg_index += 1
        out.append(_format_one(verb, precision, arg))
    return "".join(out)


def _format_one(verb: str, precision: str | None, arg: Any) -> str:
    if verb == "s":
        if isinstance(arg, bool):
            return "true" if arg else "false"
        if isinstance(arg, str):
            return arg
        if arg is None:
            return "null"
        return json.dumps(arg) if isinstance(arg, list | dict) else str(arg)
    if verb == "d":
        return str(int(arg))
    if verb in "fe":
        digits = int(precision[1:]) if precision else 6
        return f"{float(arg):.{digits}{verb}}"
    if verb in "xX":
        text = arg.encode().hex() if isinstance(arg, str) else format(int(arg), "x")
        return text.upper() if verb == "X" else text
    return format(int(arg), "o" if verb == "o" else "b")


# --- lists ------------------------------------------------------------------------------------


def _is_sorted(items: list[Any]) -> bool:
    return all(items[i] <= items[i + 1] for i in range(len(items) - 1))


def _sum(items: list[Any]) -> Any:
    return sum(items) if items else 0


def _min(items: Any, *rest: Any) -> Any:
    values = [items, *rest] if rest or not isinstance(items, list) else items
    if not values:
        raise CelFunctionError("min(list) argument must not be empty")
    return min(values)


def _max(items: Any, *rest: Any) -> Any:
    values = [items, *rest] if rest or not isinstance(items, list) else items
    if not values:
        raise CelFunctionError("max(list) argument must not be empty")
    return max(values)


# --- regex ------------------------------------------------------------------------------------


def _find(s: str, pattern: str) -> str:
    match = compile_go(pattern).search(s)
    return match.group(0) if match else ""


def _find_all(s: str, pattern: str, n: int = -1) -> list[str]:
    found = [m.group(0) for m in compile_go(pattern).finditer(s)]
    return found if n < 0 else found[:n]


# --- URLs -------------------------------------------------------------------------------------


def _parse_url(s: str) -> Any:
    """Go's ``url.ParseRequestURI``: an absolute URI or an absolute path."""
    if not s or any(c.isspace() for c in s):
        return None
    try:
        parts = urlsplit(s)
        _ = parts.port
    except ValueError:
        return None
    if not parts.scheme and not s.startswith("/"):
        return None
    if parts.scheme and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme):
        return None
    return parts


def _url(s: str) -> dict[str, str]:
    if _parse_url(s) is None:
        raise CelFunctionError(f"URL parse error during conversion from string: parse {json.dumps(s)}: invalid URI")
    return _tagged("url", s)


def _is_url(s: str) -> bool:
    return _parse_url(s) is not None


def _url_parts(u: Any) -> Any:
    return _parse_url(_untag(u, "url"))


def _get_host(u: Any) -> str:
    return str(_url_parts(u).netloc.rpartition("@")[2])


def _get_hostname(u: Any) -> str:
    host = _get_host(u)
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _get_port(u: Any) -> str:
    host = _get_host(u)
    tail = host[host.index("]") + 1 :] if host.startswith("[") else host
    return tail.rsplit(":", 1)[1] if ":" in tail else ""


def _get_query(u: Any) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    from urllib.parse import parse_qsl

    for k, v in parse_qsl(_url_parts(u).query, keep_blank_values=True):
        query.setdefault(k, []).append(v)
    return query


# --- IPs and CIDRs ----------------------------------------------------------------------------


def _parse_ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in s:
        return None
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return None  # Kubernetes refuses IPv4-mapped IPv6 addresses
    return addr


def _ip(value: Any) -> dict[str, str]:
    if isinstance(value, dict) and value.get(TAG) == "cidr":
        return _tagged("ip", str(ipaddress.ip_interface(value["value"]).ip))
    if _parse_ip(value) is None:
        raise CelFunctionError(f"IP Address {json.dumps(value)} parse error during conversion from string")
    return _tagged("ip", value)


def _ip_of(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    text = value if isinstance(value, str) else _untag(value, "ip")
    addr = _parse_ip(text)
    if addr is None:
        raise CelFunctionError(f"IP Address {json.dumps(text)} parse error")
    return addr


def _parse_cidr(s: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    if "/" not in s or _parse_ip(s.split("/", 1)[0]) is None:
        return None
    try:
        return ipaddress.ip_interface(s)
    except ValueError:
        return None


def _cidr(s: str) -> dict[str, str]:
    if _parse_cidr(s) is None:
        raise CelFunctionError(f"network address parse error during conversion from string: {json.dumps(s)}")
    return _tagged("cidr", s)


def _cidr_of(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    text = value if isinstance(value, str) else _untag(value, "cidr")
    parsed = _parse_cidr(text)
    if parsed is None:
        raise CelFunctionError(f"network address {json.dumps(text)} parse error")
    return parsed


def _contains_ip(c: Any, ip: Any) -> bool:
    return _ip_of(ip) in _cidr_of(c).network


def _contains_cidr(c: Any, other: Any) -> bool:
    inner = _cidr_of(other).network
    outer = _cidr_of(c).network
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _masked(c: Any) -> dict[str, str]:
    return _tagged("cidr", str(_cidr_of(c).network))


# --- quantities -------------------------------------------------------------------------------


def _quantity_of(value: Any) -> Quantity:
    try:
        return parse_quantity(_untag(value, "quantity"))
    except ValueError as exc:
        raise CelFunctionError(str(exc)) from exc


def _quantity(s: str) -> dict[str, str]:
    try:
        parse_quantity(s)
    except ValueError as exc:
        raise CelFunctionError(f"quantities must match the regular expression: {exc}") from exc
    return _tagged("quantity", s)


def _is_quantity(s: str) -> bool:
    try:
        parse_quantity(s)
    except ValueError:
        return False
    return True


def _as_fraction(q: Quantity) -> Fraction:
    return Fraction(q.milli_value(), 1000)


def _q_operand(value: Any) -> Quantity:
    return Quantity.from_value(value) if isinstance(value, int) else _quantity_of(value)


def _q_add(a: Any, b: Any) -> dict[str, str]:
    return _tagged("quantity", str(_quantity_of(a) + _q_operand(b)))


def _q_sub(a: Any, b: Any) -> dict[str, str]:
    return _tagged("quantity", str(_quantity_of(a) - _q_operand(b)))


def _q_compare(a: Any, b: Any) -> int:
    x, y = _quantity_of(a), _quantity_of(b)
    return 0 if x == y else (-1 if x < y else 1)


def _q_as_integer(a: Any) -> int:
    value = _as_fraction(_quantity_of(a))
    if value.denominator != 1 or abs(value) > 2**63 - 1:
        raise CelFunctionError("cannot convert value to integer")
    return int(value)


def _q_sign(a: Any) -> int:
    value = _as_fraction(_quantity_of(a))
    return 0 if value == 0 else int(math.copysign(1, value))


def _ip_family(x: Any) -> int:
    return 4 if _ip_of(x).version == 4 else 6


def _is_link_local_multicast(x: Any) -> bool:
    addr = _ip_of(x)
    if addr.version == 4:
        return addr in ipaddress.ip_network("224.0.0.0/24")
    return addr in ipaddress.ip_network("ff02::/16")


def _is_global_unicast(x: Any) -> bool:
    addr = _ip_of(x)
    return (
        not (addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local)
        and str(addr) != "255.255.255.255"
    )


def functions() -> dict[str, Function]:
    """Every extension function by its CEL name."""
    return {
        "charAt": _char_at,
        "indexOf": _index_of,
        "lastIndexOf": _last_index_of,
        "lowerAscii": _lower_ascii,
        "upperAscii": _upper_ascii,
        "replace": _replace,
        "split": _split,
        "substring": _substring,
        "trim": lambda s: s.strip(),
        "join": _join,
        "reverse": lambda s: s[::-1],
        "format": _format,
        "quote": lambda s: json.dumps(s, ensure_ascii=False),
        "isSorted": _is_sorted,
        "sum": _sum,
        "min": _min,
        "max": _max,
        "find": _find,
        "findAll": _find_all,
        "url": _url,
        "isURL": _is_url,
        "getScheme": lambda u: _url_parts(u).scheme,
        "getHost": _get_host,
        "getHostname": _get_hostname,
        "getPort": _get_port,
        "getEscapedPath": lambda u: _url_parts(u).path,
        "getQuery": _get_query,
        "ip": _ip,
        "isIP": lambda s: _parse_ip(s) is not None,
        "cidr": _cidr,
        "isCIDR": lambda s: _parse_cidr(s) is not None,
        "family": _ip_family,
        "isUnspecified": lambda x: _ip_of(x).is_unspecified,
        "isLoopback": lambda x: _ip_of(x).is_loopback,
        "isLinkLocalMulticast": _is_link_local_multicast,
        "isLinkLocalUnicast": lambda x: _ip_of(x).is_link_local,
        "isGlobalUnicast": _is_global_unicast,
        "containsIP": _contains_ip,
        "containsCIDR": _contains_cidr,
        "masked": _masked,
        "prefixLength": lambda c: _cidr_of(c).network.prefixlen,
        "quantity": _quantity,
        "isQuantity": _is_quantity,
        "isInteger": lambda q: _as_fraction(_quantity_of(q)).denominator == 1,
        "asInteger": _q_as_integer,
        "asApproximateFloat": lambda q: float(_as_fraction(_quantity_of(q))),
        "sign": _q_sign,
        "add": _q_add,
        "sub": _q_sub,
        "isGreaterThan": lambda a, b: _q_compare(a, b) > 0,
        "isLessThan": lambda a, b: _q_compare(a, b) < 0,
        "compareTo": _q_compare,
    }


BUILTIN_FUNCTIONS = frozenset(
    {
        "size", "matches", "contains", "startsWith", "endsWith", "int", "uint", "double", "string", "bytes",
        "bool", "dyn", "type", "duration", "timestamp", "has", "hasValue", "value", "orValue", "getDate",
        "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours", "getMilliseconds",
        "getMinutes", "getMonth", "getSeconds",
    }
)
"""Functions the engine provides itself (the CEL standard library)."""
