"""The configuration a sidecar applies, as meshd compiles it from Services, endpoints and Istio resources.

Four resource types, pushed in this order so a proxy never routes to something it lacks
(Envoy's make-before-break: clusters, then routes, then listeners):

``Cluster`` (:data:`CLUSTERS`)
    One Service port, optionally one DestinationRule subset: its ready endpoints (with each
    endpoint's SPIFFE identity when it runs a sidecar), load-balancing policy, client TLS mode
    and passive health checking (:class:`OutlierDetection`, absent: none).
    Named like Istio's ``outbound|<port>|<subset>|<fqdn>``.
``RouteConfig`` (:data:`ROUTES`)
    Per outbound port (named by the port number, as Istio's RDS does): virtual hosts, one per
    Service, whose ``domains`` are the names an app may use for it (``reviews``,
    ``reviews.default``, ``reviews.default.svc.cluster.local``, the ClusterIP, each with and
    without ``:port``), each with an ordered route list compiled from the VirtualService (the
    first matching route wins) and a default route to the whole Service.
``Listener`` (:data:`LISTENERS`)
    A Service port the app may dial (ClusterIP:port): its protocol and either the route
    configuration (HTTP protocols) or the cluster (TCP, TLS) that serves it. Traffic to an
    address no listener names passes through untouched (Istio's ``ALLOW_ANY``).
``Inbound`` (:data:`INBOUND`)
    The workload's own side: the resolved PeerAuthentication mode per port, the app ports
    with their protocols, and the AuthorizationPolicies that select the workload
    (:class:`AuthzPolicy`, evaluated by :mod:`meshd.proxy.authz`). There is exactly one, named ``inbound``.

Each type is state of the world: a response carries every resource of its type for that proxy,
and a name missing from it is deleted. Resources are frozen dataclasses; :func:`encode` and
:func:`decode` convert to and from JSON-ready dicts. :func:`decode` is strict (an unknown field,
a wrong type or a bad enum value raises :class:`ResourceError` naming the path), so a proxy
NACKs what it cannot apply instead of half-applying it; checks a proxy must run before applying
(a regular expression that does not compile) are in :meth:`RouteConfig.check`.

Durations are integer milliseconds; percentages are floats in [0, 100].
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

__all__ = [
    "CLUSTERS",
    "INBOUND",
    "LISTENERS",
    "PUSH_ORDER",
    "ROUTES",
    "TYPES",
    "Abort",
    "AuthzAction",
    "AuthzClause",
    "AuthzMatch",
    "AuthzPolicy",
    "AuthzRule",
    "Cluster",
    "Delay",
    "Endpoint",
    "Fault",
    "Inbound",
    "InboundPort",
    "LbPolicy",
    "Listener",
    "Mirror",
    "MtlsMode",
    "OutlierDetection",
    "Protocol",
    "ResourceError",
    "RetryPolicy",
    "Route",
    "RouteConfig",
    "RouteMatch",
    "StringMatch",
    "TlsMode",
    "VirtualHost",
    "WeightedCluster",
    "cluster_name",
    "decode",
    "encode",
]

CLUSTERS = "type.kubelab.dev/mesh.Cluster"
ROUTES = "type.kubelab.dev/mesh.RouteConfig"
LISTENERS = "type.kubelab.dev/mesh.Listener"
INBOUND = "type.kubelab.dev/mesh.Inbound"
PUSH_ORDER: tuple[str, ...] = (CLUSTERS, ROUTES, LISTENERS, INBOUND)

Protocol = Literal["http", "http2", "grpc", "tcp", "tls"]
"""From the Service port's ``appProtocol`` or name prefix (``http-web``, ``grpc``); else ``tcp`` (opaque)."""
LbPolicy = Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"]
TlsMode = Literal["AUTO", "ISTIO_MUTUAL", "DISABLE"]
"""Client side. ``AUTO`` (Istio's auto-mTLS): mTLS to endpoints that have an identity, plaintext otherwise."""
MtlsMode = Literal["STRICT", "PERMISSIVE", "DISABLE"]
"""Server side, resolved by meshd (``UNSET`` never reaches a proxy: it is resolved to its parent's mode)."""


class ResourceError(ValueError):
    """A resource that cannot be decoded or applied; the message names the field path."""


def cluster_name(fqdn: str, port: int, subset: str = "") -> str:
    """Istio's cluster name: ``outbound|9080|v1|reviews.default.svc.cluster.local``."""
    return f"outbound|{port}|{subset}|{fqdn}"


# --- clusters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A ready endpoint of a Service port."""

    address: str
    port: int
    """The target port on the pod."""
    labels: dict[str, str] = field(default_factory=dict)
    """The pod's labels (subsets select on them; telemetry reads ``app``/``version``)."""
    identity: str = ""
    """The pod's SPIFFE ID when it runs a sidecar (mTLS possible), else empty (plaintext only)."""
    workload: str = ""
    """The pod's workload name (its Deployment, else the pod), for telemetry."""
    namespace: str = ""


@dataclass(frozen=True)
class OutlierDetection:
    """Passive health checking of a cluster's endpoints (Istio's ``trafficPolicy.outlierDetection``,
    Envoy's semantics). A count of 0 disables that detection type."""

    consecutive_5xx: int = 5
    """5xx responses (and connect failures, resets, timeouts) in a row that eject an endpoint."""
    consecutive_gateway_errors: int = 0
    """502/503/504 responses (and connect failures, resets, timeouts) in a row that eject an endpoint."""
    interval_ms: int = 10_000
    """How often ejected endpoints are checked for return (and ejection multipliers decay)."""
    base_ejection_time_ms: int = 30_000
    """An ejection lasts this times the number of ejections in a row (capped at ``max_ejection_time_ms``)."""
    max_ejection_time_ms: int = 300_000
    max_ejection_percent: float = 10.0
    """No ejection while this share of the endpoints is already ejected."""
    min_health_percent: float = 0.0
    """Panic threshold: below this share of healthy endpoints, balance over all of them (0: never)."""


@dataclass(frozen=True)
class Cluster:
    """A Service port (and subset): where requests routed to it may go."""

    name: str
    service: str
    """The Service's FQDN, ``reviews.default.svc.cluster.local``."""
    port: int
    """The Service port."""
    protocol: Protocol
    subset: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    lb_policy: LbPolicy = "ROUND_ROBIN"
    tls_mode: TlsMode = "AUTO"
    connect_timeout_ms: int = 10_000
    outlier_detection: OutlierDetection | None = None


# --- routes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StringMatch:
    """Exactly one of ``exact``, ``prefix`` or ``regex`` (RE2 in Istio; Python ``re`` full match here)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    def check(self, path: str) -> None:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ResourceError(f"{path}: exactly one of exact, prefix or regex is required")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ResourceError(f"{path}.regex: invalid regular expression {self.regex!r}: {exc}") from None


@dataclass(frozen=True)
class RouteMatch:
    """One of a route's match blocks: all its conditions must hold (blocks are ORed)."""

    uri: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = field(default_factory=dict)
    """Keys lower-case."""
    without_headers: dict[str, StringMatch] = field(default_factory=dict)
    query_params: dict[str, StringMatch] = field(default_factory=dict)
    port: int = 0
    """0: any."""
    source_labels: dict[str, str] = field(default_factory=dict)
    """Compiled away by meshd for the proxy at hand (a block that cannot match is dropped); kept for display."""


@dataclass(frozen=True)
class WeightedCluster:
    cluster: str
    weight: int = 100


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``1 + attempts`` tries; Istio's implicit default is 2 attempts on
    ``connect-failure,refused-stream,unavailable,cancelled``."""

    attempts: int = 2
    per_try_timeout_ms: int = 0
    """0: each try may use what is left of the route's timeout."""
    retry_on: tuple[str, ...] = ("connect-failure", "refused-stream", "unavailable", "cancelled")


@dataclass(frozen=True)
class Delay:
    fixed_delay_ms: int
    percentage: float = 100.0


@dataclass(frozen=True)
class Abort:
    http_status: int
    percentage: float = 100.0


@dataclass(frozen=True)
class Fault:
    """Istio's HTTPFaultInjection: a delay and/or an abort, each for a share of requests."""

    delay: Delay | None = None
    abort: Abort | None = None


@dataclass(frozen=True)
class Mirror:
    """Istio's ``mirror`` / ``mirrors[]``: a fire-and-forget copy of a share of the route's requests,
    with ``-shadow`` appended to the host of its Host/Authority; its response is ignored."""

    cluster: str
    percentage: float = 100.0


@dataclass(frozen=True)
class Route:
    """One HTTP route: where matching requests go and how."""

    name: str
    matches: tuple[RouteMatch, ...] = ()
    """Empty: matches every request."""
    destinations: tuple[WeightedCluster, ...] = ()
    timeout_ms: int = 0
    """0: no timeout (Istio's default)."""
    retries: RetryPolicy | None = None
    """None: no retries (a fault on the route disables them, as in Istio)."""
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    source: str = ""
    """Where it came from, for ``proxy-config`` and errors: ``VirtualService default/reviews http[0]``."""


@dataclass(frozen=True)
class VirtualHost:
    name: str
    """``reviews.default.svc.cluster.local:9080``."""
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class RouteConfig:
    name: str
    """The outbound port, ``"9080"``."""
    virtual_hosts: tuple[VirtualHost, ...] = ()

    def check(self) -> None:
        """What a proxy verifies before applying (raises :class:`ResourceError` naming the path)."""
        for h, host in enumerate(self.virtual_hosts):
            for r, route in enumerate(host.routes):
                where = f"{self.name}.virtual_hosts[{h}].routes[{r}]"
                for m, match in enumerate(route.matches):
                    for key in ("uri", "method", "authority"):
                        value = getattr(match, key)
                        if value is not None:
                            value.check(f"{where}.matches[{m}].{key}")
                    for group in ("headers", "without_headers", "query_params"):
                        for name, value in getattr(match, group).items():
                            value.check(f"{where}.matches[{m}].{group}[{name}]")
                if sum(d.weight for d in route.destinations) <= 0 and route.fault is None:
                    raise ResourceError(f"{where}.destinations: no destination with a positive weight")


# --- listeners and inbound -----------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """An outbound Service port: ``address:port`` as the app dials it."""

    name: str
    """``10.96.0.12_9080``."""
    address: str
    port: int
    protocol: Protocol
    route_config: str = ""
    """HTTP protocols: the RouteConfig name."""
    cluster: str = ""
    """TCP and TLS: the cluster."""


@dataclass(frozen=True)
class InboundPort:
    port: int
    protocol: Protocol
    mtls_mode: MtlsMode


AuthzAction = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]
"""``CUSTOM`` reaches a proxy only to fail closed: meshd has no external authorizer, so its matches are denied."""


@dataclass(frozen=True)
class AuthzMatch:
    """One attribute test: some value matches (or ``values`` is empty) and no ``not_values`` entry does.

    Keys: ``source.principal`` (SPIFFE ID without ``spiffe://``), ``source.namespace``,
    ``source.serviceaccount`` (``ns/sa``), ``source.ip``, ``remote.ip``, ``request.auth.principal``,
    ``destination.ip``, ``destination.port``, ``connection.sni``, ``request.host``, ``request.method``,
    ``request.path``, ``request.headers[<lower-case name>]``. Values use Istio's string matching:
    exact, ``prefix*``, ``*suffix`` and ``*`` (present); IPs are addresses or CIDRs. An absent
    attribute (no principal on a plaintext connection) matches no value, so a ``not_values`` test holds.
    """

    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzClause:
    """One ``from[].source`` or ``to[].operation``: every match must hold."""

    matches: tuple[AuthzMatch, ...] = ()


@dataclass(frozen=True)
class AuthzRule:
    """Istio's Rule: one source clause holds (none: any), one operation clause holds (none: any), every ``when``."""

    sources: tuple[AuthzClause, ...] = ()
    operations: tuple[AuthzClause, ...] = ()
    when: tuple[AuthzMatch, ...] = ()


@dataclass(frozen=True)
class AuthzPolicy:
    """An AuthorizationPolicy selecting this workload; no rules: matches nothing (``spec: {}`` allows nothing)."""

    name: str
    """Envoy's policy id, ``ns[default]-policy[deny-all]``; denials log ``...-rule[<i>]``."""
    action: AuthzAction = "ALLOW"
    rules: tuple[AuthzRule, ...] = ()


@dataclass(frozen=True)
class Inbound:
    """The workload's inbound side (one resource, named ``inbound``)."""

    name: str = "inbound"
    default_mtls_mode: MtlsMode = "PERMISSIVE"
    ports: tuple[InboundPort, ...] = ()
    """Ports with their own protocol or mode; any other port uses ``default_mtls_mode`` and is TCP."""
    workload: str = ""
    namespace: str = ""
    canonical_service: str = ""
    canonical_revision: str = ""
    authz: tuple[AuthzPolicy, ...] = ()
    """AuthorizationPolicies selecting the workload, root namespace first, each in creation order."""


TYPES: dict[str, type[Any]] = {CLUSTERS: Cluster, ROUTES: RouteConfig, LISTENERS: Listener, INBOUND: Inbound}


# --- codec ---------------------------------------------------------------------------------------

T = TypeVar("T")


def encode(resource: Any) -> Any:
    """A resource (or any value inside one) as JSON-ready data; ``None`` fields are left out."""
    if dataclasses.is_dataclass(resource) and not isinstance(resource, type):
        return {f.name: encode(v) for f in dataclasses.fields(resource)
                if (v := getattr(resource, f.name)) is not None}
    if isinstance(resource, tuple | list):
        return [encode(v) for v in resource]
    if isinstance(resource, dict):
        return {k: encode(v) for k, v in resource.items()}
    return resource


def decode(cls: type[T], data: Any, path: str = "") -> T:
    """``data`` as a ``cls`` resource; :class:`ResourceError` naming the path of the first problem."""
    return typing.cast(T, _decode(cls, data, path or cls.__name__))


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _decode(tp: Any, data: Any, path: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise ResourceError(f"{path}: expected an object, got {type(data).__name__}")
        hints = _hints(tp)
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise ResourceError(f"{path}: unknown field {unknown[0]!r}")
        values = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                values[f.name] = _decode(hints[f.name], data[f.name], f"{path}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ResourceError(f"{path}.{f.name}: required")
        return tp(**values)
    if origin is Literal:
        if data not in get_args(tp):
            allowed = ", ".join(repr(a) for a in get_args(tp))
            raise ResourceError(f"{path}: unsupported value {data!r} (one of {allowed})")
        return data
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(tp) if a is not type(None)]
        if data is None:
            if len(args) == len(get_args(tp)):
                raise ResourceError(f"{path}: required")
            return None
        return _decode(args[0], data, path)
    if origin is tuple:
        if not isinstance(data, list):
            raise ResourceError(f"{path}: expected a list, got {type(data).__name__}")
        item = get_args(tp)[0]
        return tuple(_decode(item, v, f"{path}[{i}]") for i, v in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise ResourceError(f"{path}: expected an object, got {type(data).__name__}")
        value_type = get_args(tp)[1]
        return {str(k): _decode(value_type, v, f"{path}[{k}]") for k, v in data.items()}
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise ResourceError(f"{path}: expected a number, got {type(data).__name__}")
        return float(data)
    if tp is Any:
        return data  # opaque payload (DiscoveryResponse.resources), decoded later by its type
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ResourceError(f"{path}: expected {tp.__name__}, got {type(data).__name__}")
        return data
    raise ResourceError(f"{path}: cannot decode {tp!r}")  # a definition error, caught by the tests
