"""Which webhooks a request calls: rules, matchPolicy, selectors and matchConditions.

Kubernetes' order of checks (``pkg/admission/plugin/webhook/generic``): the rules decide first
(operation, group, version, resource with its subresource, scope); with ``matchPolicy:
Equivalent`` a rule naming another served version of the same group and resource also matches,
and the webhook is then sent the object at that version. Then ``namespaceSelector`` (the labels of
the request's namespace; of the Namespace itself when the request is about one; cluster-scoped
objects always pass), ``objectSelector`` (the new or the old object's labels), and finally the CEL
``matchConditions`` (all must be true; an error follows the webhook's failurePolicy).

Resource patterns: ``pods`` (the resource only), ``pods/status``, ``pods/*``, ``*/status``,
``*`` (every resource, no subresource) and ``*/*`` (everything).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from apiserver.webhooks.attributes import Call
from apiserver.webhooks.config import Rule, Webhook
from machinery.resources import ResourceInfo, all_resources


class MatchConditionError(Exception):
    """A matchCondition could not be evaluated (handled per failurePolicy)."""


def _resource_matches(patterns: tuple[str, ...], plural: str, subresource: str) -> bool:
    for pattern in patterns:
        if pattern == "*/*":
            return True
        res, slash, sub = pattern.partition("/")
        if not slash:
            if not subresource and pattern in ("*", plural):
                return True
            continue
        if res in ("*", plural) and sub in ("*", subresource) and subresource:
            return True
    return False


def _scope_matches(scope: str, call: Call) -> bool:
    if scope == "*":
        return True
    if scope == "Namespaced":
        return not call.namespace_resource and bool(call.namespace)
    return call.namespace_resource or not call.namespace  # Cluster


def rule_matches(rule: Rule, call: Call, resource: ResourceInfo) -> bool:
    """Whether ``rule`` covers ``call`` when its resource is seen as ``resource`` (a version of it)."""
    if call.operation not in rule.operations and "*" not in rule.operations:
        return False
    if resource.group not in rule.groups and "*" not in rule.groups:
        return False
    if resource.version not in rule.versions and "*" not in rule.versions:
        return False
    if not _resource_matches(rule.resources, resource.plural, call.subresource):
        return False
    return _scope_matches(rule.scope, call)


def _equivalents(resource: ResourceInfo) -> list[ResourceInfo]:
    """Other served versions of the same group and resource (preferred first)."""
    return [r for r in all_resources()
            if r.group == resource.group and r.plural == resource.plural and r.version != resource.version]


def matched_resource(hook: Webhook, call: Call) -> ResourceInfo | None:
    """The version of the call's resource that ``hook``'s rules match, or None.

    The request's own version first; with ``matchPolicy: Equivalent`` then every other served
    version of the same group and resource."""
    if any(rule_matches(rule, call, call.resource) for rule in hook.rules):
        return call.resource
    if hook.match_policy != "Equivalent":
        return None
    for other in _equivalents(call.resource):
        if any(rule_matches(rule, call, other) for rule in hook.rules):
            return other
    return None


def _labels(obj: Mapping[str, Any] | None) -> dict[str, str] | None:
    if obj is None:
        return None
    return dict((obj.get("metadata") or {}).get("labels") or {})


NamespaceLabels = Callable[[str], dict[str, str] | None]
"""Labels of a namespace by name (None when it is not known)."""


def namespace_matches(hook: Webhook, call: Call, namespace_labels: NamespaceLabels) -> bool:
    selector = hook.namespace_selector
    if selector.empty():
        return True
    if call.namespace_resource:
        labels = _labels(call.object if call.object is not None else call.old_object) or {}
        return selector.matches(labels)
    if not call.namespace:
        return True  # cluster-scoped objects are not in a namespace
    return selector.matches(namespace_labels(call.namespace) or {})


def object_matches(hook: Webhook, call: Call) -> bool:
    selector = hook.object_selector
    if selector.empty():
        return True
    new, old = _labels(call.object), _labels(call.old_object)
    return (new is not None and selector.matches(new)) or (old is not None and selector.matches(old))


def conditions_match(hook: Webhook, variables: dict[str, Any]) -> bool:
    """All matchConditions true: call. Any false: skip. Raises :class:`MatchConditionError`."""
    for condition in hook.match_conditions:
        if condition.program is None:
            raise MatchConditionError(f"matchCondition {condition.name!r}: expression does not compile")
        try:
            result = condition.program.execute(variables)
        except Exception as exc:  # the CEL library raises plain TypeError/ValueError/RuntimeError
            raise MatchConditionError(f"matchCondition {condition.name!r}: {exc}") from exc
        if not isinstance(result, bool):
            raise MatchConditionError(f"matchCondition {condition.name!r}: must evaluate to bool, "
                                      f"got {type(result).__name__}")
        if not result:
            return False
    return True
