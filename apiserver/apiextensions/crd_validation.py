"""Defaulting and validation of CustomResourceDefinitions (apiextensions.k8s.io/v1), as Kubernetes does.

Called by the CRD registry (:mod:`~apiserver.apiextensions.cr_registry`) on every create and
update. :func:`default_crd` fills what Kubernetes defaults (``names.singular``, ``names.listKind``,
``conversion.strategy: None``); :func:`validate_crd` collects every problem with Kubernetes'
field paths and wording and raises one 422 ``Invalid`` Status: ``metadata.name`` must be
``<plural>.<group>``, a group with a dot, a scope, names that are DNS-1035 labels, unique
versions with exactly one storage version, a schema for every version (structural, checked by
the schema library through :mod:`~apiserver.apiextensions.schema_seam`), printer columns and
scale paths. Conversion webhooks are not served: ``conversion.strategy`` must be ``None``.
"""

from __future__ import annotations

import re
from typing import Any

from apiserver.apiextensions.schema_seam import SchemaError, compile_schema, schema_path
from machinery.api import names as rules
from machinery.api.names import Errors
from machinery.errors import StatusCause, invalid

Obj = dict[str, Any]

GROUP = "apiextensions.k8s.io"
KIND = "CustomResourceDefinition"
SCOPES = ("Cluster", "Namespaced")
COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
_SIMPLE_JSONPATH = re.compile(r"^(\.[A-Za-z0-9_-]+|\[[^\]]*\])+$")


def default_crd(crd: Obj) -> None:
    """Kubernetes' defaults for a v1 CRD (in place)."""
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str) and names["kind"]:
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    conversion = spec.get("conversion")
    if conversion is None:
        spec["conversion"] = {"strategy": "None"}
    for version in spec.get("versions") or []:
        if isinstance(version, dict):
            version.setdefault("served", False)
            version.setdefault("storage", False)


def _dns1035(errs: Errors, path: str, value: Any, *, mixed_case: bool = False) -> None:
    if not isinstance(value, str) or not value:
        return
    found = rules.dns1035_label(value.lower() if mixed_case else value)
    if found:
        prefix = "may have mixed case, but should otherwise match: " if mixed_case else ""
        errs.invalid(path, value, prefix + ",".join(found))


def _names(errs: Errors, path: str, names: Obj) -> None:
    for field in ("plural", "singular"):
        _dns1035(errs, f"{path}.{field}", names.get(field))
    for field in ("kind", "listKind"):
        _dns1035(errs, f"{path}.{field}", names.get(field), mixed_case=True)
    for i, short in enumerate(names.get("shortNames") or []):
        _dns1035(errs, f"{path}.shortNames[{i}]", short)
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.invalid(f"{path}.listKind", names["listKind"], "kind and listKind may not be the same")
    for i, category in enumerate(names.get("categories") or []):
        _dns1035(errs, f"{path}.categories[{i}]", category)


def _column(errs: Errors, path: str, col: Obj) -> None:
    if not col.get("name"):
        errs.required(f"{path}.name")
    allowed = "must be one of " + ",".join(COLUMN_TYPES)
    if not col.get("type"):
        errs.required(f"{path}.type", allowed)
    elif col["type"] not in COLUMN_TYPES:
        errs.invalid(f"{path}.type", col["type"], allowed)
    if col.get("format") and col["format"] not in COLUMN_FORMATS:
        errs.invalid(f"{path}.format", col["format"], "must be one of " + ",".join(COLUMN_FORMATS))
    json_path = col.get("jsonPath")
    if not json_path:
        errs.required(f"{path}.JSONPath")
    elif not isinstance(json_path, str) or not _SIMPLE_JSONPATH.match(json_path):
        errs.invalid(f"{path}.JSONPath", json_path, "must be a simple json path starting with .")


def _scale(errs: Errors, path: str, scale: Obj) -> None:
    spec_path = scale.get("specReplicasPath")
    if not spec_path:
        errs.required(f"{path}.specReplicasPath")
    elif not str(spec_path).startswith(".spec."):
        errs.invalid(f"{path}.specReplicasPath", spec_path, "should be a json path under .spec")
    status_path = scale.get("statusReplicasPath")
    if not status_path:
        errs.required(f"{path}.statusReplicasPath")
    elif not str(status_path).startswith(".status."):
        errs.invalid(f"{path}.statusReplicasPath", status_path, "should be a json path under .status")
    selector = scale.get("labelSelectorPath")
    if selector and not (str(selector).startswith(".spec.") or str(selector).startswith(".status.")):
        errs.invalid(f"{path}.labelSelectorPath", selector, "should be a json path under either .spec or .status")


def _versions(errs: Errors, spec: Obj) -> None:
    versions = spec.get("versions")
    if not isinstance(versions, list):
        versions = []
    seen: set[str] = set()
    unique = True
    storage = 0
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            errs.invalid(path, v, "must be an object")
            continue
        name = v.get("name")
        if not name:
            errs.required(f"{path}.name")
        else:
            _dns1035(errs, f"{path}.name", name)
            unique = unique and name not in seen
            seen.add(name)
        storage += 1 if v.get("storage") is True else 0
        schema = (v.get("schema") or {}).get("openAPIV3Schema") if isinstance(v.get("schema"), dict) else None
        if schema is None:
            errs.required(f"{path}.schema.openAPIV3Schema", "schemas are required")
        else:
            try:
                compile_schema(schema, field_path=schema_path(versions, i))
            except SchemaError as exc:
                # A schema every version shares is reported once (at spec.validation), as Kubernetes does.
                errs.causes.extend(c for c in exc.causes if c not in errs.causes)
        subs = v.get("subresources") or {}
        if isinstance(subs, dict) and isinstance(subs.get("scale"), dict):
            _scale(errs, f"{path}.subresources.scale", subs["scale"])
        for j, col in enumerate(v.get("additionalPrinterColumns") or []):
            if isinstance(col, dict):
                _column(errs, f"{path}.additionalPrinterColumns[{j}]", col)
    if not unique:
        errs.invalid("spec.versions", versions, "must contain unique version names")
    if storage != 1:
        errs.invalid("spec.versions", versions, "must have exactly one version marked as storage version")


def _conversion(errs: Errors, spec: Obj) -> None:
    conversion = spec.get("conversion") or {}
    if not isinstance(conversion, dict):
        errs.invalid("spec.conversion", conversion, "must be an object")
        return
    strategy = conversion.get("strategy")
    if not strategy:
        errs.required("spec.conversion.strategy")
    elif strategy == "Webhook":
        errs.causes.append(StatusCause(
            "spec.conversion.strategy",
            'Unsupported value: "Webhook": supported values: "None" (this apiserver does not call conversion '
            "webhooks; serve every version with the same schema and strategy None)", "FieldValueNotSupported"))
    elif strategy != "None":
        errs.not_supported("spec.conversion.strategy", strategy, ("None", "Webhook"))
    elif conversion.get("webhook") is not None:
        errs.forbidden("spec.conversion.webhook", "should not be set when strategy is not set to Webhook")


def validate_crd(crd: Obj, old: Obj | None = None) -> None:
    """Raise a 422 listing every problem of ``crd`` (``old``: the stored CRD on update)."""
    errs = Errors()
    meta = crd.get("metadata") or {}
    spec = crd.get("spec") if isinstance(crd.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    assert isinstance(names, dict)
    group = spec.get("group")
    name = meta.get("name") or ""
    if not name:
        errs.required("metadata.name", "name or generateName is required")
    else:
        found = rules.dns1123_subdomain(name)
        if name != f"{names.get('plural', '')}.{group or ''}":
            found.append('must be spec.names.plural+"."+spec.group')
        for message in found:
            errs.invalid("metadata.name", name, message)
    if not group:
        errs.required("spec.group")
    elif rules.dns1123_subdomain(group):
        errs.invalid("spec.group", group, ",".join(rules.dns1123_subdomain(group)))
    elif "." not in group:
        errs.invalid("spec.group", group, "should be a domain with at least one dot")
    scope = spec.get("scope")
    if not scope:
        errs.required("spec.scope")
    elif scope not in SCOPES:
        errs.not_supported("spec.scope", scope, SCOPES)
    _versions(errs, spec)
    for field in ("plural", "singular", "kind", "listKind"):
        if not names.get(field):
            errs.required(f"spec.names.{field}")
    _names(errs, "spec.names", names)
    _conversion(errs, spec)
    if old is not None:
        old_spec = old.get("spec") or {}
        if group != old_spec.get("group"):
            errs.invalid("spec.group", group, "field is immutable")
        if names.get("plural") != (old_spec.get("names") or {}).get("plural"):
            errs.invalid("spec.names.plural", names.get("plural"), "field is immutable")
        if _established(old):
            if scope != old_spec.get("scope"):
                errs.invalid("spec.scope", scope, "field is immutable")
            if names.get("kind") != (old_spec.get("names") or {}).get("kind"):
                errs.invalid("spec.names.kind", names.get("kind"), "field is immutable")
    if errs.causes:
        raise invalid(KIND, name, errs.causes, group=GROUP)


def _established(crd: Obj) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [] if isinstance(c, dict))
