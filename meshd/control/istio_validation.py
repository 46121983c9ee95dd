"""Validation of Istio resources (``validation.istio.io``): refusals as Istio's, warnings for fields kubelab ignores.

:func:`validate` is called by the webhook server (:mod:`meshd.control.webhooks`) for every
create/update of an Istio kind; it returns ``(errors, warnings)``. Errors follow Istio's
``pkg/config/validation`` wording (``virtual service must have at least one host``,
``total destination weight 120 != 100``, ``HTTP route or redirect is required``, …) with the
field path in front; a StringMatch with more or less than one of ``exact``/``prefix``/``regex``
is refused as Istio's schema (a oneOf) refuses it.

Warnings name each field that is accepted (stored, round-tripped) but that meshd's proxies do not
implement -- ``spec.http[0].mirror is accepted but not implemented by kubelab`` -- by walking the
object against :data:`IMPLEMENTED`, the tree of implemented fields (``"*"`` = any key, a dict =
an object, a tuple ``(tree,)`` = a list of such objects, ``True`` = a leaf).

AuthorizationPolicy's own checks (Istio's refusals, warnings for CUSTOM, JWT and SNI attributes)
are in :mod:`meshd.control.authz_validation`.

Regular expressions: Python's ``re`` stands in for RE2. A pattern using RE2's Unicode classes
(``\\p{..}``), which RE2 accepts, passes here; a proxy that cannot compile it NACKs the route,
and the NACK is reported on the VirtualService (:mod:`meshd.control.status`).
"""

from __future__ import annotations

import re
from typing import Any

from meshd.control.authz_validation import validate_authorization_policy
from meshd.control.compile.routes import duration_ms

__all__ = ["IMPLEMENTED", "validate"]

Tree = Any

_STRING_MATCH: Tree = {"exact": True, "prefix": True, "regex": True}
_PERCENT: Tree = {"value": True}
_DESTINATION: Tree = {"host": True, "subset": True, "port": {"number": True}}
_OUTLIER: Tree = {"consecutive5xxErrors": True, "consecutiveGatewayErrors": True, "interval": True,
                  "baseEjectionTime": True, "maxEjectionPercent": True, "minHealthPercent": True}
_POLICY_CORE: Tree = {"loadBalancer": {"simple": True}, "tls": {"mode": True}, "outlierDetection": _OUTLIER}
_TRAFFIC_POLICY: Tree = {**_POLICY_CORE, "portLevelSettings": ({**_POLICY_CORE, "port": {"number": True}},)}
_SELECTOR: Tree = {"matchLabels": True}
_AUTHZ_SOURCE: Tree = {n: True for base in ("principals", "requestPrincipals", "namespaces", "serviceAccounts",
                                            "ipBlocks", "remoteIpBlocks")
                       for n in (base, "not" + base[0].upper() + base[1:])}
_AUTHZ_OPERATION: Tree = {n: True for base in ("hosts", "ports", "methods", "paths")
                          for n in (base, "not" + base[0].upper() + base[1:])}

IMPLEMENTED: dict[str, Tree] = {
    "VirtualService": {
        "hosts": True, "gateways": True, "exportTo": True,
        "http": ({
            "name": True,
            "match": ({"name": True, "uri": _STRING_MATCH, "method": _STRING_MATCH, "authority": _STRING_MATCH,
                       "headers": {"*": _STRING_MATCH}, "withoutHeaders": {"*": _STRING_MATCH},
                       "queryParams": {"*": _STRING_MATCH}, "port": True, "sourceLabels": True,
                       "sourceNamespace": True},),
            "route": ({"destination": _DESTINATION, "weight": True},),
            "timeout": True,
            "retries": {"attempts": True, "perTryTimeout": True, "retryOn": True},
            "fault": {"delay": {"fixedDelay": True, "percentage": _PERCENT, "percent": True},
                      "abort": {"httpStatus": True, "percentage": _PERCENT}},
            "mirror": _DESTINATION, "mirrorPercentage": _PERCENT, "mirrorPercent": True,
            "mirrors": ({"destination": _DESTINATION, "percentage": _PERCENT},),
        },),
    },
    "DestinationRule": {
        "host": True, "exportTo": True, "workloadSelector": _SELECTOR, "trafficPolicy": _TRAFFIC_POLICY,
        "subsets": ({"name": True, "labels": True, "trafficPolicy": _TRAFFIC_POLICY},),
    },
    "PeerAuthentication": {"selector": _SELECTOR, "mtls": {"mode": True}, "portLevelMtls": {"*": {"mode": True}}},
    "Sidecar": {"workloadSelector": {"labels": True}, "egress": ({"hosts": True},)},
    "AuthorizationPolicy": {
        "selector": _SELECTOR, "targetRef": True, "targetRefs": True, "action": True, "provider": {"name": True},
        "rules": ({"from": ({"source": _AUTHZ_SOURCE},), "to": ({"operation": _AUTHZ_OPERATION},),
                   "when": ({"key": True, "values": True, "notValues": True},)},),
    },
    "Gateway": {}, "ServiceEntry": {}, "RequestAuthentication": {},
}

_UNIMPLEMENTED_VALUES: dict[tuple[str, str], set[str]] = {
    ("DestinationRule", "loadBalancer.simple"): {"PASSTHROUGH"},
    ("DestinationRule", "tls.mode"): {"SIMPLE", "MUTUAL"},
}


def _unimplemented(value: Any, tree: Tree, path: str, out: list[str]) -> None:
    if tree is True:
        return
    if isinstance(tree, tuple):
        if isinstance(value, list):
            for index, item in enumerate(value):
                _unimplemented(item, tree[0], f"{path}[{index}]", out)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        sub = tree.get(key, tree.get("*"))
        where = f"{path}.{key}" if path else str(key)
        if sub is None:
            out.append(f"{where} is accepted but not implemented by kubelab")
        else:
            _unimplemented(item, sub, where, out)


def _values_warnings(kind: str, spec: Any, path: str, out: list[str]) -> None:
    """Enum values kubelab does not implement (``tls.mode: SIMPLE``)."""
    if isinstance(spec, dict):
        for key, item in spec.items():
            where = f"{path}.{key}"
            if isinstance(item, str):
                for (k, suffix), values in _UNIMPLEMENTED_VALUES.items():
                    if k == kind and where.endswith(suffix) and item in values:
                        out.append(f"{where}: {item} is accepted but not implemented by kubelab")
            else:
                _values_warnings(kind, item, where, out)
    elif isinstance(spec, list):
        for index, item in enumerate(spec):
            _values_warnings(kind, item, f"{path}[{index}]", out)


def _string_match(raw: Any, where: str, errors: list[str]) -> None:
    if raw is None:
        errors.append(f"{where}: header match {where.rsplit('.', 1)[-1]} cannot be null")
        return
    if not isinstance(raw, dict):
        return
    given = [k for k in ("exact", "prefix", "regex") if k in raw]
    if len(given) != 1:
        errors.append(f"{where}: exactly one of exact, prefix or regex must be set (found {len(given)})")
    regex = raw.get("regex")
    if isinstance(regex, str) and not re.search(r"\\[pP]\{", regex):
        try:
            re.compile(regex)
        except re.error as exc:
            errors.append(f"{where}: \"{where.rsplit('.', 1)[-1]}\": error parsing regexp: {exc}; Istio uses RE2 "
                          "style regex-based match (https://github.com/google/re2/wiki/Syntax)")


def _duration(raw: Any, where: str, errors: list[str]) -> None:
    try:
        if duration_ms(raw) < 1:
            errors.append(f"{where}: duration must be greater than 1ms")
    except ValueError:
        errors.append(f"{where}: invalid duration {raw!r}")


def _percentage(raw: Any, where: str, errors: list[str]) -> None:
    value = (raw or {}).get("value") if isinstance(raw, dict) else None
    if isinstance(value, int | float) and not 0 <= value <= 100:
        errors.append(f"{where}.value: percentage {value} is not in range 0..100")


def _mirrors(route: dict[str, Any], where: str, errors: list[str]) -> None:
    """Istio's checks of ``mirror``, ``mirrorPercentage``/``mirrorPercent`` and ``mirrors``."""
    value = (route.get("mirrorPercentage") or {}).get("value") if isinstance(route.get("mirrorPercentage"), dict) \
        else None
    if isinstance(value, int | float) and not 0 <= value <= 100:
        bound = "max value of 100" if value > 100 else "min value of 0"
        errors.append(f"{where}.mirrorPercentage: mirror_percentage must have a {bound} (it has {value:f})")
    percent = route.get("mirrorPercent")
    if isinstance(percent, int) and percent > 100:
        errors.append(f"{where}.mirrorPercent: mirror_percent must have a max value of 100 (it has {percent})")
    mirror = route.get("mirror")
    if isinstance(mirror, dict) and not mirror.get("host"):
        errors.append(f"{where}.mirror.host: destination host is required")
    for m, policy in enumerate(route.get("mirrors") or []):
        at = f"{where}.mirrors[{m}]"
        if not isinstance(policy, dict):
            errors.append(f"{at}: mirror cannot be null")
            continue
        if not isinstance(policy.get("destination"), dict) or not policy["destination"].get("host"):
            errors.append(f"{at}.destination: destination is required for mirrors")
        share = (policy.get("percentage") or {}).get("value") if isinstance(policy.get("percentage"), dict) else None
        if isinstance(share, int | float) and not 0 <= share <= 100:
            bound = "max value of 100" if share > 100 else "min value of 0"
            errors.append(f"{at}.percentage: mirror percentage must have a {bound} (it has {share:f})")


def _virtual_service(spec: dict[str, Any], errors: list[str]) -> None:
    if not spec.get("hosts"):
        errors.append("spec.hosts: virtual service must have at least one host")
    if not spec.get("http") and not spec.get("tcp") and not spec.get("tls"):
        errors.append("spec: http, tcp or tls must be provided in virtual service")
    for i, route in enumerate(spec.get("http") or []):
        where = f"spec.http[{i}]"
        if not isinstance(route, dict):
            continue
        if route.get("redirect") is None and route.get("directResponse") is None and not route.get("route") \
                and route.get("delegate") is None:
            errors.append(f"{where}: HTTP route or redirect is required")
        for m, block in enumerate(route.get("match") or []):
            for key in ("uri", "method", "authority", "scheme"):
                if key in block:
                    _string_match(block[key], f"{where}.match[{m}].{key}", errors)
            for group in ("headers", "withoutHeaders", "queryParams"):
                for name, value in (block.get(group) or {}).items():
                    _string_match(value, f"{where}.match[{m}].{group}.{name}", errors)
                    if group != "queryParams" and name != name.lower():
                        errors.append(f"{where}.match[{m}].{group}.{name}: header name must be lower case")
        destinations = route.get("route") or []
        total = 0
        for d, target in enumerate(destinations):
            if not (target.get("destination") or {}).get("host"):
                errors.append(f"{where}.route[{d}].destination: destination is required")
            weight = int(target.get("weight") or 0)
            if weight < 0 or weight > 100:
                errors.append(f"{where}.route[{d}].weight: percentage {weight} is not in range 0..100")
            total += weight
        if len(destinations) > 1 and total != 100:
            errors.append(f"{where}.route: total destination weight {total} != 100")
        if route.get("timeout") is not None:
            _duration(route["timeout"], f"{where}.timeout", errors)
        retries = route.get("retries")
        if isinstance(retries, dict):
            if int(retries.get("attempts") or 0) < 0:
                errors.append(f"{where}.retries.attempts: attempts cannot be negative")
            if retries.get("perTryTimeout") is not None:
                _duration(retries["perTryTimeout"], f"{where}.retries.perTryTimeout", errors)
        _mirrors(route, where, errors)
        fault = route.get("fault")
        if isinstance(fault, dict):
            delay, abort = fault.get("delay"), fault.get("abort")
            if delay is None and abort is None:
                errors.append(f"{where}.fault: fault must have at least delay or abort")
            if isinstance(delay, dict):
                if delay.get("fixedDelay") is None and delay.get("exponentialDelay") is None:
                    errors.append(f"{where}.fault.delay: delay must have fixedDelay or exponentialDelay")
                if delay.get("fixedDelay") is not None:
                    _duration(delay["fixedDelay"], f"{where}.fault.delay.fixedDelay", errors)
                _percentage(delay.get("percentage"), f"{where}.fault.delay.percentage", errors)
            if isinstance(abort, dict):
                status = abort.get("httpStatus")
                if status is not None and not 200 <= int(status) <= 599:
                    errors.append(f"{where}.fault.abort.httpStatus: invalid abort http status {status}")
                _percentage(abort.get("percentage"), f"{where}.fault.abort.percentage", errors)


def _outlier(policy: Any, where: str, errors: list[str]) -> None:
    """Istio's ``validateOutlierDetection``: durations, non-negative counts, percentages in 0..100."""
    outlier = policy.get("outlierDetection") if isinstance(policy, dict) else None
    if not isinstance(outlier, dict):
        return
    at = f"{where}.outlierDetection"
    for key in ("interval", "baseEjectionTime"):
        if outlier.get(key) is not None:
            _duration(outlier[key], f"{at}.{key}", errors)
    for key in ("consecutive5xxErrors", "consecutiveGatewayErrors"):
        if isinstance(outlier.get(key), int) and outlier[key] < 0:
            errors.append(f"{at}.{key}: outlier detection consecutive errors cannot be negative")
    for key in ("maxEjectionPercent", "minHealthPercent"):
        value = outlier.get(key)
        if isinstance(value, int | float) and not 0 <= value <= 100:
            errors.append(f"{at}.{key}: percentage {value} is not in range 0..100")


def _traffic_policy(policy: Any, where: str, errors: list[str]) -> None:
    if not isinstance(policy, dict):
        return
    _outlier(policy, where, errors)
    for p, setting in enumerate(policy.get("portLevelSettings") or []):
        _outlier(setting, f"{where}.portLevelSettings[{p}]", errors)


def _destination_rule(spec: dict[str, Any], errors: list[str]) -> None:
    if not spec.get("host"):
        errors.append("spec.host: host is required")
    _traffic_policy(spec.get("trafficPolicy"), "spec.trafficPolicy", errors)
    seen: set[str] = set()
    for i, subset in enumerate(spec.get("subsets") or []):
        name = str((subset or {}).get("name") or "")
        if not name:
            errors.append(f"spec.subsets[{i}].name: name is required")
        elif name in seen:
            errors.append(f"spec.subsets[{i}].name: duplicate subset names: {name}")
        seen.add(name)
        _traffic_policy((subset or {}).get("trafficPolicy"), f"spec.subsets[{i}].trafficPolicy", errors)


def _peer_authentication(spec: dict[str, Any], errors: list[str]) -> None:
    selector = (spec.get("selector") or {}).get("matchLabels")
    port_level = spec.get("portLevelMtls")
    if port_level and not selector:
        errors.append("spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS")
    if port_level is not None and len(port_level) == 0:
        errors.append("spec.portLevelMtls: port level mTLS, if defined, must have at least one element")
    for port in port_level or {}:
        if str(port) == "0":
            errors.append("spec.portLevelMtls: port cannot be 0")


def validate(kind: str, obj: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for an Istio object of ``kind``."""
    spec = obj.get("spec")
    errors: list[str] = []
    warnings: list[str] = []
    if not isinstance(spec, dict):
        return errors, warnings
    {"VirtualService": _virtual_service, "DestinationRule": _destination_rule,
     "PeerAuthentication": _peer_authentication}.get(kind, lambda _s, _e: None)(spec, errors)
    if kind == "AuthorizationPolicy":
        policy_errors, policy_warnings = validate_authorization_policy(spec)
        meta = obj.get("metadata") or {}
        prefix = f"invalid policy {meta.get('name', '')}.{meta.get('namespace', '')}: "
        errors += [prefix + e for e in policy_errors]
        warnings += policy_warnings
    tree = IMPLEMENTED.get(kind)
    if tree is not None:
        _unimplemented(spec, tree, "spec", warnings)
        _values_warnings(kind, spec, "spec", warnings)
    return errors, warnings
