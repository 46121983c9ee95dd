"""Compiling ``x-kubernetes-validations`` rules and estimating their cost, as kube-apiserver does at CRD write.

Rules run on the ``cel`` package (``common-expression-language`` on PyPI: the Rust ``cel``
interpreter behind Python bindings) with Kubernetes' extension functions from
:mod:`.cel_library`. Programs are compiled once per distinct expression text and cached, so a
bundle that repeats a rule on many fields (Istio's CRDs: ~400 rules, ~40 distinct) compiles each
expression once.

What "compiles" means here. cel-go type-checks a rule against the schema's declared types; the
engine used here only parses. This module adds the checks that catch what real CRDs get wrong:
syntax errors, calls to functions that no library defines, variables other than ``self``,
``oldSelf`` and comprehension variables, and ``self.a.b`` chains naming fields the schema does not
declare (``undefined field 'b'``). Type mismatches (``self.name + 1``) are found when the rule
runs, not when the CRD is written.

Cost (approximation). cel-go estimates a rule's worst-case cost from the schema's size bounds
(``maxItems``, ``maxProperties``, ``maxLength``; an unbounded list or string is sized by the 3 MiB
request limit) and refuses a rule above 10,000,000 per expression (``StaticEstimatedCostLimit``, the
cost multiplied by how many times the rule can run: the product of enclosing list/map bounds) and a
CRD whose rules total more than 100,000,000. Without the AST this module estimates::

    cost = (operators + calls + 1) * Π over comprehension macros (bound of the iterated collection)
           * (0.1 * bound of the longest string the rule scans with matches/contains/find/…:
              the receiver ``self``, ``self.x`` or a macro variable over a list of strings)
    expression cost = cost * cardinality(enclosing lists and maps)

which is an upper bound of the same shape (nested macros multiply, bounds divide), and reports the
excess with Kubernetes' wording (``estimated rule cost exceeds budget by factor of 3.2x (try
simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and
strings are declared)``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import lru_cache
from typing import Any

from machinery.errors import StatusCause

from . import field
from .cel_library import BUILTIN_FUNCTIONS, functions

Schema = dict[str, Any]

STATIC_ESTIMATED_COST_LIMIT = 10_000_000
STATIC_ESTIMATED_CRD_COST_LIMIT = 100_000_000
PER_CALL_LIMIT = 1_000_000
RUNTIME_CEL_COST_BUDGET = 10_000_000
MAX_REQUEST_SIZE_BYTES = 3 * 1024 * 1024
_UNBOUNDED_ELEMENTS = MAX_REQUEST_SIZE_BYTES // 3  # the smallest element, "" or {} plus a comma

_LIBRARY = functions()
_ROOT_METADATA: Schema = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "generateName": {"type": "string"}},
}
_KNOWN_FUNCTIONS = BUILTIN_FUNCTIONS | frozenset(_LIBRARY)
_TYPE_NAMES = frozenset({"int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type", "dyn"})
_MACRO = re.compile(
    r"\.\s*(all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,(?:\s*([A-Za-z_][A-Za-z0-9_]*)\s*,)?"
)
_STRING_SCAN = re.compile(
    r"\b(matches|contains|startsWith|endsWith|find|findAll|split|replace|indexOf|lastIndexOf|lowerAscii|upperAscii|trim|format)\s*\("
)
_SELF_CHAIN = re.compile(r"(?<![\w.])(self|oldSelf)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_CEL_RESERVED = frozenset(
    {
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)


@dataclass
class CompiledRule:
    """One rule, ready to run at a schema node."""

    rule: dict[str, Any]
    program: Any
    message_program: Any | None
    uses_old_self: bool
    optional_old_self: bool
    ops: int
    macros: int
    scans_strings: bool

    @property
    def text(self) -> str:
        return str(self.rule.get("rule", ""))


@dataclass
class CompileResult:
    """The rules of one schema node and the causes their compilation produced."""

    rules: list[CompiledRule] = dc_field(default_factory=list)
    causes: list[StatusCause] = dc_field(default_factory=list)
    costs: list[tuple[str, int]] = dc_field(default_factory=list)


def escape_property(name: str) -> str | None:
    """Kubernetes' CEL escaping of a property name (``a-b`` → ``a__dash__b``); None when inaccessible."""
    if name in _CEL_RESERVED:
        return f"__{name}__"
    if not re.fullmatch(r"[A-Za-z_./-][A-Za-z0-9_./-]*", name):
        return None
    escaped = name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__")
    return escaped.replace("/", "__slash__")


def unescape_property(name: str) -> str:
    """The inverse of :func:`escape_property`."""
    match = re.fullmatch(r"__([a-z]+)__", name)
    if match and match.group(1) in _CEL_RESERVED:
        return match.group(1)
    parts = re.split(r"(__underscores__|__dot__|__dash__|__slash__)", name)
    table = {"__underscores__": "__", "__dot__": ".", "__dash__": "-", "__slash__": "/"}
    return "".join(table.get(p, p) for p in parts)


@lru_cache(maxsize=8192)
def _compile_text(text: str) -> tuple[Any, dict[str, list[str]]] | str:
    """The program and its references, or the compiler's error text (cached by expression text)."""
    import cel as celengine  # here, not at the top: loading the engine costs ~0.1 s at start

    try:
        program = celengine.compile(text)
    except ValueError as exc:
        message = str(exc)
        marker = message.find("ERROR:")
        return message[marker:] if marker >= 0 else message
    return program, program.references()


def _snippet(text: str, column: int) -> str:
    line = text.splitlines()[0] if text else ""
    return f"\n | {line}\n | {'.' * max(column - 1, 0)}^"


def _static_error(text: str, refs: dict[str, list[str]], schema: Schema, *, is_root: bool) -> str | None:
    macro_vars: set[str] = set()
    for match in _MACRO.finditer(text):
        macro_vars.update(v for v in match.groups()[1:] if v)
    for name in refs["functions"]:
        if name[0] in "_@!-" or name in _KNOWN_FUNCTIONS:
            continue
        col = text.find(name) + 1
        return f"ERROR: <input>:1:{col}: undeclared reference to '{name}' (in container ''){_snippet(text, col)}"
    for name in refs["variables"]:
        if name in ("self", "oldSelf") or name in macro_vars or name in _TYPE_NAMES:
            continue
        col = text.find(name) + 1
        return f"ERROR: <input>:1:{col}: undeclared reference to '{name}' (in container ''){_snippet(text, col)}"
    for match in _SELF_CHAIN.finditer(text):
        node: Schema | None = schema
        position = match.start(2)
        for step in match.group(2).split(".")[1:]:
            if node is _ROOT_METADATA:
                if step not in ("name", "generateName"):
                    col = position + 1
                    return f"ERROR: <input>:1:{col}: undefined field '{step}'{_snippet(text, col)}"
                break
            if is_root and node is schema and step == "metadata":
                node = _ROOT_METADATA
                position += len(step) + 1
                continue
            if (
                node is None
                or node.get("x-kubernetes-preserve-unknown-fields")
                or node.get("x-kubernetes-int-or-string")
            ):
                break
            props: dict[str, Schema] = node.get("properties") or {}
            additional = node.get("additionalProperties")
            unescaped = unescape_property(step)
            if unescaped in props:
                node = props[unescaped]
            elif isinstance(additional, dict) or additional is True:
                node = additional if isinstance(additional, dict) else None
            elif node.get("type") == "object" or props:
                col = position + 1
                return f"ERROR: <input>:1:{col}: undefined field '{step}'{_snippet(text, col)}"
            else:
                break
            position += len(step) + 1
    return None


def max_elements(schema: Schema | None) -> int:
    """The most elements a list or map may hold (its bound, or what fits in a request)."""
    if schema is None:
        return _UNBOUNDED_ELEMENTS
    bound = schema.get("maxItems", schema.get("maxProperties"))
    return int(bound) if bound is not None else _UNBOUNDED_ELEMENTS


def max_length(schema: Schema | None) -> int:
    """The longest a string may be (its ``maxLength``, or the request limit)."""
    if schema is None or schema.get("maxLength") is None:
        return MAX_REQUEST_SIZE_BYTES
    return int(schema["maxLength"])


def _resolve(schema: Schema, chain: str) -> Schema | None:
    node: Schema | None = schema
    for step in [s for s in chain.split(".") if s]:
        if node is None:
            return None
        props: dict[str, Schema] = node.get("properties") or {}
        extra = node.get("additionalProperties")
        node = props.get(unescape_property(step)) or (extra if isinstance(extra, dict) else None)
    return node


def _element(schema: Schema | None) -> Schema | None:
    if schema is None:
        return None
    items = schema.get("items")
    if isinstance(items, dict):
        return items
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _receiver_bound(receiver: str, schema: Schema, element_bounds: dict[str, int]) -> int:
    """The length bound of the string a scanning call is made on (0 when the schema does not say)."""
    receiver = receiver.rstrip().rstrip(".")
    chain = re.search(r"([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)$", receiver)
    if chain is None and receiver.endswith(")"):
        inner = list(_SELF_CHAIN.finditer(receiver[-200:]))
        chain = inner[-1] if inner else None
    if chain is None:
        return 0
    head, rest = chain.group(1), chain.group(2)
    if head == "self":
        target = _resolve(schema, rest)
        return max_length(target) if target is not None and target.get("type") == "string" else 0
    return element_bounds.get(head, 0) if not rest else 0


def _literal_size(receiver: str) -> int | None:
    """The element count of a list literal ending ``receiver`` (``[1, 2, 3]``), else None."""
    receiver = receiver.rstrip()
    if not receiver.endswith("]"):
        return None
    depth = 0
    for i in range(len(receiver) - 1, -1, -1):
        depth += {"]": 1, "[": -1}.get(receiver[i], 0)
        if depth == 0:
            before = receiver[:i].rstrip()
            if before and (before[-1].isalnum() or before[-1] in "_)]"):
                return None  # an index expression, not a literal
            body = receiver[i + 1 : -1].strip()
            return body.count(",") + 1 if body else 0
    return None


def estimate_cost(text: str, ops: int, schema: Schema) -> int:
    """The approximate worst-case cost of one evaluation of ``text`` at ``schema`` (see module doc)."""
    cost = float(ops + 1)
    element_bounds: dict[str, int] = {}
    variables: dict[str, Schema | None] = {"self": schema}
    previous_bound: int | None = None
    for match in _MACRO.finditer(text):
        receiver = text[: match.start()]
        literal = _literal_size(receiver)
        if literal is not None:
            cost *= max(literal, 1)
            previous_bound = literal
            continue
        chains = list(re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)", receiver[-200:]))
        chains = [c for c in chains if c.group(1) in variables]
        base = variables.get(chains[-1].group(1)) if chains else None
        target = _resolve(base, chains[-1].group(2)) if chains and base is not None else None
        if target is None and previous_bound is not None and receiver.rstrip().endswith(")"):
            bound = previous_bound  # a chained macro (list.map(...).filter(...)) over the same elements
        else:
            bound = max(max_elements(target), 1)
        cost *= bound
        previous_bound = bound
        element = _element(target)
        variables[match.group(2)] = element
        if element is not None and element.get("type") == "string":
            element_bounds[match.group(2)] = max_length(element)
    string_bound = 0
    for call in _STRING_SCAN.finditer(text):
        string_bound = max(string_bound, _receiver_bound(text[: call.start()], schema, element_bounds))
    if string_bound:
        cost *= max(1.0, 0.1 * string_bound)
    return int(min(cost, 2**63))


def cost_error_message(name: str, cost: int, limit: int) -> str:
    """Kubernetes' ``getCostErrorMessage`` wording."""
    factor = cost / limit
    if factor > 100.0:
        text = "more than 100x"
    elif factor < 1.5:
        text = f"{factor:f}x"
    else:
        text = f"{factor:.1f}x"
    return (
        f"{name} exceeds budget by factor of {text} (try simplifying the rule, or adding maxItems, "
        "maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )


def _rule_value(rule: dict[str, Any]) -> str:
    """A rule as cel-go's ``%v`` of ``apiextensions.ValidationRule`` shows it in errors."""
    reason = rule.get("reason")
    optional = rule.get("optionalOldSelf")
    return (
        f"apiextensions.ValidationRule{{Rule:{json.dumps(rule.get('rule', ''))}, "
        f"Message:{json.dumps(rule.get('message', ''))}, "
        f"MessageExpression:{json.dumps(rule.get('messageExpression', ''))}, "
        f"Reason:{'(*apiextensions.FieldValueErrorReason)(nil)' if reason is None else json.dumps(reason)}, "
        f"FieldPath:{json.dumps(rule.get('fieldPath', ''))}, "
        f"OptionalOldSelf:{'(*bool)(nil)' if optional is None else str(bool(optional)).lower()}}}"
    )


def compile_rules(
    schema: Schema, path: str, *, cardinality: int, uncorrelatable: str | None, is_root: bool = False
) -> CompileResult:
    """Compile the ``x-kubernetes-validations`` of one schema node (at ``path``)."""
    result = CompileResult()
    for i, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        rule_path = field.index(field.child(path, "x-kubernetes-validations"), i)
        text = str(rule.get("rule", "")).strip()
        compiled = _compile_text(text)
        if isinstance(compiled, str):
            result.causes.append(
                StatusCause(
                    field.child(rule_path, "rule"),
                    f"Invalid value: {_rule_value(rule)}: compilation failed: {compiled}",
                )
            )
            continue
        program, refs = compiled
        static = _static_error(text, refs, schema, is_root=is_root)
        if static is not None:
            result.causes.append(
                StatusCause(
                    field.child(rule_path, "rule"), f"Invalid value: {_rule_value(rule)}: compilation failed: {static}"
                )
            )
            continue
        message_program = None
        expr = str(rule.get("messageExpression") or "").strip()
        if expr:
            compiled_message = _compile_text(expr)
            if isinstance(compiled_message, str):
                result.causes.append(
                    StatusCause(
                        field.child(rule_path, "messageExpression"),
                        f"Invalid value: {_rule_value(rule)}: messageExpression compilation failed: {compiled_message}",
                    )
                )
                continue
            message_program = compiled_message[0]
        uses_old_self = "oldSelf" in refs["variables"]
        if uses_old_self and uncorrelatable is not None:
            result.causes.append(
                field.invalid(
                    field.child(rule_path, "rule"),
                    text,
                    f"oldSelf cannot be used on the uncorrelatable portion of the schema within {uncorrelatable}",
                )
            )
            continue
        if not uses_old_self and rule.get("optionalOldSelf") is not None:
            result.causes.append(
                field.invalid(
                    field.child(rule_path, "optionalOldSelf"),
                    bool(rule["optionalOldSelf"]),
                    "may not be set if oldSelf is not used in rule",
                )
            )
            continue
        ops = len(refs["functions"])
        cost = estimate_cost(text, ops, schema) * max(cardinality, 1)
        result.costs.append((field.child(rule_path, "rule"), cost))
        if cost > STATIC_ESTIMATED_COST_LIMIT:
            result.causes.append(
                field.forbidden(
                    field.child(rule_path, "rule"),
                    cost_error_message("estimated rule cost", cost, STATIC_ESTIMATED_COST_LIMIT),
                )
            )
            continue
        result.rules.append(
            CompiledRule(
                rule=rule,
                program=program,
                message_program=message_program,
                uses_old_self=uses_old_self,
                optional_old_self=bool(rule.get("optionalOldSelf")),
                ops=ops,
                macros=len(_MACRO.findall(text)),
                scans_strings=bool(_STRING_SCAN.search(text)),
            )
        )
    return result


def library_context(variables: dict[str, Any]) -> Any:
    """An evaluation context with ``variables`` and every extension function."""
    import cel as celengine  # (imported late, see _compile_text)

    return celengine.Context(variables=variables, functions=_LIBRARY)
