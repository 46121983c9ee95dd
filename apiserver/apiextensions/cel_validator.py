"""Running ``x-kubernetes-validations`` rules over a custom object, as kube-apiserver's CEL validator.

:func:`build_tree` keeps only the schema nodes that carry rules or lead to one (Istio's schemas are
large, their rules few), compiling each node's rules with :mod:`.cel`. :meth:`CelNode.validate`
walks the object with the tree:

- ``self`` is the value at the node; ``oldSelf`` the correlated old value on update (same property
  key, same map key, same ``x-kubernetes-list-type: map`` entry — never an atomic or set list
  item). A transition rule (one that uses ``oldSelf``) runs only when an old value exists, unless
  ``optionalOldSelf`` makes ``oldSelf`` an optional;
- ``null`` values are not validated; object keys are escaped (``a-b`` → ``a__dash__b``); strings
  with ``format: date-time``/``duration``/``byte`` become timestamps/durations/bytes; at the root
  ``metadata`` shows only ``name`` and ``generateName``;
- a false result is ``Invalid value: "<type>": <message>`` at the node's path (plus the rule's
  ``fieldPath``), or ``Forbidden``/``Required``/``Duplicate`` per ``reason``; the message is
  ``messageExpression``'s result, else ``message``, else ``failed rule: <rule>``;
- an evaluation error is ``<error> evaluating rule: <rule>``;
- cost (approximation): each evaluation costs ``ops * (1 + elements of self) ** macros`` plus a
  tenth of the string bytes it may scan; over 1,000,000 in one call or 10,000,000 in one request
  the walk stops with Kubernetes' wording.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from machinery.errors import StatusCause

from . import field
from .cel import (
    MAX_REQUEST_SIZE_BYTES,
    PER_CALL_LIMIT,
    RUNTIME_CEL_COST_BUDGET,
    CompiledRule,
    compile_rules,
    escape_property,
    max_elements,
)
from .schema_keywords import resolve_field_path

Schema = dict[str, Any]


@dataclass
class Budget:
    """What is left of one request's CEL cost budget."""

    remaining: int = RUNTIME_CEL_COST_BUDGET
    exhausted: bool = False


@dataclass
class CelNode:
    """A schema node with rules, or on the way to one."""

    schema: Schema
    rules: list[CompiledRule] = dc_field(default_factory=list)
    properties: dict[str, CelNode] = dc_field(default_factory=dict)
    items: CelNode | None = None
    additional: CelNode | None = None
    is_root: bool = False

    def validate(self, value: Any, old: Any, path: str, causes: list[StatusCause], budget: Budget) -> None:
        """Append the causes of every failing rule at and under this node."""
        if value is None or budget.exhausted:
            return
        if self.rules:
            self._run_rules(value, old, path, causes, budget)
        if isinstance(value, dict):
            old_map = old if isinstance(old, dict) else {}
            for name, child in self.properties.items():
                if name in value:
                    child.validate(value[name], old_map.get(name), field.child(path, name), causes, budget)
            if self.additional is not None:
                for name, item in value.items():
                    if name not in (self.schema.get("properties") or {}):
                        self.additional.validate(item, old_map.get(name), field.child(path, name), causes, budget)
        elif isinstance(value, list) and self.items is not None:
            old_items = self._correlate(value, old)
            for i, item in enumerate(value):
                self.items.validate(item, old_items[i], field.index(path, i), causes, budget)

    def _correlate(self, value: list[Any], old: Any) -> list[Any]:
        if self.schema.get("x-kubernetes-list-type") != "map" or not isinstance(old, list):
            return [None] * len(value)
        keys = list(self.schema.get("x-kubernetes-list-map-keys") or [])

        def identity(item: Any) -> tuple[Any, ...] | None:
            return tuple(repr(item.get(k)) for k in keys) if isinstance(item, dict) else None

        by_key = {identity(item): item for item in old}
        return [by_key.get(identity(item)) for item in value]

    def _run_rules(self, value: Any, old: Any, path: str, causes: list[StatusCause], budget: Budget) -> None:
        this = to_cel(value, self.schema, is_root=self.is_root)
        previous = to_cel(old, self.schema, is_root=self.is_root) if old is not None else None
        size = len(value) if isinstance(value, list | dict) else 1
        chars = _string_bytes(value)
        type_name = self.schema.get("type", "")
        for rule in self.rules:
            if rule.uses_old_self and previous is None and not rule.optional_old_self:
                continue
            cost = rule.ops * (1 + size) ** rule.macros + (chars // 10 if rule.scans_strings else 0)
            if cost > PER_CALL_LIMIT:
                causes.append(
                    field.invalid(
                        path,
                        type_name,
                        "'operation cancelled: actual cost limit exceeded': no further validation rules will be run "
                        f"due to call cost exceeds limit for rule: {_rule_error_string(rule)}",
                    )
                )
                budget.exhausted = True
                return
            budget.remaining -= cost
            if budget.remaining < 0:
                causes.append(
                    field.invalid(
                        path,
                        type_name,
                        "validation failed due to running out of cost budget, no further validation rules will be run",
                    )
                )
                budget.exhausted = True
                return
            variables: dict[str, Any] = {"self": this}
            if rule.uses_old_self:
                if rule.optional_old_self:
                    import cel as celengine  # imported late: see cel._compile_text

                    variables["oldSelf"] = (
                        celengine.OptionalValue.none() if previous is None else celengine.OptionalValue.of(previous)
                    )
                else:
                    variables["oldSelf"] = previous
            cause = _evaluate(rule, variables, self.schema, path, type_name)
            if cause is not None:
                causes.append(cause)


def _rule_error_string(rule: CompiledRule) -> str:
    message = str(rule.rule.get("message") or "").strip()
    return message or rule.text


def _evaluate(
    rule: CompiledRule, variables: dict[str, Any], schema: Schema, path: str, type_name: str
) -> StatusCause | None:
    from .cel import library_context

    context = library_context(variables)
    try:
        result = rule.program.execute(context)
    except Exception as exc:  # the engine raises plain Python errors for every evaluation failure
        return field.invalid(path, type_name, f"{_engine_error(exc)} evaluating rule: {_rule_error_string(rule)}")
    if result is True:
        return None
    message = _message(rule, context)
    target = path
    field_path = str(rule.rule.get("fieldPath") or "")
    if field_path:
        suffix = resolve_field_path(schema, field_path)
        if suffix is not None:
            target = f"{path}{suffix}" if path else suffix.lstrip(".")
    reason = rule.rule.get("reason")
    if reason == "FieldValueForbidden":
        return field.forbidden(target, message)
    if reason == "FieldValueRequired":
        return field.required(target, message)
    if reason == "FieldValueDuplicate":
        return field.duplicate(target, type_name)
    return field.invalid(target, type_name, message)


def _message(rule: CompiledRule, context: Any) -> str:
    if rule.message_program is not None:
        try:
            text = rule.message_program.execute(context)
        except Exception:  # Kubernetes falls back to the static message when messageExpression fails
            text = None
        if isinstance(text, str) and text.strip() and "\n" not in text.strip():
            return text.strip()
    message = str(rule.rule.get("message") or "").strip()
    return message or f"failed rule: {rule.text}"


def _engine_error(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"Python function call failed: \w+: (.*?)\. Check function arguments", text)
    if match:
        return match.group(1)
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0] if exc.args else ''}"
    return text.split(". Check")[0]


def _string_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_string_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(len(k) + _string_bytes(v) for k, v in value.items())
    return 0


_GO_DURATION = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> dt.timedelta | str:
    if text in ("0", ""):
        return dt.timedelta(0)
    total, position = 0.0, 0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            return text
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return dt.timedelta(seconds=total) if position == len(text) else text


def _timestamp(text: str) -> dt.datetime | str:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return text


def to_cel(value: Any, schema: Schema | None, *, is_root: bool = False) -> Any:
    """A JSON value as the CEL value Kubernetes binds for it (see module doc)."""
    if schema is None or value is None:
        return value
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for name, item in value.items():
            if name in properties:
                escaped = escape_property(name)
                if escaped is None:
                    continue
                sub = properties[name]
                if is_root and name == "metadata" and isinstance(item, dict):
                    item = {k: v for k, v in item.items() if k in ("name", "generateName")}
                out[escaped] = to_cel(item, sub)
            elif isinstance(additional, dict):
                out[name] = to_cel(item, additional)
            else:
                out[name] = item
        return out
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else None
        return [to_cel(item, items) for item in value]
    if isinstance(value, str):
        fmt = schema.get("format")
        if fmt == "date-time":
            return _timestamp(value)
        if fmt == "duration":
            return _duration(value)
        if fmt == "byte":
            try:
                return base64.b64decode(value)
            except ValueError:
                return value
        return value
    if isinstance(value, int) and not isinstance(value, bool) and schema.get("type") == "number":
        return float(value)
    return value


@dataclass
class CelTree:
    """The rule tree of a schema and what compiling it produced."""

    root: CelNode | None
    causes: list[StatusCause]
    costs: list[tuple[str, int]]
    rule_count: int


def build_tree(schema: Schema, path: str) -> CelTree:
    """Compile every rule of ``schema`` (the version root, at ``path``) into a :class:`CelTree`."""
    causes: list[StatusCause] = []
    costs: list[tuple[str, int]] = []
    counter = [0]
    root = _build(schema, path, causes, costs, counter, cardinality=1, min_bytes=2, uncorrelatable=None, is_root=True)
    return CelTree(root, causes, costs, counter[0])


def _build(
    schema: Schema,
    path: str,
    causes: list[StatusCause],
    costs: list[tuple[str, int]],
    counter: list[int],
    *,
    cardinality: int,
    min_bytes: int,
    uncorrelatable: str | None,
    is_root: bool = False,
) -> CelNode | None:
    node = CelNode(schema=schema, is_root=is_root)
    if schema.get("x-kubernetes-validations"):
        # How many times the rule can run: the product of the enclosing bounds, and never more
        # occurrences than fit in one request (each needs at least its keys' bytes).
        occurrences = min(cardinality, max(MAX_REQUEST_SIZE_BYTES // max(min_bytes, 3), 1))
        compiled = compile_rules(schema, path, cardinality=occurrences, uncorrelatable=uncorrelatable, is_root=is_root)
        causes.extend(compiled.causes)
        costs.extend(compiled.costs)
        node.rules = compiled.rules
        counter[0] += len(schema["x-kubernetes-validations"])
    map_atomic = schema.get("x-kubernetes-map-type") == "atomic"
    for name, sub in (schema.get("properties") or {}).items():
        child = _build(
            sub,
            field.key(field.child(path, "properties"), name),
            causes,
            costs,
            counter,
            cardinality=cardinality,
            min_bytes=min_bytes + len(name) + 3,
            uncorrelatable=uncorrelatable or (path if map_atomic else None),
        )
        if child is not None:
            node.properties[name] = child
    if isinstance(schema.get("items"), dict):
        correlatable = schema.get("x-kubernetes-list-type") == "map"
        node.items = _build(
            schema["items"],
            field.child(path, "items"),
            causes,
            costs,
            counter,
            cardinality=cardinality * max_elements(schema),
            min_bytes=2,
            uncorrelatable=uncorrelatable or (None if correlatable else path),
        )
    if isinstance(schema.get("additionalProperties"), dict):
        node.additional = _build(
            schema["additionalProperties"],
            field.child(path, "additionalProperties"),
            causes,
            costs,
            counter,
            cardinality=cardinality * max_elements(schema),
            min_bytes=5,
            uncorrelatable=uncorrelatable or (path if map_atomic else None),
        )
    if node.rules or node.properties or node.items is not None or node.additional is not None:
        return node
    return None
