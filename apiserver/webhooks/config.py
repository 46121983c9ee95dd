"""The admission webhooks currently configured, read from the apiserver's watch caches.

:class:`WebhookSource` turns the stored MutatingWebhookConfigurations and
ValidatingWebhookConfigurations (already defaulted and validated on write by
``machinery.api.validation_webhooks``) into :class:`Webhook` values, ordered as Kubernetes calls
them: configurations by name, then each configuration's list order. The compiled list is rebuilt
only when a configuration changes (the cache's stored bytes change identity), so a request pays
nothing but an identity check; with no configuration at all, nothing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from apiserver.watchcache import WatchCache
from machinery.selectors import LabelSelector, from_label_selector

Obj = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """One ``RuleWithOperations``."""

    operations: frozenset[str]
    groups: frozenset[str]
    versions: frozenset[str]
    resources: tuple[str, ...]
    scope: str


@dataclass(frozen=True)
class MatchCondition:
    """A named CEL expression, compiled once (``program`` is None when it does not compile)."""

    name: str
    expression: str
    program: Any = field(compare=False)


@dataclass(frozen=True)
class Webhook:
    """One webhook of a configuration, as the dispatcher needs it."""

    name: str
    configuration: str
    mutating: bool
    rules: tuple[Rule, ...]
    failure_policy: str
    match_policy: str
    namespace_selector: LabelSelector
    object_selector: LabelSelector
    side_effects: str
    timeout_seconds: int
    reinvocation_policy: str
    match_conditions: tuple[MatchCondition, ...]
    url: str | None
    service: tuple[str, str, str, int] | None
    """(namespace, name, path, port) for ``clientConfig.service``."""
    ca_bundle: bytes | None = field(repr=False)

    @property
    def fail_closed(self) -> bool:
        return self.failure_policy != "Ignore"


def _compile(expression: str) -> Any:
    import cel  # here, not at the top: loading the CEL engine costs ~0.1 s at start

    try:
        return cel.compile(expression)
    except ValueError:
        return None


def compile_webhook(hook: Obj, *, configuration: str, mutating: bool) -> Webhook:
    """A stored webhook entry (defaulted) as a :class:`Webhook`."""
    client = hook.get("clientConfig") or {}
    service = client.get("service")
    ca = client.get("caBundle")
    rules = tuple(
        Rule(operations=frozenset(r.get("operations") or ()), groups=frozenset(r.get("apiGroups") or ()),
             versions=frozenset(r.get("apiVersions") or ()), resources=tuple(r.get("resources") or ()),
             scope=str(r.get("scope") or "*"))
        for r in hook.get("rules") or [])
    return Webhook(
        name=str(hook.get("name") or ""),
        configuration=configuration,
        mutating=mutating,
        rules=rules,
        failure_policy=str(hook.get("failurePolicy") or "Fail"),
        match_policy=str(hook.get("matchPolicy") or "Equivalent"),
        namespace_selector=from_label_selector(hook.get("namespaceSelector") or {}),
        object_selector=from_label_selector(hook.get("objectSelector") or {}),
        side_effects=str(hook.get("sideEffects") or "Unknown"),
        timeout_seconds=int(hook.get("timeoutSeconds") or 10),
        reinvocation_policy=str(hook.get("reinvocationPolicy") or "Never"),
        match_conditions=tuple(MatchCondition(str(c.get("name") or ""), str(c.get("expression") or ""),
                                              _compile(str(c.get("expression") or "")))
                               for c in hook.get("matchConditions") or []),
        url=client.get("url"),
        service=(str(service.get("namespace") or ""), str(service.get("name") or ""),
                 str(service.get("path") or ""), int(service.get("port") or 443)) if service else None,
        ca_bundle=base64.b64decode(ca) if ca else None,
    )


class _Compiled:
    """The webhooks of one configuration kind, rebuilt when the cache's objects change."""

    def __init__(self, cache: WatchCache, *, mutating: bool) -> None:
        self.cache = cache
        self.mutating = mutating
        self._fingerprint: tuple[int, ...] = ()
        self._webhooks: tuple[Webhook, ...] = ()

    def webhooks(self) -> tuple[Webhook, ...]:
        raw = self.cache.raw
        if not raw:
            return ()
        fingerprint = tuple(id(v) for v in raw.values())
        if fingerprint != self._fingerprint:
            hooks: list[Webhook] = []
            for config in sorted(self.cache.decoded(), key=lambda c: c["metadata"]["name"]):
                name = config["metadata"]["name"]
                hooks.extend(compile_webhook(h, configuration=name, mutating=self.mutating)
                             for h in config.get("webhooks") or [])
            self._webhooks = tuple(hooks)
            self._fingerprint = fingerprint
        return self._webhooks


class WebhookSource:
    """Mutating and validating webhooks as currently stored (read from two watch caches)."""

    def __init__(self, mutating: WatchCache, validating: WatchCache) -> None:
        self._mutating = _Compiled(mutating, mutating=True)
        self._validating = _Compiled(validating, mutating=False)

    def any(self) -> bool:
        """True when at least one configuration exists (the fast path checks this first)."""
        return bool(self._mutating.cache.raw or self._validating.cache.raw)

    def mutating(self) -> tuple[Webhook, ...]:
        return self._mutating.webhooks()

    def validating(self) -> tuple[Webhook, ...]:
        return self._validating.webhooks()
