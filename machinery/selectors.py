"""Label selectors, as Kubernetes parses, prints and matches them (``k8s.io/apimachinery/pkg/labels``).

The apiserver filters list/watch results with them (``?labelSelector=``), controllers match pods
to their owners with :func:`from_label_selector`, and the CLI passes ``-l`` strings through.
Everything here is pure.

* string syntax: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
  ``a>1``, ``a<1``, joined by commas; keys are qualified names (``example.com/app``);
* ``str()`` gives the canonical form: requirements sorted by key, set values sorted;
* from a ``metav1.LabelSelector`` dict: ``{}`` selects everything, ``None`` selects nothing
  (Kubernetes' ``LabelSelectorAsSelector``: a controller with no selector owns no pods).

Parse errors raise :class:`~machinery.errors.BadRequestError` worded as Kubernetes words them.
Field selectors (``?fieldSelector=``) live in :mod:`machinery.fieldselector`.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from machinery.errors import BadRequestError

# ---------------------------------------------------------------------------------------------
# label key / value syntax


_NAME_RE: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE: Final = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_NAME_MSG: Final = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_VALUE_MSG: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def _parse_error(detail: str) -> BadRequestError:
    return BadRequestError(f"unable to parse requirement: {detail}")


def validate_label_key(key: str) -> str | None:
    """Why ``key`` is not a valid qualified label key, or None when it is."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.match(prefix)):
        return ("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character")
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _NAME_RE.match(name):
        return _NAME_MSG
    return None


def validate_label_value(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None when it is."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if value and not _NAME_RE.match(value):
        return _VALUE_MSG
    return None


# ---------------------------------------------------------------------------------------------
# label selector model


class Operator(Enum):
    """A requirement's operator; the value is how ``str()`` prints it."""

    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_SET_OPS: Final = frozenset({Operator.IN, Operator.NOT_IN})
_EXISTENCE_OPS: Final = frozenset({Operator.EXISTS, Operator.DOES_NOT_EXIST})


@dataclass(frozen=True, order=True)
class Requirement:
    """One ``key op values`` term; ``values`` is sorted and de-duplicated."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def build(cls, key: str, operator: Operator, values: Iterable[str] = ()) -> Requirement:
        """Validate like Kubernetes' ``NewRequirement`` and return the requirement."""
        problem = validate_label_key(key)
        if problem:
            raise _parse_error(f'key: Invalid value: "{key}": {problem}')
        vals = tuple(sorted(set(values)))
        if operator in _SET_OPS and not vals:
            raise _parse_error(
                "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty")
        if operator in _EXISTENCE_OPS and vals:
            raise _parse_error(f"values: Invalid value: {list(vals)}: "
                               "values set must be empty for exists and does not exist")
        if operator not in _SET_OPS and operator not in _EXISTENCE_OPS and len(vals) != 1:
            raise _parse_error(f"values: Invalid value: {list(vals)}: exact-match compatibility requires one "
                               "single value")
        if operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
            if not re.fullmatch(r"[+-]?[0-9]+", vals[0]):
                raise _parse_error(f"values[0]: Invalid value: \"{vals[0]}\": for 'Gt', 'Lt' operators, the "
                                   "value must be an integer")
        else:
            for i, value in enumerate(vals):
                problem = validate_label_value(value)
                if problem:
                    raise _parse_error(f'values[{i}][{key}]: Invalid value: "{value}": {problem}')
        return cls(key, operator, vals)

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        op = self.operator
        if op is Operator.EXISTS:
            return present
        if op is Operator.DOES_NOT_EXIST:
            return not present
        if op in (Operator.NOT_EQUALS, Operator.NOT_IN):
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        if op in (Operator.GREATER_THAN, Operator.LESS_THAN):
            try:
                actual = int(labels[self.key])
            except ValueError:
                return False
            bound = int(self.values[0])
            return actual > bound if op is Operator.GREATER_THAN else actual < bound
        return labels[self.key] in self.values

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in _SET_OPS:
            return f"{self.key} {op.value} ({','.join(self.values)})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements. ``nothing=True`` is the selector that matches no object."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with ``labels`` (None meaning no labels) is selected."""
        if self.nothing:
            return False
        actual: Mapping[str, str] = labels or {}
        return all(r.matches(actual) for r in self.requirements)

    def empty(self) -> bool:
        """True for the selector that matches everything."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING: Final = LabelSelector()
NOTHING: Final = LabelSelector(nothing=True)


def _selector(requirements: Iterable[Requirement]) -> LabelSelector:
    # Kubernetes sorts by key only (stably), keeping e.g. "a!=x,a in (y)" in written order.
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


# ---------------------------------------------------------------------------------------------
# label selector string parser

_SPECIAL: Final = frozenset("=!(),<>")
_OPERATOR_TOKENS: Final = ("==", "!=", "=", "!", "<", ">", "(", ")", ",")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _SPECIAL:
            token = next(t for t in _OPERATOR_TOKENS if text.startswith(t, i))
            tokens.append(token)
            i += len(token)
            continue
        start = i
        while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
            i += 1
        tokens.append(text[start:i])
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    @staticmethod
    def shown(token: str | None) -> str:
        """A token as Kubernetes' messages show it: the end of the string is ''."""
        return "" if token is None else token

    @staticmethod
    def is_identifier(token: str | None) -> bool:
        return token is not None and token not in _OPERATOR_TOKENS

    def parse(self) -> list[Requirement]:
        """Kubernetes' grammar: an empty term (``a=b,``, ``,a=b``, ``a,,b``) is an error, and only
        errors inside a requirement carry the ``unable to parse requirement:`` prefix."""
        requirements: list[Requirement] = []
        while True:
            token = self.peek()
            if token is None:
                return requirements
            if not self.is_identifier(token) and token != "!":
                raise BadRequestError(f"found '{token}', expected: !, identifier, or 'end of string'")
            requirements.append(self.requirement())
            token = self.take()
            if token is None:
                return requirements
            if token != ",":
                raise BadRequestError(f"found '{token}', expected: ',' or 'end of string'")
            following = self.peek()
            if not self.is_identifier(following) and following != "!":
                # Kubernetes' lexer shows the end of the string as ''.
                raise BadRequestError(f"found '{following or ''}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        negated = self.peek() == "!"
        if negated:
            self.take()
        key = self.take()
        if not self.is_identifier(key):
            raise _parse_error(f"found '{self.shown(key)}', expected: identifier"
                               + (" after '!'" if negated else ""))
        assert key is not None
        following = self.peek()
        if following in (None, ","):
            return Requirement.build(key, Operator.DOES_NOT_EXIST if negated else Operator.EXISTS)
        if negated:  # "!a=b": Kubernetes takes "!a" and then fails on what follows it
            raise BadRequestError(f"found '{following}', expected: ',' or 'end of string'")
        op_token = self.take()
        simple = {"=": Operator.EQUALS, "==": Operator.DOUBLE_EQUALS, "!=": Operator.NOT_EQUALS,
                  ">": Operator.GREATER_THAN, "<": Operator.LESS_THAN}
        if op_token in simple:
            value = self.peek()
            if self.is_identifier(value):
                self.take()
                assert value is not None
                return Requirement.build(key, simple[op_token], [value])
            if value in (None, ","):  # "a=" selects the empty value
                return Requirement.build(key, simple[op_token], [""])
            raise _parse_error(f"found '{value}', expected: identifier")
        if op_token in ("in", "notin"):
            return Requirement.build(key, Operator.IN if op_token == "in" else Operator.NOT_IN,
                                     self.value_set())
        raise _parse_error(f"found '{self.shown(op_token)}', expected: in, notin, =, ==, !=, gt, lt")

    def value_set(self) -> list[str]:
        token = self.take()
        if token != "(":
            raise _parse_error(f"found '{self.shown(token)}', expected: '('")
        values: list[str] = []
        expect_value = True
        while True:
            token = self.take()
            if token == ")":
                if expect_value and values:
                    values.append("")  # "(a,)" includes the empty value, as Kubernetes does
                return values
            if token == ",":
                if expect_value:
                    values.append("")
                expect_value = True
                continue
            if self.is_identifier(token) and expect_value:
                assert token is not None
                values.append(token)
                expect_value = False
                continue
            raise _parse_error(f"found '{self.shown(token)}', expected: ',', ')' or identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the string form (``?labelSelector=``, ``kubectl -l``). Empty selects everything."""
    if not text or not text.strip():
        return EVERYTHING
    return _selector(_Parser(text).parse())


_OPERATORS_BY_NAME: Final = {
    "In": Operator.IN, "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS, "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def from_label_selector(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Build from a ``metav1.LabelSelector`` dict: ``None`` -> nothing, ``{}`` -> everything."""
    if selector is None:
        return NOTHING
    requirements: list[Requirement] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append(Requirement.build(key, Operator.EQUALS, [value]))
    for expr in selector.get("matchExpressions") or []:
        op = _OPERATORS_BY_NAME.get(str(expr.get("operator")))
        if op is None:
            raise BadRequestError(f'"{expr.get("operator")}" is not a valid label selector operator')
        requirements.append(Requirement.build(str(expr.get("key", "")), op, expr.get("values") or []))
    return _selector(requirements)


def from_match_labels(labels: Mapping[str, str]) -> LabelSelector:
    """The selector for ``key=value`` pairs (``SelectorFromSet``); an empty mapping selects everything."""
    return _selector(Requirement.build(k, Operator.EQUALS, [v]) for k, v in labels.items())
