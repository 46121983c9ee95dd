"""Config errors where users look: the Istio object's ``status`` and Events (``kubectl describe vs``).

Two sources, both reported on the VirtualService (or DestinationRule) they come from:

* analysis of the whole snapshot after each (debounced) change -- what Istio's analyzers report:
  a route to a subset no DestinationRule defines, or to a host that is no Service (IST0101
  ``ReferencedResourceNotFound``) -- written as ``status.validationMessages`` (Istio's shape) and
  a ``Reconciled``-style condition, plus a Warning Event once per message;
* NACKs from proxies (:mod:`meshd.control.push` calls :meth:`StatusReporter.nack`): the proxy's
  message names the refused route (``9080.virtual_hosts[0].routes[1]...``), which the sent
  configuration maps back to its source (``VirtualService default/reviews http[1]``); a Warning
  Event ``ProxyRejectedConfig`` and a condition ``Accepted=False`` are written there. The
  condition is dropped once the object's generation moves past the one refused.

Status writes go through the ``status`` subresource (merge patch) and only when they change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from machinery.client import ApiClient, EventRecorder
from machinery.errors import ApiError
from machinery.meta import now_rfc3339
from meshd.control.compile.errors import ConfigError
from meshd.control.compile.proxy import ProxyConfig, compile_outbound
from meshd.control.compile.scope import ProxyNode
from meshd.control.crds import DESTINATION_RULES, VIRTUAL_SERVICES
from meshd.control.debounce import Debouncer
from meshd.control.model import MeshSnapshot, Obj, key_of

__all__ = ["StatusReporter", "analyze"]

log = logging.getLogger(__name__)

_ROUTE_PATH = re.compile(r"(?P<rc>[\w.-]+?)\.(?P<route>virtual_hosts\[\d+\]\.routes\[\d+\])")
_SOURCE = re.compile(r"^(?P<kind>VirtualService|DestinationRule) (?P<ns>[^/ ]+)/(?P<name>\S+)")
_RESOURCES = {"VirtualService": VIRTUAL_SERVICES, "DestinationRule": DESTINATION_RULES}


def analyze(snapshot: MeshSnapshot, *, root_namespace: str = "istio-system") -> list[ConfigError]:
    """Config errors of every VirtualService, seen from a proxy in its own namespace."""
    errors: set[ConfigError] = set()
    for namespace in sorted({key_of(vs)[0] for vs in snapshot.virtual_services}):
        config = compile_outbound(snapshot, ProxyNode(namespace=namespace), root_namespace=root_namespace)
        errors.update(e for e in config.errors if e.namespace == namespace)
    return sorted(errors)


def sources_of_nack(message: str, config: ProxyConfig | None) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of the objects behind the routes a NACK message names."""
    if config is None:
        return []
    found: list[str] = []
    for match in _ROUTE_PATH.finditer(message):
        source = config.route_sources.get(match.group("rc"), {}).get(match.group("route"))
        if source:
            found.append(source)
    if not found:  # the message names no route: every object behind the refused routes
        found = [s for routes in config.route_sources.values() for s in routes.values()]
    result = []
    for source in found:
        parsed = _SOURCE.match(source)
        if parsed:
            result.append((parsed.group("kind"), parsed.group("ns"), parsed.group("name")))
    return sorted(set(result))


@dataclass
class _Nack:
    message: str
    generation: int
    at: str


class StatusReporter:
    def __init__(self, client: ApiClient, recorder: EventRecorder, snapshot: Callable[[], MeshSnapshot], *,
                 root_namespace: str) -> None:
        self.client = client
        self.recorder = recorder
        self.snapshot = snapshot
        self.root_namespace = root_namespace
        self.debouncer = Debouncer(self._report, quiet=0.2, max_wait=2.0)
        self._nacks: dict[tuple[str, str, str], _Nack] = {}
        self._written: dict[tuple[str, str, str], Any] = {}
        self._announced: set[tuple[str, str, str, str]] = set()

    def start(self) -> None:
        self.debouncer.start()

    async def stop(self) -> None:
        await self.debouncer.stop()

    def changed(self) -> None:
        self.debouncer.trigger()

    def nack(self, proxy: str, type_url: str, message: str, config: ProxyConfig | None) -> None:
        snapshot = self.snapshot()
        for kind, namespace, name in sources_of_nack(message, config):
            obj = snapshot.find(kind, namespace, name)
            if obj is None:
                continue
            kind_name = type_url.rsplit(".", 1)[-1]
            # One message for every proxy refusing the same thing: the Event's count aggregates them.
            self.recorder.event(obj, "Warning", "ProxyRejectedConfig", f"a proxy rejected its {kind_name}: {message}")
            generation = int((obj.get("metadata") or {}).get("generation") or 0)
            text = f"proxy {proxy} rejected {kind_name}: {message}"
            self._nacks[(kind, namespace, name)] = _Nack(text, generation, now_rfc3339())
        self.debouncer.trigger()

    async def _report(self, _changes: int, _first: float) -> None:
        snapshot = self.snapshot()
        errors: dict[tuple[str, str, str], list[ConfigError]] = {}
        for error in analyze(snapshot, root_namespace=self.root_namespace):
            errors.setdefault((error.kind, error.namespace, error.name), []).append(error)
        for kind, pool in (("VirtualService", snapshot.virtual_services),
                           ("DestinationRule", snapshot.destination_rules)):
            for obj in pool:
                key = (kind, *key_of(obj))
                await self._write(kind, obj, key, errors.get(key, []))

    async def _write(self, kind: str, obj: Obj, key: tuple[str, str, str], errors: list[ConfigError]) -> None:
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        nack = self._nacks.get(key)
        if nack is not None and generation > nack.generation:
            del self._nacks[key]
            nack = None
        for error in errors:
            marker = (*key, error.message)
            if marker not in self._announced:
                self._announced.add(marker)
                self.recorder.event(obj, "Warning", error.reason, error.message)
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "validationMessages": [
                {"level": "ERROR", "type": {"code": e.code, "name": e.reason}, "description": e.message}
                for e in errors] or None,
            "conditions": [{"type": "Accepted", "status": "False", "reason": "ProxyRejectedConfig",
                            "message": nack.message, "lastTransitionTime": nack.at,
                            "observedGeneration": generation}] if nack is not None else None,
        }
        current = obj.get("status") or {}
        wanted = {k: v for k, v in status.items() if v is not None}
        if self._written.get(key) == wanted or (not errors and nack is None and not current.get("validationMessages")
                                               and not current.get("conditions")):
            return
        namespace, name = key[1], key[2]
        try:
            await self.client.patch(_RESOURCES[kind], name, {"status": status}, namespace=namespace,
                                    subresource="status")
        except ApiError as exc:
            log.info("status of %s %s/%s not written: %s", kind, namespace, name, exc)
            return
        self._written[key] = wanted
