"""String ``format`` checks, as kube-openapi's default format registry (go-openapi strfmt) does.

kube-apiserver validates custom objects with ``strfmt.Default``: a string whose schema names one of
the formats below must parse as that format, otherwise the value is refused with
``<path> in body must be of type <format>: "<value>"``. Formats not in the registry (and the
numeric ones, ``int32``/``int64``/``float``/``double``, which only document the width) are accepted
as any value, as Kubernetes does. The checks follow Go's parsers (``net.ParseIP``,
``net.ParseCIDR``, ``net.ParseMAC``, ``base64.StdEncoding``, ``url.ParseRequestURI``, RFC 3339);
``hostname`` and ``email`` use ASCII-only approximations of strfmt's Unicode-aware patterns.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$")
_HOSTNAME = re.compile(
    r"^(?:[A-Za-z0-9](?:-?[A-Za-z0-9]{0,62})?|"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})$"
)
_MAC = re.compile(
    r"^(?:[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}|"
    r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){7}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){7}|"
    r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){19}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){19}|"
    r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){3}|"
    r"[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){9})$"
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_UUID_VERSIONED = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-(?P<v>[0-9a-fA-F])[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)
_DURATION = re.compile(
    r"^(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)\s*(?:ns|us|µs|ms|s|m|h|d|w|"
    r"nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)\s*)+$"
)


def _date_time(text: str) -> bool:
    match = _DATE_TIME.match(text)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        dt.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return False
    return second <= 60


def _date(text: str) -> bool:
    match = _DATE.match(text)
    if not match:
        return False
    try:
        dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return False
    return True


def _uri(text: str) -> bool:
    # url.ParseRequestURI: an absolute URI or an absolute path, no spaces or control characters.
    if not text or any(c.isspace() or ord(c) < 0x20 for c in text):
        return False
    if text.startswith("/"):
        return True
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return bool(parts.scheme) and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme) is not None


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return ":" in text


def _cidr(text: str) -> bool:
    if "/" not in text:
        return False
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _byte(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _uuid_version(version: str) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        match = _UUID_VERSIONED.match(text)
        return bool(match) and match is not None and match.group("v") == version

    return check


_CHECKS: dict[str, Callable[[str], bool]] = {
    "date-time": _date_time,
    "datetime": _date_time,
    "date": _date,
    "uri": _uri,
    "email": lambda t: bool(_EMAIL.match(t)),
    "hostname": lambda t: len(t) <= 255 and bool(_HOSTNAME.match(t)),
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "cidr": _cidr,
    "mac": lambda t: bool(_MAC.match(t)),
    "uuid": lambda t: bool(_UUID.match(t)),
    "uuid3": _uuid_version("3"),
    "uuid4": _uuid_version("4"),
    "uuid5": _uuid_version("5"),
    "byte": _byte,
    "duration": lambda t: bool(_DURATION.match(t.strip())),
    "hexcolor": lambda t: bool(re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", t)),
    "password": lambda t: True,
}


def known_format(name: str) -> bool:
    """Whether the registry checks this format (unknown formats accept any string)."""
    return name in _CHECKS


def valid_format(name: str, text: str) -> bool:
    """Whether ``text`` is a valid ``name``; formats outside the registry always pass."""
    check = _CHECKS.get(name)
    return True if check is None else check(text)
