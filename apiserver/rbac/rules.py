"""RBAC policy rules: what one rule allows, and whether a set of rules covers another.

A :class:`PolicyRule` is the ``rbac.authorization.k8s.io/v1`` ``PolicyRule`` made hashable and
fast to match. Matching follows Kubernetes' RBAC authorizer (``plugin/pkg/auth/authorizer/rbac``):

* verbs and API groups match exactly or through ``*``;
* a resource matches ``*``, the requested ``resource/subresource`` exactly, or, for a
  subresource request, ``*/<subresource>`` (``pods`` does not grant ``pods/log``);
* ``resourceNames`` empty matches every name, otherwise the request must name one of them;
* a non-resource URL matches exactly, through ``*``, or a pattern ending in ``*`` as a prefix.

:func:`covers` is the escalation check's question ("does the caller hold every permission this
role grants?"): each rule is broken into atomic permissions (one verb, group, resource, name)
and each must be allowed by some owner rule, as Kubernetes' ``validation.Covers`` does.
:func:`compact_string` words a rule the way Kubernetes' escalation message lists missing rights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apiserver.authz import Attributes

ALL = "*"


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One rule of a Role or ClusterRole."""

    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, rule: Mapping[str, Any]) -> PolicyRule:
        return cls(verbs=_strings(rule.get("verbs")), api_groups=_strings(rule.get("apiGroups")),
                   resources=_strings(rule.get("resources")), resource_names=_strings(rule.get("resourceNames")),
                   non_resource_urls=_strings(rule.get("nonResourceURLs")))

    def to_api(self) -> dict[str, Any]:
        """The rule as JSON (only the fields it sets, as Kubernetes serialises it)."""
        out: dict[str, Any] = {"verbs": list(self.verbs)}
        for key, values in (("apiGroups", self.api_groups), ("resources", self.resources),
                            ("resourceNames", self.resource_names), ("nonResourceURLs", self.non_resource_urls)):
            if values:
                out[key] = list(values)
        return out

    def allows(self, attributes: Attributes) -> bool:
        """Whether this rule grants the request (``RuleAllows``)."""
        if not verb_matches(self, attributes.verb):
            return False
        if attributes.resource:
            combined = (f"{attributes.resource}/{attributes.subresource}" if attributes.subresource
                        else attributes.resource)
            return (api_group_matches(self, attributes.api_group)
                    and resource_matches(self, combined, attributes.subresource)
                    and resource_name_matches(self, attributes.name))
        return non_resource_url_matches(self, attributes.path)


def rules_from_api(rules: object) -> tuple[PolicyRule, ...]:
    if not isinstance(rules, list):
        return ()
    return tuple(PolicyRule.from_api(r) for r in rules if isinstance(r, dict))


def verb_matches(rule: PolicyRule, verb: str) -> bool:
    return verb in rule.verbs or ALL in rule.verbs


def api_group_matches(rule: PolicyRule, group: str) -> bool:
    return group in rule.api_groups or ALL in rule.api_groups


def resource_matches(rule: PolicyRule, combined: str, subresource: str) -> bool:
    for resource in rule.resources:
        if resource in (ALL, combined):
            return True
        if subresource and resource.startswith("*/") and resource[2:] == subresource:
            return True
    return False


def resource_name_matches(rule: PolicyRule, name: str) -> bool:
    return not rule.resource_names or name in rule.resource_names


def non_resource_url_matches(rule: PolicyRule, path: str) -> bool:
    for url in rule.non_resource_urls:
        if url in (ALL, path):
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def allows_any(rules: Iterable[PolicyRule], attributes: Attributes) -> bool:
    return any(rule.allows(attributes) for rule in rules)


# ---- covering (escalation) ----------------------------------------------------------------------
def _atomic(rule: PolicyRule) -> list[PolicyRule]:
    """One rule per verb x group x resource (x name), or per verb x URL (``BreakdownRule``)."""
    out: list[PolicyRule] = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    out += [PolicyRule((verb,), (group,), (resource,), (name,)) for name in rule.resource_names]
                else:
                    out.append(PolicyRule((verb,), (group,), (resource,)))
    for url in rule.non_resource_urls:
        out += [PolicyRule((verb,), non_resource_urls=(url,)) for verb in rule.verbs]
    return out


def _has(values: Sequence[str], value: str) -> bool:
    return ALL in values or value in values


def _resource_covers(owner: PolicyRule, resource: str) -> bool:
    if _has(owner.resources, resource):
        return True
    # "*/status" in the owner covers "pods/status".
    _, sep, sub = resource.partition("/")
    return bool(sep) and f"*/{sub}" in owner.resources


def _url_covers(owner_url: str, url: str) -> bool:
    if owner_url in (url, ALL):
        return True
    return owner_url.endswith("*") and url.startswith(owner_url[:-1])


def rule_covers(owner: PolicyRule, atom: PolicyRule) -> bool:
    """Whether ``owner`` grants everything the atomic rule ``atom`` grants (``ruleCovers``)."""
    if not all(_has(owner.verbs, v) for v in atom.verbs):
        return False
    if atom.non_resource_urls:
        return all(any(_url_covers(o, u) for o in owner.non_resource_urls) for u in atom.non_resource_urls)
    if not all(_has(owner.api_groups, g) for g in atom.api_groups):
        return False
    if not all(_resource_covers(owner, r) for r in atom.resources):
        return False
    if not owner.resource_names:
        return True
    return bool(atom.resource_names) and all(n in owner.resource_names for n in atom.resource_names)


def covers(owner_rules: Sequence[PolicyRule], servant_rules: Iterable[PolicyRule]) -> tuple[bool, list[PolicyRule]]:
    """(True, []) when the owner's rules grant every permission of the servant's; else the misses."""
    missing: list[PolicyRule] = []
    for rule in servant_rules:
        for atom in _atomic(rule):
            if not any(rule_covers(owner, atom) for owner in owner_rules):
                missing.append(atom)
    return not missing, missing


def compact(rules: Sequence[PolicyRule]) -> list[PolicyRule]:
    """Atomic rules of one group and resource (without names) merged into one rule listing every
    verb (``CompactRules``); other rules are kept as they are."""
    merged: dict[tuple[str, str], list[str]] = {}
    out: list[PolicyRule] = []
    for rule in rules:
        simple = (len(rule.api_groups) == 1 and len(rule.resources) == 1 and not rule.resource_names
                  and not rule.non_resource_urls)
        if not simple:
            out.append(rule)
            continue
        verbs = merged.setdefault((rule.api_groups[0], rule.resources[0]), [])
        verbs += [v for v in rule.verbs if v not in verbs]
    out += [PolicyRule(tuple(verbs), (group,), (resource,)) for (group, resource), verbs in merged.items()]
    return out


def go_quoted(values: Sequence[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "]"


def compact_string(rule: PolicyRule) -> str:
    """``{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`` (Kubernetes' ``CompactString``)."""
    parts = [f"{label}:{go_quoted(values)}" for label, values in (
        ("APIGroups", rule.api_groups), ("Resources", rule.resources), ("NonResourceURLs", rule.non_resource_urls),
        ("ResourceNames", rule.resource_names), ("Verbs", rule.verbs)) if values]
    return "{" + ", ".join(parts) + "}"
