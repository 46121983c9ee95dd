"""Validation of ``security.istio.io`` AuthorizationPolicy: Istio's refusals, and warnings for what meshd does not do.

Called by :func:`meshd.control.istio_validation.validate`. Refusals follow Istio's
``ValidateAuthorizationPolicy`` (wording included): a DENY or CUSTOM policy without ``rules``,
CUSTOM without ``provider.name``, ``provider`` with another action, selector together with
``targetRef(s)``, an empty ``from.source`` / ``to.operation``, ``serviceAccounts`` mixed with
principals or namespaces, empty values, invalid IPs/CIDRs and ports, unknown ``when`` keys and
conditions with neither ``values`` nor ``notValues``; an unknown action is refused too.

Warnings (``kubectl`` prints them): CUSTOM has no external authorizer here, so its matches are
denied; ``targetRef(s)`` is not applied (no waypoints or gateway policies); request principals,
``request.auth.*`` and ``connection.sni`` never match (no JWT is verified, sidecars send no SNI);
Istio's own warning for DENY rules built only of HTTP attributes (they deny all TCP traffic).
"""

from __future__ import annotations

from typing import Any

from meshd.control.compile.authz import OPERATION_FIELDS, SOURCE_FIELDS, known_key, valid_value

__all__ = ["validate_authorization_policy"]

_ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")
_TCP_SOURCE = ("principals", "notPrincipals", "ipBlocks", "notIpBlocks", "namespaces", "notNamespaces",
               "remoteIpBlocks", "notRemoteIpBlocks", "serviceAccounts", "notServiceAccounts")


def _not(name: str) -> str:
    return "not" + name[0].upper() + name[1:]


def _values(raw: Any) -> list[Any]:
    return raw if isinstance(raw, list) else []


def _source(src: dict[str, Any], i: int, errors: list[str], warnings: list[str]) -> None:
    names = [n for base in SOURCE_FIELDS for n in (base, _not(base))]
    if not any(_values(src.get(n)) for n in names):
        errors.append(f"`from.source` must not be empty, found at rule {i}")
    if any(_values(src.get(n)) for n in ("principals", "notPrincipals", "namespaces", "notNamespaces")) and \
            any(_values(src.get(n)) for n in ("serviceAccounts", "notServiceAccounts")):
        errors.append(f"cannot set serviceAccounts with namespaces or principals, found at rule {i}")
    for base, key in SOURCE_FIELDS.items():
        for name in (base, _not(base)):
            for value in _values(src.get(name)):
                if value == "" or value is None:
                    errors.append(f"empty value not allowed, found in {name[0].upper() + name[1:]}")
                elif not valid_value(key, str(value)):
                    errors.append(f"invalid IP address or CIDR range: {value}")
    if any(_values(src.get(n)) for n in ("requestPrincipals", "notRequestPrincipals")):
        warnings.append(f"spec.rules[{i}].from: requestPrincipals need a verified JWT (RequestAuthentication), "
                        "which kubelab does not implement: a request has no request principal")


def _operation(op: dict[str, Any], i: int, errors: list[str]) -> None:
    names = [n for base in OPERATION_FIELDS for n in (base, _not(base))]
    if not any(_values(op.get(n)) for n in names):
        errors.append(f"`to.operation` must not be empty, found at rule {i}")
    for base, key in OPERATION_FIELDS.items():
        for name in (base, _not(base)):
            for value in _values(op.get(name)):
                if value == "" or value is None:
                    errors.append(f"empty value not allowed, found in {name[0].upper() + name[1:]}")
                elif not valid_value(key, str(value)):
                    errors.append(f"invalid port {value}: port must be in range 0..65535")


def _when(conditions: Any, i: int, errors: list[str], warnings: list[str]) -> None:
    for condition in _values(conditions):
        if not isinstance(condition, dict):
            errors.append("when field cannot be nil")
            continue
        key = str(condition.get("key") or "")
        values, not_values = _values(condition.get("values")), _values(condition.get("notValues"))
        if not key:
            errors.append("`key` must not be empty")
        elif not values and not not_values:
            errors.append(f"at least one of `values` or `notValues` must be set for key {key}")
        elif not known_key(key):
            errors.append(f"invalid `value` for `key` {key}: unknown attribute ({key})")
        else:
            for field, given in (("value", values), ("notValue", not_values)):
                bad = [v for v in given if not valid_value(key, str(v))]
                if bad:
                    errors.append(f"invalid `{field}` for `key` {key}: invalid value {bad[0]}")
            if key.startswith("request.auth.") or key == "connection.sni":
                what = "sidecars send no SNI" if key == "connection.sni" else "no JWT is verified"
                warnings.append(f"spec.rules[{i}].when: {key} is accepted but not implemented by kubelab "
                                f"({what}): its values never match")


def validate_authorization_policy(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for an AuthorizationPolicy's ``spec``."""
    errors: list[str] = []
    warnings: list[str] = []
    action = spec.get("action") or "ALLOW"
    if action not in _ACTIONS:
        errors.append(f"spec.action: unknown value {action!r} (one of ALLOW, DENY, AUDIT, CUSTOM)")
    selector = spec.get("selector")
    targets = sum(1 for k in ("targetRef", "targetRefs") if spec.get(k))
    if targets + (selector is not None) > 1:
        errors.append("only one of targetRefs or workloadSelector can be set")
    for label, value in ((selector or {}).get("matchLabels") or {}).items():
        if label == "":
            errors.append(f"empty key is not supported in selector: \"={value}\"")
        elif "*" in str(label) or "*" in str(value):
            errors.append(f"wildcard is not supported in selector: \"{label}={value}\"")
    if targets:
        warnings.append("spec.targetRef(s) is accepted but not implemented by kubelab (no waypoint or gateway "
                        "policies): the policy applies to no workload")
    rules = spec.get("rules")
    provider = spec.get("provider")
    if action in ("DENY", "CUSTOM") and not rules:
        errors.append(f"{action} action without `rules` is meaningless as it will never be triggered, "
                      "add an empty rule `{}` if you want it be triggered for every request")
    if action == "CUSTOM":
        if rules and not (provider or {}).get("name"):
            errors.append("`provider.name` must not be empty")
        warnings.append("spec.action: CUSTOM needs an external authorizer (meshConfig.extensionProviders), which "
                        "kubelab does not have: requests matching this policy's rules are denied")
    elif provider is not None:
        errors.append(f"`provider` must not be with non CUSTOM action, found {action}")
    for i, rule in enumerate(_values(rules)):
        if not isinstance(rule, dict):
            errors.append(f"`rule` must not be nil, found at rule {i}")
            continue
        tcp_from = tcp_to = has_from = has_to = False
        for entry in _values(rule.get("from")):
            src = entry.get("source") if isinstance(entry, dict) else None
            if not isinstance(src, dict):
                errors.append(f"`from.source` must not be nil, found at rule {i}")
                continue
            has_from = True
            tcp_from = tcp_from or any(n in src for n in _TCP_SOURCE)
            _source(src, i, errors, warnings)
        for entry in _values(rule.get("to")):
            op = entry.get("operation") if isinstance(entry, dict) else None
            if not isinstance(op, dict):
                errors.append(f"`to.operation` must not be nil, found at rule {i}")
                continue
            has_to = True
            tcp_to = tcp_to or "ports" in op or "notPorts" in op
            _operation(op, i, errors)
        _when(rule.get("when"), i, errors, warnings)
        if action == "DENY" and ((has_from and not has_to and not tcp_from) or (has_to and not tcp_to)):
            warnings.append("configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due "
                            "to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly "
                            "specify the port")
    return errors, warnings
