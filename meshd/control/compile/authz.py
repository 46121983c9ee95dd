"""AuthorizationPolicy → the :class:`~meshd.api.resources.AuthzPolicy` list of one workload's Inbound.

Called by :mod:`meshd.control.compile.inbound`. A policy applies to a workload (Istio's scope) when
it has no ``targetRef``/``targetRefs`` (those attach to gateways and waypoints, not sidecars) and

* it lives in the root namespace (``istio-system``): mesh-wide, or every workload its
  ``selector.matchLabels`` selects, in any namespace;
* it lives in the workload's namespace: the whole namespace, or the workloads its selector selects.

Policies are listed root namespace first, each group oldest first (the evaluation itself does not
depend on the order: any matching DENY denies, any matching ALLOW allows).

Each rule is flattened into attribute tests (:class:`~meshd.api.resources.AuthzMatch`):
``from[].source`` fields become the source clauses, ``to[].operation`` fields the operation
clauses, ``when`` conditions are kept with their keys (``request.headers[X]`` lower-cased).
A value that is invalid (a malformed CIDR or port; the validating webhook refuses them, but a
policy may predate it) is handled as Istio's builder does: in an ALLOW policy the whole rule is
dropped (less is allowed), in the other actions the value alone (more is denied).
``serviceAccounts`` entries without a namespace get the policy's own.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from meshd.api.resources import AuthzAction, AuthzClause, AuthzMatch, AuthzPolicy, AuthzRule
from meshd.control.compile.scope import ProxyNode, selects
from meshd.control.model import MeshSnapshot, Obj, key_of

__all__ = ["OPERATION_FIELDS", "SOURCE_FIELDS", "WHEN_KEYS", "compile_authz", "compile_policy", "known_key",
           "policies_for", "valid_value"]

SOURCE_FIELDS: dict[str, str] = {
    "principals": "source.principal", "requestPrincipals": "request.auth.principal",
    "namespaces": "source.namespace", "serviceAccounts": "source.serviceaccount",
    "ipBlocks": "source.ip", "remoteIpBlocks": "remote.ip",
}
"""``source`` field (its ``not…`` twin is derived) → attribute key."""
OPERATION_FIELDS: dict[str, str] = {
    "hosts": "request.host", "ports": "destination.port", "methods": "request.method", "paths": "request.path",
}
WHEN_KEYS = ("request.headers[", "source.ip", "remote.ip", "source.namespace", "source.principal",
             "request.auth.principal", "request.auth.audiences", "request.auth.presenter", "request.auth.claims[",
             "destination.ip", "destination.port", "connection.sni")
"""Istio's condition keys (a key ending in ``[`` takes a bracketed name); others are unknown."""
_ACTIONS: tuple[AuthzAction, ...] = ("ALLOW", "DENY", "AUDIT", "CUSTOM")


class _Invalid(ValueError):
    pass


def _not(name: str) -> str:
    return "not" + name[0].upper() + name[1:]


def known_key(key: str) -> bool:
    return any(key == k or (k.endswith("[") and key.startswith(k) and key.endswith("]") and len(key) > len(k) + 1)
               for k in WHEN_KEYS)


def valid_value(key: str, value: str) -> bool:
    """Whether ``value`` is usable for ``key`` (an IP or CIDR for the IP keys, a port number for ports)."""
    if key in ("source.ip", "remote.ip", "destination.ip"):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return False
        return True
    if key == "destination.port":
        return value.isdigit() and 0 <= int(value) <= 65535
    return True


def _strings(raw: Any) -> list[str]:
    return [str(v) for v in raw] if isinstance(raw, list) else []


def _match(key: str, values: list[str], not_values: list[str], action: AuthzAction) -> AuthzMatch | None:
    if not values and not not_values:
        return None
    if not known_key(key) and key not in SOURCE_FIELDS.values() and key not in OPERATION_FIELDS.values():
        if action == "ALLOW":
            raise _Invalid(key)
        return None
    good = [v for v in values if valid_value(key, v)]
    not_good = [v for v in not_values if valid_value(key, v)]
    if action == "ALLOW" and (len(good) != len(values) or len(not_good) != len(not_values)):
        raise _Invalid(key)
    if key.startswith("request.headers["):
        key = "request.headers[" + key[len("request.headers["):].lower()
    if not good and not not_good:
        return None
    return AuthzMatch(key=key, values=tuple(good), not_values=tuple(not_good))


def _clause(raw: Any, fields: dict[str, str], action: AuthzAction, namespace: str) -> AuthzClause:
    matches: list[AuthzMatch] = []
    for name, key in fields.items():
        values, not_values = _strings((raw or {}).get(name)), _strings((raw or {}).get(_not(name)))
        if key == "source.serviceaccount":
            values = [v if "/" in v else f"{namespace}/{v}" for v in values]
            not_values = [v if "/" in v else f"{namespace}/{v}" for v in not_values]
        match = _match(key, values, not_values, action)
        if match is not None:
            matches.append(match)
    return AuthzClause(matches=tuple(matches))


def _rule(raw: dict[str, Any], action: AuthzAction, namespace: str) -> AuthzRule:
    sources = tuple(_clause(entry.get("source"), SOURCE_FIELDS, action, namespace)
                    for entry in raw.get("from") or [] if isinstance(entry, dict))
    operations = tuple(_clause(entry.get("operation"), OPERATION_FIELDS, action, namespace)
                       for entry in raw.get("to") or [] if isinstance(entry, dict))
    when: list[AuthzMatch] = []
    for condition in raw.get("when") or []:
        if isinstance(condition, dict):
            match = _match(str(condition.get("key") or ""), _strings(condition.get("values")),
                           _strings(condition.get("notValues")), action)
            if match is not None:
                when.append(match)
    return AuthzRule(sources=sources, operations=operations, when=tuple(when))


def compile_policy(policy: Obj) -> AuthzPolicy:
    namespace, name = key_of(policy)
    spec = policy.get("spec") or {}
    action: AuthzAction = next((a for a in _ACTIONS if a == spec.get("action")), "ALLOW")
    rules: list[AuthzRule] = []
    for raw in spec.get("rules") or []:
        if not isinstance(raw, dict):
            continue
        try:
            rules.append(_rule(raw, action, namespace))
        except _Invalid:
            continue  # an ALLOW rule with an unusable value allows nothing
    return AuthzPolicy(name=f"ns[{namespace}]-policy[{name}]", action=action, rules=tuple(rules))


def _selector(policy: Obj) -> dict[str, str] | None:
    return ((policy.get("spec") or {}).get("selector") or {}).get("matchLabels") or None


def policies_for(snapshot: MeshSnapshot, node: ProxyNode, root_namespace: str) -> list[Obj]:
    """The AuthorizationPolicies that apply to ``node``'s workload, root namespace first."""
    chosen: list[Obj] = []
    for wanted in dict.fromkeys((root_namespace, node.namespace)):
        for policy in snapshot.authorization_policies:
            spec = policy.get("spec") or {}
            if key_of(policy)[0] != wanted or spec.get("targetRef") or spec.get("targetRefs"):
                continue
            selector = _selector(policy)
            if selector is None or selects(selector, node.labels):
                chosen.append(policy)
    return chosen


def compile_authz(snapshot: MeshSnapshot, node: ProxyNode, root_namespace: str) -> tuple[AuthzPolicy, ...]:
    return tuple(compile_policy(p) for p in policies_for(snapshot, node, root_namespace))
