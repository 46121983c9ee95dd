"""The route table: a RouteConfig compiled once into matchers, evaluated per request.

Compiled when a configuration is applied (:func:`compile_route_config`), never per request:
``StringMatch`` becomes a bound predicate (``str.__eq__``, ``str.startswith`` or a compiled
regex's ``fullmatch``), domains become a dict (exact names, plus Envoy's ``*.suffix`` / ``*``
wildcards), and each route keeps its weights as a cumulative table.

Evaluation (:meth:`RouteTable.route`): the virtual host by the request's authority (with and
without the port), then the first route whose any match block holds (all conditions of a block
must hold; an empty match list matches everything). The caller then draws the destination with
:meth:`CompiledRoute.pick` from its own random source (deterministic in tests).

Mirroring is a field of :class:`CompiledRoute` (``mirrors``: clusters and percentages, carried
out by :mod:`meshd.proxy.mirror`). Traffic features not implemented (accepted with a warning by
meshd) would each be one too, set here at compile time and read by :mod:`meshd.proxy.httpproxy`:
request/response header manipulation (``set/add/remove`` lists applied before the upstream call
and after the response), rewrite/redirect/direct response (a short-circuit before the pick, like
faults). Per-cluster ones live in :mod:`meshd.proxy.balancer` (outlier detection) and would in
the upstream pools (connection-pool limits).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from meshd.api.resources import Fault, Mirror, RetryPolicy, Route, RouteConfig, RouteMatch, StringMatch

__all__ = ["CompiledRoute", "RequestView", "RouteTable", "compile_route_config", "compile_string_match"]

Predicate = Callable[[str], bool]


def compile_string_match(match: StringMatch) -> Predicate:
    """``exact`` / ``prefix`` / ``regex`` (a full match, as Envoy's RE2 ``safe_regex``)."""
    if match.exact is not None:
        return match.exact.__eq__
    if match.prefix is not None:
        prefix = match.prefix
        return lambda value: value.startswith(prefix)
    if match.regex is not None:
        pattern = re.compile(match.regex)
        return lambda value: pattern.fullmatch(value) is not None
    return lambda value: False


@dataclass(frozen=True, slots=True)
class RequestView:
    """What matching reads from a request: lower-case header names; the path with its query."""

    method: str
    path: str
    authority: str
    headers: Mapping[str, str]


class _CompiledMatch:
    __slots__ = ("authority", "headers", "method", "query", "uri", "without")

    def __init__(self, match: RouteMatch) -> None:
        self.uri = compile_string_match(match.uri) if match.uri else None
        self.method = compile_string_match(match.method) if match.method else None
        self.authority = compile_string_match(match.authority) if match.authority else None
        self.headers = [(k.lower(), compile_string_match(v)) for k, v in match.headers.items()]
        self.without = [(k.lower(), compile_string_match(v)) for k, v in match.without_headers.items()]
        self.query = [(k, compile_string_match(v)) for k, v in match.query_params.items()]

    def __call__(self, req: RequestView) -> bool:
        path, _, query = req.path.partition("?")
        if self.uri is not None and not self.uri(path):
            return False
        if self.method is not None and not self.method(req.method):
            return False
        if self.authority is not None and not self.authority(req.authority):
            return False
        for name, pred in self.headers:
            value = req.headers.get(name)
            if value is None or not pred(value):
                return False
        for name, pred in self.without:
            value = req.headers.get(name)
            if value is not None and pred(value):
                return False
        if self.query:
            params = _parse_query(query)
            for name, pred in self.query:
                value = params.get(name)
                if value is None or not pred(value):
                    return False
        return True


def _parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            params.setdefault(key, value)
    return params


class CompiledRoute:
    """One route, ready to evaluate: matchers, the weighted destinations, policy."""

    __slots__ = ("_cumulative", "_total", "clusters", "fault", "matchers", "mirrors", "name", "retries", "route",
                 "timeout")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.name = route.name
        self.matchers = [_CompiledMatch(m) for m in route.matches]
        dests = [d for d in route.destinations if d.weight > 0]
        self.clusters: tuple[str, ...] = tuple(d.cluster for d in dests)
        self._cumulative: list[int] = []
        total = 0
        for d in dests:
            total += d.weight
            self._cumulative.append(total)
        self._total = total
        self.timeout = route.timeout_ms / 1000.0
        self.fault: Fault | None = route.fault
        self.mirrors: tuple[Mirror, ...] = route.mirrors
        # Istio: a route with a fault gets no retries (the fault would be retried away).
        self.retries: RetryPolicy | None = None if route.fault is not None else route.retries

    def matches(self, req: RequestView) -> bool:
        if not self.matchers:
            return True
        return any(m(req) for m in self.matchers)

    def pick(self, draw: float) -> str | None:
        """The destination cluster for ``draw`` in [0, 1) (weights share w/Σw); None without one."""
        if not self.clusters:
            return None
        if len(self.clusters) == 1:
            return self.clusters[0]
        index = bisect.bisect_right(self._cumulative, draw * self._total)
        return self.clusters[min(index, len(self.clusters) - 1)]


class _Host:
    __slots__ = ("name", "routes")

    def __init__(self, name: str, routes: Sequence[CompiledRoute]) -> None:
        self.name = name
        self.routes = tuple(routes)


class RouteTable:
    """A compiled RouteConfig: authority → virtual host → first matching route."""

    def __init__(self, config: RouteConfig) -> None:
        self.name = config.name
        self._exact: dict[str, _Host] = {}
        self._suffix: list[tuple[str, _Host]] = []
        self._any: _Host | None = None
        for vhost in config.virtual_hosts:
            host = _Host(vhost.name, [CompiledRoute(r) for r in vhost.routes])
            for domain in vhost.domains:
                domain = domain.lower()
                if domain == "*":
                    self._any = self._any or host
                elif domain.startswith("*"):
                    self._suffix.append((domain[1:], host))
                else:
                    self._exact.setdefault(domain, host)
        self._suffix.sort(key=lambda item: -len(item[0]))

    def host_for(self, authority: str) -> _Host | None:
        authority = authority.lower()
        host = self._exact.get(authority)
        if host is None and ":" in authority and not authority.endswith("]"):
            host = self._exact.get(authority.rsplit(":", 1)[0])
        if host is None:
            for suffix, candidate in self._suffix:
                if authority.endswith(suffix):
                    return candidate
            host = self._any
        return host

    def route(self, req: RequestView) -> CompiledRoute | None:
        """The first route of the request's virtual host that matches (None: no host or no route)."""
        host = self.host_for(req.authority)
        if host is None:
            return None
        for route in host.routes:
            if route.matches(req):
                return route
        return None


def compile_route_config(config: RouteConfig) -> RouteTable:
    """Compile after :meth:`RouteConfig.check` passed (a bad regex raises there, not here)."""
    return RouteTable(config)
