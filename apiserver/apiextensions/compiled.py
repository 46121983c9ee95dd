"""A CRD version's schema compiled once: structural checks, CEL programs, and the per-object operations.

:func:`compile_schema` is what the CRD registry calls when a CustomResourceDefinition is written
(and when a stored one is loaded): it refuses a schema that is not structural or whose rules do not
compile or cost too much (:class:`SchemaError` carrying Kubernetes' causes), and otherwise returns a
:class:`CompiledSchema` whose methods serve every custom-object request:

- :meth:`CompiledSchema.prune` then :meth:`CompiledSchema.default` on write (decode order), and
  :meth:`CompiledSchema.default` alone on read from storage;
- :meth:`CompiledSchema.validate` (schema keywords, list types, embedded resources, then the CEL
  rules, with ``old`` for transition rules on update);
- :meth:`CompiledSchema.openapi` for ``/openapi/v3`` and ``kubectl explain``.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from machinery.errors import StatusCause

from . import field
from .cel import STATIC_ESTIMATED_CRD_COST_LIMIT, cost_error_message
from .cel_validator import Budget, build_tree
from .defaulting import apply_defaults
from .pruning import prune
from .structural import check_schema
from .validation import validate_value

Schema = dict[str, Any]
DEFAULT_FIELD_PATH = "spec.validation.openAPIV3Schema"


class SchemaError(Exception):
    """The schema cannot serve a CRD version; ``causes`` name the offending fields."""

    def __init__(self, causes: list[StatusCause]) -> None:
        super().__init__("; ".join(f"{c.field}: {c.message}" for c in causes))
        self.causes = causes


def version_schema_path(versions: list[dict[str, Any]], index: int) -> str:
    """Where Kubernetes reports errors in version ``index``'s schema.

    Kubernetes' internal CRD form hoists a schema shared by every version to ``spec.validation``,
    so its errors read ``spec.validation.openAPIV3Schema...``; distinct schemas are reported at
    ``spec.versions[i].schema.openAPIV3Schema...``.
    """
    schemas = [(v.get("schema") or {}).get("openAPIV3Schema") for v in versions]
    if len(schemas) > 0 and all(s == schemas[0] for s in schemas):
        return DEFAULT_FIELD_PATH
    return f"spec.versions[{index}].schema.openAPIV3Schema"


class CompiledSchema:
    """One version's structural schema with its CEL rules compiled."""

    def __init__(self, schema: Schema, *, field_path: str = DEFAULT_FIELD_PATH) -> None:
        started = time.perf_counter()
        causes = check_schema(schema, field_path)
        if causes:
            raise SchemaError(causes)
        tree = build_tree(schema, field_path)
        causes = list(tree.causes)
        total = sum(cost for _, cost in tree.costs)
        if total > STATIC_ESTIMATED_CRD_COST_LIMIT:
            running = 0
            for rule_path, cost in sorted(tree.costs, key=lambda c: -c[1]):
                causes.append(
                    field.forbidden(
                        rule_path,
                        "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
                    )
                )
                running += cost
                if total - running <= STATIC_ESTIMATED_CRD_COST_LIMIT:
                    break
            causes.append(
                field.forbidden(
                    field_path,
                    cost_error_message(
                        "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                        total,
                        STATIC_ESTIMATED_CRD_COST_LIMIT,
                    ),
                )
            )
        if causes:
            raise SchemaError(causes)
        self.schema = schema
        self.field_path = field_path
        self._cel = tree.root
        self.rule_count = tree.rule_count
        self.estimated_cost = total
        self.compile_seconds = time.perf_counter() - started

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[StatusCause]:
        """Every reason ``obj`` breaks the schema or a rule; ``old`` enables transition rules (update)."""
        causes = validate_value(self.schema, _without_type_meta(obj))
        if self._cel is not None:
            self._cel.validate(obj, old, "", causes, Budget())
        return causes

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop unknown fields in place; the removed paths (``spec.foo``), sorted."""
        return prune(obj, self.schema, is_resource_root=True)

    def default(self, obj: dict[str, Any]) -> None:
        """Apply ``default`` values in place."""
        apply_defaults(obj, self.schema)

    def openapi(self) -> Schema:
        """The schema as published in ``/openapi/v3`` (a copy; ``x-kubernetes-*`` kept)."""
        return copy.deepcopy(self.schema)


def _without_type_meta(obj: dict[str, Any]) -> dict[str, Any]:
    # apiVersion, kind and metadata are checked by the object-meta code, not by the schema, unless
    # the schema declares them.
    return obj


def compile_schema(schema: Schema, *, field_path: str = DEFAULT_FIELD_PATH) -> CompiledSchema:
    """Check and compile a version's ``openAPIV3Schema``; raises :class:`SchemaError`."""
    return CompiledSchema(schema, field_path=field_path)
