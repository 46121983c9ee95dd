"""``NamesAccepted`` and ``Established``: which of a CRD's requested names it may have.

A pure function of the CRD and the names already taken in its group, following Kubernetes'
naming-condition controller: the plural, singular and short names share one namespace with
every other resource of the group, kind and listKind another; a name the CRD already holds
in ``status.acceptedNames`` stays its own. A clash leaves the name unaccepted and sets
``NamesAccepted=False`` with the reason of the last clash found (``PluralConflict``,
``SingularConflict``, ``ShortNamesConflict``, ``KindConflict``, ``ListKindConflict``) and the
message ``"<name>" is already in use``. Built-in resources of the group count as taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from machinery.meta import now_rfc3339
from machinery.resources import RESOURCES

Obj = dict[str, Any]


@dataclass(frozen=True)
class Naming:
    """What the naming step decided for one CRD."""

    accepted_names: Obj
    names_accepted: Obj
    established: Obj


def taken_names(group: str, crd_name: str, others: list[Obj]) -> tuple[set[str], set[str]]:
    """(resource names, kind names) already held in ``group`` by other CRDs and built-ins."""
    resources: set[str] = set()
    kinds: set[str] = set()
    for other in others:
        if other["metadata"]["name"] == crd_name or (other.get("spec") or {}).get("group") != group:
            continue
        accepted = (other.get("status") or {}).get("acceptedNames") or {}
        resources.update(n for n in (accepted.get("plural"), accepted.get("singular")) if n)
        resources.update(accepted.get("shortNames") or [])
        kinds.update(n for n in (accepted.get("kind"), accepted.get("listKind")) if n)
    for r in RESOURCES:
        if r.group == group:
            resources.update((r.plural, r.singular, *r.short_names))
            kinds.update((r.kind, r.list_kind))
    return resources, kinds


def _condition(type_: str, status: str, reason: str, message: str) -> Obj:
    return {"type": type_, "status": status, "lastTransitionTime": now_rfc3339(), "reason": reason,
            "message": message}


def find_condition(crd: Obj, type_: str) -> Obj | None:
    return next((c for c in (crd.get("status") or {}).get("conditions") or []
                 if isinstance(c, dict) and c.get("type") == type_), None)


def _fresh(requested: Any, accepted: Any, used: set[str]) -> str | None:
    """None when ``requested`` may be granted, else Kubernetes' message."""
    if requested == accepted or requested not in used:
        return None
    return f'"{requested}" is already in use'


def decide(crd: Obj, others: list[Obj]) -> Naming:
    """The accepted names and the two conditions for ``crd`` given the other CRDs."""
    spec = crd.get("spec") or {}
    requested: Obj = spec.get("names") or {}
    accepted: Obj = dict((crd.get("status") or {}).get("acceptedNames") or {})
    used_resources, used_kinds = taken_names(spec.get("group", ""), crd["metadata"]["name"], others)
    new = dict(accepted)
    status, reason, message = "Unknown", "", ""

    def clash(why: str, text: str) -> None:
        nonlocal status, reason, message
        status, reason, message = "False", why, text

    for field, why, used in (("plural", "PluralConflict", used_resources),
                             ("singular", "SingularConflict", used_resources)):
        problem = _fresh(requested.get(field), accepted.get(field), used)
        if problem:
            clash(why, problem)
        elif requested.get(field) is not None:
            new[field] = requested[field]
    wanted_short = list(requested.get("shortNames") or [])
    if wanted_short != list(accepted.get("shortNames") or []):
        mine = set(accepted.get("shortNames") or [])
        problems = [p for s in wanted_short if s not in mine and (p := _fresh(s, "", used_resources))]
        if problems:
            clash("ShortNamesConflict", problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")
        elif wanted_short:
            new["shortNames"] = wanted_short
        else:
            new.pop("shortNames", None)
    for field, why in (("kind", "KindConflict"), ("listKind", "ListKindConflict")):
        problem = _fresh(requested.get(field), accepted.get(field), used_kinds)
        if problem:
            clash(why, problem)
        elif requested.get(field) is not None:
            new[field] = requested[field]
    if requested.get("categories"):
        new["categories"] = list(requested["categories"])
    else:
        new.pop("categories", None)
    if status == "Unknown":
        status, reason, message = "True", "NoConflicts", "no conflicts found"
    names_accepted = _condition("NamesAccepted", status, reason, message)
    established = find_condition(crd, "Established") or _condition(
        "Established", "False", "NotAccepted", "not all names are accepted")
    if established.get("status") != "True" and status == "True":
        established = _condition("Established", "True", "InitialNamesAccepted",
                                 "the initial names have been accepted")
    return Naming(new, names_accepted, established)


def set_condition(status: Obj, condition: Obj) -> None:
    """Put ``condition`` in ``status.conditions``, keeping lastTransitionTime when the status is unchanged."""
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    for i, existing in enumerate(conditions):
        if existing.get("type") == condition["type"]:
            if (existing.get("status"), existing.get("reason"), existing.get("message")) == (
                    condition["status"], condition.get("reason"), condition.get("message")):
                return
            if existing.get("status") == condition["status"]:
                condition = dict(condition, lastTransitionTime=existing.get("lastTransitionTime"))
            conditions[i] = condition
            status["conditions"] = conditions
            return
    conditions.append(condition)
    status["conditions"] = conditions
