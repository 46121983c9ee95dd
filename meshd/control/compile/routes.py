"""Routes: a Service port's VirtualService ``http`` rules as the ordered route list a proxy follows.

Used by :mod:`meshd.control.compile.proxy` for each HTTP Service port the proxy sees. Istio's
semantics:

* the VirtualService of a host is the oldest visible one (``exportTo``) whose ``hosts`` name it
  and whose ``gateways`` are empty or include ``mesh``; without one, a single default route sends
  everything to the whole Service;
* routes keep their order (the first matching route wins); match blocks are ORed, conditions in
  a block ANDed; a block whose ``sourceLabels`` / ``sourceNamespace`` / ``port`` cannot hold for
  this proxy is dropped here, and a route whose blocks were all dropped disappears;
* ``weight`` shares; a lone destination gets 100; ``timeout``; ``retries`` (none given: Istio's
  implicit 2 attempts; ``attempts: 0``: none; a route with a ``fault`` gets no retries); ``fault``
  delay / abort with their percentages;
* ``mirror`` (with ``mirrorPercentage``, default 100) and each of ``mirrors`` (with its own
  ``percentage``) become the route's :class:`~meshd.api.resources.Mirror` list; a share of 0
  mirrors nothing;
* a destination's subset must be defined by a DestinationRule: otherwise the route still names
  the (empty) subset cluster, which answers 503 as in Istio, and a :class:`ConfigError` says why
  (mirror destinations alike).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from meshd.api.resources import (
    Abort,
    Delay,
    Fault,
    Mirror,
    RetryPolicy,
    Route,
    RouteMatch,
    StringMatch,
    WeightedCluster,
    cluster_name,
)
from meshd.control.compile.errors import ConfigError
from meshd.control.compile.scope import Scope, fqdn, selects
from meshd.control.model import MeshSnapshot, Obj, key_of

__all__ = ["duration_ms", "http_routes", "virtual_service_for"]

_DURATION = re.compile(r"^(\d+(?:\.\d*)?)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def duration_ms(text: Any) -> int:
    """Istio's protobuf Duration text (``10s``, ``0.5s``, ``100ms``) as milliseconds; ValueError if malformed."""
    match = _DURATION.match(str(text).strip())
    if match is None:
        raise ValueError(f"invalid duration {text!r}")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)])


def virtual_service_for(snapshot: MeshSnapshot, scope: Scope, host: str) -> Obj | None:
    for vs in snapshot.virtual_services:
        spec = vs.get("spec") or {}
        gateways = spec.get("gateways") or []
        if gateways and "mesh" not in gateways:
            continue
        if not scope.sees_rule(vs):
            continue
        namespace = key_of(vs)[0]
        if any(fqdn(str(h), namespace) == host for h in spec.get("hosts") or []):
            return vs
    return None


def _string_match(raw: Any) -> StringMatch | None:
    if not isinstance(raw, dict):
        return None
    return StringMatch(exact=raw.get("exact"), prefix=raw.get("prefix"), regex=raw.get("regex"))


def _match_map(raw: Any, *, lower: bool = False) -> dict[str, StringMatch]:
    result: dict[str, StringMatch] = {}
    for name, value in (raw or {}).items():
        match = _string_match(value)
        if match is not None:
            result[str(name).lower() if lower else str(name)] = match
    return result


def _matches(blocks: list[Obj], scope: Scope, port: int) -> tuple[RouteMatch, ...] | None:
    """The blocks that can hold for this proxy; None when there were blocks and none can."""
    if not blocks:
        return ()
    kept = []
    for block in blocks:
        if not selects(block.get("sourceLabels"), scope.node.labels):
            continue
        if block.get("sourceNamespace") and block["sourceNamespace"] != scope.node.namespace:
            continue
        block_port = int(block.get("port") or 0)
        if block_port and block_port != port:
            continue
        kept.append(RouteMatch(
            uri=_string_match(block.get("uri")), method=_string_match(block.get("method")),
            authority=_string_match(block.get("authority")),
            headers=_match_map(block.get("headers"), lower=True),
            without_headers=_match_map(block.get("withoutHeaders"), lower=True),
            query_params=_match_map(block.get("queryParams")), port=block_port,
            source_labels=dict(block.get("sourceLabels") or {})))
    return tuple(kept) if kept else None


def _percentage(raw: Obj) -> float:
    if isinstance(raw.get("percentage"), dict) and "value" in raw["percentage"]:
        return float(raw["percentage"]["value"])
    if "percent" in raw:
        return float(raw["percent"])
    return 100.0


def _fault(raw: Any) -> Fault | None:
    if not isinstance(raw, dict):
        return None
    delay = abort = None
    if isinstance(raw.get("delay"), dict) and raw["delay"].get("fixedDelay"):
        delay = Delay(fixed_delay_ms=duration_ms(raw["delay"]["fixedDelay"]), percentage=_percentage(raw["delay"]))
    if isinstance(raw.get("abort"), dict) and raw["abort"].get("httpStatus"):
        abort = Abort(http_status=int(raw["abort"]["httpStatus"]), percentage=_percentage(raw["abort"]))
    return Fault(delay=delay, abort=abort) if delay or abort else None


def _retries(raw: Any) -> RetryPolicy | None:
    if raw is None:
        return RetryPolicy()
    attempts = int(raw.get("attempts") or 0)
    if attempts <= 0:
        return None
    retry_on = tuple(p.strip() for p in str(raw.get("retryOn") or "").split(",") if p.strip())
    per_try = duration_ms(raw["perTryTimeout"]) if raw.get("perTryTimeout") else 0
    return RetryPolicy(attempts=attempts, per_try_timeout_ms=per_try,
                       **({"retry_on": retry_on} if retry_on else {}))


ClusterLookup = Callable[[str, int, str], bool]
"""(host FQDN, port, subset) → whether that cluster exists for this proxy."""
PortLookup = Callable[[str], int | None]
"""host FQDN → its only port (None when it has several or is unknown)."""


def _cluster_for(dest: Obj, namespace: str, name: str, host: str, port: int, where: str, *,
                 has_cluster: ClusterLookup, only_port: PortLookup, errors: list[ConfigError]) -> str:
    """The cluster a ``destination`` (route or mirror) names; a missing host or subset is reported."""
    dest_host = fqdn(str(dest.get("host") or ""), namespace)
    dest_port = int((dest.get("port") or {}).get("number") or 0) or (
        port if dest_host == host else (only_port(dest_host) or port))
    subset = str(dest.get("subset") or "")
    if subset and not has_cluster(dest_host, dest_port, subset):
        errors.append(ConfigError("VirtualService", namespace, name, "IST0101", "ReferencedResourceNotFound",
                                  f"Referenced host+subset in destinationrule not found: "
                                  f"\"{dest_host}+{subset}\" ({where})"))
    elif not has_cluster(dest_host, dest_port, ""):
        errors.append(ConfigError("VirtualService", namespace, name, "IST0101", "ReferencedResourceNotFound",
                                  f"Referenced host not found: \"{dest_host}\" ({where})"))
    return cluster_name(dest_host, dest_port, subset)


def _mirror_share(raw: Any) -> float | None:
    """A ``percentage`` (absent: 100, Istio's default); 0 mirrors nothing (None)."""
    if not isinstance(raw, dict) or raw.get("value") is None:
        return 100.0
    value = float(raw["value"])
    return value if value > 0 else None


def _mirrors(rule: Obj, lookup: Callable[[Obj, str], str]) -> tuple[Mirror, ...]:
    """``mirror`` with ``mirrorPercentage`` (or the deprecated integer ``mirrorPercent``), then each of ``mirrors``."""
    found: list[Mirror] = []
    if isinstance(rule.get("mirror"), dict):
        if rule.get("mirrorPercentage") is not None:
            share = _mirror_share(rule["mirrorPercentage"])
        elif rule.get("mirrorPercent") is not None:
            share = float(rule["mirrorPercent"]) or None
        else:
            share = 100.0
        if share is not None:
            found.append(Mirror(cluster=lookup(rule["mirror"], "mirror"), percentage=share))
    for index, policy in enumerate(rule.get("mirrors") or []):
        if not isinstance(policy, dict) or not isinstance(policy.get("destination"), dict):
            continue
        share = _mirror_share(policy.get("percentage"))
        if share is not None:
            found.append(Mirror(cluster=lookup(policy["destination"], f"mirrors[{index}]"), percentage=share))
    return tuple(found)


def http_routes(vs: Obj, scope: Scope, host: str, port: int, *, has_cluster: ClusterLookup,
                only_port: PortLookup, errors: list[ConfigError]) -> tuple[Route, ...]:
    """The routes ``vs`` gives ``host:port`` for this proxy; problems appended to ``errors``."""
    namespace, name = key_of(vs)
    routes: list[Route] = []
    for index, rule in enumerate((vs.get("spec") or {}).get("http") or []):
        where = f"VirtualService {namespace}/{name} http[{index}]"
        matches = _matches(rule.get("match") or [], scope, port)
        if matches is None:
            continue

        def lookup(dest: Obj, field: str = "", where: str = where) -> str:
            return _cluster_for(dest, namespace, name, host, port, f"{where} {field}" if field else where,
                                has_cluster=has_cluster, only_port=only_port, errors=errors)

        targets = rule.get("route") or []
        destinations: list[WeightedCluster] = []
        for target in targets:
            raw_weight = target.get("weight")
            weight = int(raw_weight) if raw_weight is not None else (100 if len(targets) == 1 else 0)
            destinations.append(WeightedCluster(cluster=lookup(target.get("destination") or {}), weight=weight))
        fault = _fault(rule.get("fault"))
        routes.append(Route(
            name=str(rule.get("name") or f"{name}.{namespace}.{index}"),
            matches=matches, destinations=tuple(destinations),
            timeout_ms=duration_ms(rule["timeout"]) if rule.get("timeout") else 0,
            retries=None if fault is not None else _retries(rule.get("retries")),
            fault=fault, mirrors=_mirrors(rule, lookup), source=where))
    return tuple(routes)
