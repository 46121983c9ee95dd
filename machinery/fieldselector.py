"""Field selectors, as Kubernetes parses, prints and matches them (``k8s.io/apimachinery/pkg/fields``).

The apiserver filters list/watch results with them (``?fieldSelector=``) and the CLI passes
``--field-selector`` strings through. Everything here is pure.

Syntax: ``a=b,c!=d,e==f``; values may escape ``\\``, ``,`` and ``=`` with a backslash. Each kind
supports ``metadata.name`` and ``metadata.namespace`` plus the fields of :data:`FIELD_TABLE`
(Kubernetes' per-kind field label conversion functions). A field an object lacks compares as its
zero value's string form (``""``, ``"false"`` or ``"0"``), as Kubernetes compares the string form
of Go zero values.

Parse errors raise :class:`~machinery.errors.BadRequestError` worded as Kubernetes words them.
Label selectors live in :mod:`machinery.selectors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from machinery.errors import BadRequestError


def _path(*keys: str, zero: str = "") -> Callable[[Mapping[str, Any]], str]:
    """A getter for a nested field, printing the value as Kubernetes' field sets do."""

    def get(obj: Mapping[str, Any]) -> str:
        value: Any = obj
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            return zero
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


def _pod_ip(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    ips = status.get("podIPs") or []
    if ips and isinstance(ips[0], Mapping) and ips[0].get("ip"):
        return str(ips[0]["ip"])
    return str(status.get("podIP") or "")


_Getter = Callable[[Mapping[str, Any]], str]
_COMMON_FIELDS: Final[dict[str, _Getter]] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}
_INVOLVED = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")

#: Field paths each kind supports beyond metadata.name and metadata.namespace (kind in lower case).
FIELD_TABLE: Final[dict[str, dict[str, _Getter]]] = {
    "pod": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _path("spec", "hostNetwork", zero="false"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "event": {
        **{f"involvedObject.{k}": _path("involvedObject", k) for k in _INVOLVED},
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    "secret": {"type": _path("type")},
    "node": {"spec.unschedulable": _path("spec", "unschedulable", zero="false")},
    "namespace": {"status.phase": _path("status", "phase")},
    "replicaset": {"status.replicas": _path("status", "replicas", zero="0")},
}


def supported_fields(kind: str) -> dict[str, _Getter]:
    """The field paths ``kind`` (``Pod``, ``pod`` or ``pods``) can be selected by, with getters."""
    lowered = kind.lower()
    extra = FIELD_TABLE.get(lowered) or FIELD_TABLE.get(lowered.removesuffix("s")) or {}
    return {**_COMMON_FIELDS, **extra}


@dataclass(frozen=True)
class FieldRequirement:
    """``field=value`` (``negated=False``) or ``field!=value``."""

    field: str
    value: str
    negated: bool = False

    def __str__(self) -> str:
        return f"{self.field}{'!=' if self.negated else '='}{_escape(self.value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape(value: str, term: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            if nxt not in ("\\", ",", "="):
                raise BadRequestError(f"invalid field selector: invalid escape sequence in '{term}'")
            out.append(nxt)
        elif ch in ",=":
            raise BadRequestError(f"invalid field selector: unescaped '{ch}' in '{term}'")
        else:
            out.append(ch)
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == ",":
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return terms


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements; the empty selector matches every object."""

    requirements: tuple[FieldRequirement, ...] = ()

    def empty(self) -> bool:
        return not self.requirements

    def validate_for(self, kind: str) -> None:
        """Raise ``field label not supported: <label>`` for a field ``kind`` cannot be selected by."""
        fields = supported_fields(kind)
        for req in self.requirements:
            if req.field not in fields:
                raise BadRequestError(f"field label not supported: {req.field}")

    def matches(self, obj: Mapping[str, Any], kind: str | None = None) -> bool:
        """Whether ``obj`` is selected; ``kind`` defaults to ``obj["kind"]``. Unknown fields never match."""
        fields = supported_fields(kind or str(obj.get("kind") or ""))
        for req in self.requirements:
            getter = fields.get(req.field)
            if getter is None:
                return False
            if (getter(obj) == req.value) == req.negated:
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value a ``field=value`` term pins (``metadata.name`` lets the apiserver do a get)."""
        return next((r.value for r in self.requirements if r.field == field and not r.negated), None)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``a=b,c!=d,e==f`` (values may escape ``\\``, ``,`` and ``=`` with a backslash).

    Empty terms (``metadata.name=x,``) are skipped, as Kubernetes' field selector parser does.
    """
    if not text or not text.strip():
        return FieldSelector()
    requirements: list[FieldRequirement] = []
    for term in _split_terms(text):
        if term == "":
            continue
        for symbol, negated in (("!=", True), ("==", False), ("=", False)):
            field, sep, value = term.partition(symbol)
            if sep and "\\" not in field and field.strip():
                requirements.append(FieldRequirement(field.strip(), _unescape(value.strip(), term), negated))
                break
        else:
            raise BadRequestError(f"invalid selector: '{text}'; can't understand '{term}'")
    return FieldSelector(tuple(requirements))
