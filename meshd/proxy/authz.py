"""Inbound authorization: the AuthorizationPolicies meshd compiled for this workload, decided per request or connection.

Built by :class:`meshd.proxy.config.ConfigStore` from :attr:`meshd.api.resources.Inbound.authz`
(a value that cannot be compiled -- a malformed CIDR -- raises :class:`ResourceError`, so the
proxy NACKs); consulted by :meth:`meshd.proxy.httpproxy.HttpProxy.inbound` for each HTTP request
and by :mod:`meshd.proxy.listeners` for each inbound TCP connection (after the TLS handshake, so
the peer's principal is known, and before the app is dialled).

Istio's evaluation (Envoy's RBAC filters, in Istio's order)::

    AUDIT policies   any match: the request is marked (logged), nothing else
    CUSTOM           any match: deny (meshd has no external authorizer: fail closed)
    DENY             any match: deny    -> 403 "RBAC: access denied" / connection closed
    ALLOW            none on the workload: allow; any match: allow; else deny (matched policy "none")

A policy matches when one of its rules does; a rule when one of its source clauses, one of its
operation clauses and every ``when`` condition hold (an empty list holds). Inside a clause every
attribute test holds: some ``values`` entry matches (or there are none) and no ``not_values``
entry does. An attribute the request lacks -- the principal of a plaintext connection, the
request principal (no JWT is verified here) -- matches no value.

Opaque TCP has no method, path, host, headers or request principal. As Istio generates it: in an
ALLOW (or AUDIT-less) rule such an HTTP-only test makes the whole rule unusable (it never
matches, so an ALLOW policy built only of them denies every TCP connection); in DENY, AUDIT and
CUSTOM rules HTTP-only tests are left out (the rule widens: "missing attributes match").

String matching is Istio's: exact, ``prefix*``, ``*suffix``, ``*`` (present, non-empty); hosts
ignore case; paths are matched without the query string, with ``.``/``..`` segments resolved,
and may use the path templates ``{*}`` (one segment) and ``{**}`` (the rest).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meshd.api.resources import AuthzClause, AuthzMatch, AuthzPolicy, ResourceError

__all__ = ["DENIED_BODY", "HTTP_ONLY_KEYS", "Attributes", "Authorizer", "Decision", "http_only", "normalized_path",
           "split_host_port"]

log = logging.getLogger(__name__)

DENIED_BODY = b"RBAC: access denied"
"""Envoy's body (and 403) for a request its RBAC filter refuses."""
HTTP_ONLY_KEYS = frozenset({"request.host", "request.method", "request.path", "request.auth.principal",
                            "request.auth.audiences", "request.auth.presenter"})
"""And every ``request.headers[...]`` / ``request.auth.claims[...]`` key."""

Test = Callable[["Attributes"], bool]


@dataclass(slots=True)
class Attributes:
    """What a decision reads about one request (``http``) or one TCP connection."""

    http: bool
    principal: str = ""
    """The verified peer's SPIFFE ID (``spiffe://...``) on mTLS, else empty."""
    source_ip: str = ""
    destination_ip: str = ""
    destination_port: int = 0
    method: str = ""
    path: str = ""
    host: str = ""
    headers: Sequence[tuple[str, str]] = ()
    """Lower-case names."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: str = ""
    """The id of the policy rule that denied (``none``: no ALLOW policy matched)."""
    audited: str = ""
    """The id of the AUDIT policy rule that matched, if any."""

    @property
    def details(self) -> str:
        """Envoy's ``%RESPONSE_CODE_DETAILS%`` / connection termination details for a denial."""
        return f"rbac_access_denied_matched_policy[{self.policy}]"


ALLOWED = Decision(True)


def split_host_port(address: str) -> tuple[str, int]:
    """``"10.0.0.1:3456"`` → ``("10.0.0.1", 3456)``; anything else → ``("", 0)``."""
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else ("", 0)


# --- matchers ------------------------------------------------------------------------------------


def _string(pattern: str, *, fold: bool = False) -> Callable[[str], bool]:
    if fold:
        pattern = pattern.lower()
    if pattern == "*":
        return lambda v: v != ""
    if pattern.startswith("*"):
        tail = pattern[1:]
        return (lambda v: v.lower().endswith(tail)) if fold else (lambda v: v.endswith(tail))
    if pattern.endswith("*"):
        head = pattern[:-1]
        return (lambda v: v.lower().startswith(head)) if fold else (lambda v: v.startswith(head))
    return (lambda v: v.lower() == pattern) if fold else (lambda v: v == pattern)


def _path(pattern: str) -> Callable[[str], bool]:
    if "{*}" not in pattern and "{**}" not in pattern:
        return _string(pattern)
    parts = re.split(r"(\{\*\*\}|\{\*\})", pattern)
    regex = "".join("[^/]+" if p == "{*}" else ".*" if p == "{**}" else re.escape(p) for p in parts)
    compiled = re.compile(regex)
    return lambda v: compiled.fullmatch(v) is not None


def _network(value: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ResourceError(f"{where}: invalid IP address or CIDR {value!r}") from None


def _ip(value: str, where: str) -> Callable[[str], bool]:
    network = _network(value, where)

    def test(address: str) -> bool:
        try:
            return ipaddress.ip_address(address) in network
        except ValueError:
            return False
    return test


def _without_spiffe(principal: str) -> str:
    return principal[9:] if principal.startswith("spiffe://") else principal


def _identity_part(principal: str, part: str) -> str:
    """``ns`` or ``sa`` of ``spiffe://td/ns/<ns>/sa/<sa>`` (empty when absent)."""
    pieces = principal.split("/")
    for index in range(len(pieces) - 1):
        if pieces[index] == part:
            return pieces[index + 1]
    return ""


def _glob(value: str) -> Callable[[str], bool]:
    compiled = re.compile(".*".join(re.escape(p) for p in value.split("*")))
    return lambda v: v != "" and compiled.fullmatch(v) is not None


def normalized_path(path: str) -> str:
    """The request path as policies see it: no query or fragment, ``.``/``..`` segments resolved."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if "/." not in path:
        return path
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    trailing = path.endswith(("/.", "/.."))
    return "/" + "/".join(out) + ("/" if trailing and out else "")


def _header_values(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    found = [v for k, v in headers if k == name]
    return ",".join(found) if found else None


def _value_test(key: str, value: str, where: str) -> Test:
    """``attrs -> bool`` for one ``values`` entry of ``key``."""
    if key == "source.principal":
        match = _string(value)
        return lambda a: a.principal != "" and match(_without_spiffe(a.principal))
    if key == "source.namespace":
        glob = _glob(value)
        return lambda a: glob(_identity_part(a.principal, "ns"))
    if key == "source.serviceaccount":
        return lambda a: a.principal != "" and (
            f"{_identity_part(a.principal, 'ns')}/{_identity_part(a.principal, 'sa')}" == value)
    if key in ("source.ip", "remote.ip"):
        ip = _ip(value, where)
        return lambda a: ip(a.source_ip)
    if key == "destination.ip":
        ip = _ip(value, where)
        return lambda a: ip(a.destination_ip)
    if key == "destination.port":
        if not value.isdigit() or not 0 <= int(value) <= 65535:
            raise ResourceError(f"{where}: invalid port {value!r}")
        port = int(value)
        return lambda a: a.destination_port == port
    if key == "request.host":
        host = _string(value, fold=True)
        return lambda a: host(a.host)
    if key == "request.method":
        method = _string(value)
        return lambda a: method(a.method)
    if key == "request.path":
        path = _path(value)
        return lambda a: path(normalized_path(a.path))
    if key.startswith("request.headers[") and key.endswith("]"):
        name = key[len("request.headers["):-1].lower()
        if value == "*":
            return lambda a: _header_values(a.headers, name) is not None
        match = _string(value)

        def header(a: Attributes) -> bool:
            joined = _header_values(a.headers, name)
            return joined is not None and (match(joined) or any(match(p) for p in joined.split(",")))
        return header
    if key == "connection.sni" or key.startswith("request.auth."):
        return lambda a: False  # sidecars send no SNI; no JWT is verified here: the attribute is absent
    raise ResourceError(f"{where}: unknown attribute {key!r}")


def http_only(key: str) -> bool:
    return key in HTTP_ONLY_KEYS or key.startswith(("request.headers[", "request.auth."))


@dataclass(slots=True)
class _Match:
    http_only: bool
    values: list[Test]
    not_values: list[Test]

    def holds(self, attrs: Attributes) -> bool:
        if self.values and not any(t(attrs) for t in self.values):
            return False
        return not any(t(attrs) for t in self.not_values)


def _match(spec: AuthzMatch, where: str) -> _Match:
    return _Match(http_only(spec.key), [_value_test(spec.key, v, f"{where}.values") for v in spec.values],
                  [_value_test(spec.key, v, f"{where}.not_values") for v in spec.not_values])


@dataclass(slots=True)
class _Rule:
    sources: list[list[_Match]]
    operations: list[list[_Match]]
    when: list[_Match]
    http_only: bool = field(init=False)

    def __post_init__(self) -> None:
        every = [m for c in (*self.sources, *self.operations) for m in c] + self.when
        self.http_only = any(m.http_only for m in every)

    def matches(self, attrs: Attributes, *, strict: bool) -> bool:
        """``strict`` (ALLOW on TCP): an HTTP-only test fails the rule; otherwise TCP skips such tests."""
        if not attrs.http:
            if strict and self.http_only:
                return False
            return (_any_clause(self.sources, attrs, tcp=True) and _any_clause(self.operations, attrs, tcp=True)
                    and all(m.holds(attrs) for m in self.when if not m.http_only))
        return (_any_clause(self.sources, attrs, tcp=False) and _any_clause(self.operations, attrs, tcp=False)
                and all(m.holds(attrs) for m in self.when))


def _any_clause(clauses: list[list[_Match]], attrs: Attributes, *, tcp: bool) -> bool:
    if not clauses:
        return True
    return any(all(m.holds(attrs) for m in clause if not (tcp and m.http_only)) for clause in clauses)


@dataclass(slots=True)
class _Policy:
    name: str
    action: str
    rules: list[_Rule]

    def matched_rule(self, attrs: Attributes) -> str:
        """The id of the first matching rule (``ns[..]-policy[..]-rule[i]``), else empty."""
        strict = self.action == "ALLOW"
        for index, rule in enumerate(self.rules):
            if rule.matches(attrs, strict=strict):
                return f"{self.name}-rule[{index}]"
        return ""


def _clauses(clauses: tuple[AuthzClause, ...], where: str) -> list[list[_Match]]:
    return [[_match(m, f"{where}[{c}].matches[{i}]") for i, m in enumerate(clause.matches)]
            for c, clause in enumerate(clauses)]


class Authorizer:
    """The workload's compiled policies; :meth:`check` decides one request or connection."""

    def __init__(self, policies: Sequence[AuthzPolicy] = ()) -> None:
        self._audit: list[_Policy] = []
        self._deny: list[_Policy] = []
        self._allow: list[_Policy] = []
        for p, policy in enumerate(policies):
            where = f"Inbound.authz[{p}]"
            rules = [_Rule(_clauses(rule.sources, f"{where}.rules[{r}].sources"),
                           _clauses(rule.operations, f"{where}.rules[{r}].operations"),
                           [_match(m, f"{where}.rules[{r}].when[{w}]") for w, m in enumerate(rule.when)])
                     for r, rule in enumerate(policy.rules)]
            compiled = _Policy(policy.name, policy.action, rules)
            {"AUDIT": self._audit, "ALLOW": self._allow}.get(policy.action, self._deny).append(compiled)
        # CUSTOM (failing closed) before DENY, as Envoy's ext_authz filter runs before the RBAC filters.
        self._deny.sort(key=lambda p: p.action != "CUSTOM")
        self.empty = not (self._audit or self._deny or self._allow)
        """No policy selects this workload: every request passes without evaluation."""

    def check(self, attrs: Attributes) -> Decision:
        audited = ""
        for policy in self._audit:
            audited = policy.matched_rule(attrs)
            if audited:
                log.info("authz audit: %s matched %s", audited, _describe(attrs))
                break
        for policy in self._deny:
            matched = policy.matched_rule(attrs)
            if matched:
                return Decision(False, matched, audited)
        if not self._allow:
            return Decision(True, "", audited) if audited else ALLOWED
        for policy in self._allow:
            if policy.matched_rule(attrs):
                return Decision(True, "", audited) if audited else ALLOWED
        return Decision(False, "none", audited)


def _describe(attrs: Attributes) -> str:
    who = attrs.principal or attrs.source_ip or "-"
    if attrs.http:
        return f"{attrs.method} {attrs.path} from {who} to port {attrs.destination_port}"
    return f"tcp connection from {who} to port {attrs.destination_port}"
