"""Label selectors: Kubernetes' string syntax, canonical form, matching and errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machinery.errors import BadRequestError
from machinery.selectors import (
    from_label_selector,
    from_match_labels,
    parse_label_selector,
)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        pytest.param("a=b", "a=b", id="equals"),
        pytest.param("a==b", "a==b", id="double-equals"),
        pytest.param("a!=b", "a!=b", id="not-equals"),
        pytest.param("env in (prod, dev)", "env in (dev,prod)", id="in-sorted"),
        pytest.param("env notin (x)", "env notin (x)", id="notin"),
        pytest.param("a", "a", id="exists"),
        pytest.param("!a", "!a", id="does-not-exist"),
        pytest.param(" z = 1 , a ,  !b ", "a,!b,z=1", id="whitespace-and-sorted-by-key"),
        pytest.param("example.com/app=web", "example.com/app=web", id="prefixed-key"),
        pytest.param("a=", "a=", id="empty-value"),
        pytest.param("a in (b,)", "a in (,b)", id="set-with-empty-value"),
        pytest.param("n>3,n<10", "n>3,n<10", id="gt-lt"),
        pytest.param("", "", id="empty"),
    ],
)
def test_parse_canonical(text: str, canonical: str) -> None:
    selector = parse_label_selector(text)
    assert str(selector) == canonical
    assert parse_label_selector(canonical) == selector


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        pytest.param("app=web", {"app": "web"}, True, id="eq-match"),
        pytest.param("app=web", {"app": "db"}, False, id="eq-mismatch"),
        pytest.param("app=web", {}, False, id="eq-missing"),
        pytest.param("app!=web", {}, True, id="neq-missing-matches"),
        pytest.param("app!=web", {"app": "web"}, False, id="neq-same"),
        pytest.param("env in (a,b)", {"env": "b"}, True, id="in-match"),
        pytest.param("env in (a,b)", {}, False, id="in-missing"),
        pytest.param("env notin (a,b)", {}, True, id="notin-missing-matches"),
        pytest.param("env notin (a,b)", {"env": "a"}, False, id="notin-present"),
        pytest.param("env", {"env": ""}, True, id="exists"),
        pytest.param("!env", {"env": ""}, False, id="not-exists"),
        pytest.param("n>3", {"n": "4"}, True, id="gt"),
        pytest.param("n>3", {"n": "x"}, False, id="gt-non-integer"),
        pytest.param("n<3", {"n": "2"}, True, id="lt"),
        pytest.param("a=1,b=2", {"a": "1", "b": "2"}, True, id="conjunction"),
        pytest.param("a=1,b=2", {"a": "1"}, False, id="conjunction-partial"),
        pytest.param("", None, True, id="empty-matches-unlabelled"),
        pytest.param("!a", None, True, id="none-labels"),
    ],
)
def test_matches(text: str, labels: dict[str, str] | None, expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt", id="missing-operator"),
        pytest.param("a in b", "found 'b', expected: '('", id="in-without-paren"),
        pytest.param("a in ()", "values set can't be empty", id="empty-set"),
        pytest.param("a,", "expected: identifier after ','", id="trailing-comma"),
        pytest.param("=b", "found '=', expected: !, identifier, or 'end of string'", id="missing-key"),
        pytest.param("!a=b", "found '=', expected: ',' or 'end of string'", id="negated-with-value"),
        pytest.param("a=b c", "found 'c', expected: ',' or 'end of string'", id="junk"),
        pytest.param("a=-x", 'Invalid value: "-x"', id="bad-value"),
        pytest.param("-a=x", 'key: Invalid value: "-a"', id="bad-key"),
        pytest.param("n>x", "the value must be an integer", id="gt-non-integer"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(BadRequestError) as info:
        parse_label_selector(text)
    # Kubernetes prefixes only the errors found inside one requirement.
    inside = "or 'end of string'" not in fragment and "after ','" not in fragment
    assert info.value.message.startswith("unable to parse requirement: ") is inside
    assert fragment in info.value.message
    assert info.value.code == 400


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param(None, {"a": "b"}, False, id="none-selects-nothing"),
        pytest.param(None, {}, False, id="none-selects-nothing-empty"),
        pytest.param({}, {"a": "b"}, True, id="empty-selects-everything"),
        pytest.param({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True, id="match-labels"),
        pytest.param(
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}],
            },
            {"app": "web", "tier": "be"},
            True,
            id="labels-and-expressions",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]},
            {},
            True,
            id="notin-missing",
        ),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False, id="exists"),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {}, True, id="does-not-exist"
        ),
    ],
)
def test_from_label_selector(selector: dict[str, Any] | None, labels: dict[str, str], expected: bool) -> None:
    assert from_label_selector(selector).matches(labels) is expected


def test_from_label_selector_canonical_string() -> None:
    selector = from_label_selector(
        {
            "matchLabels": {"z": "1", "app": "web"},
            "matchExpressions": [{"key": "m", "operator": "In", "values": ["b", "a"]}],
        }
    )
    assert str(selector) == "app=web,m in (a,b),z=1"
    assert str(from_match_labels({"b": "2", "a": "1"})) == "a=1,b=2"


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        pytest.param(
            {"key": "a", "operator": "Foo"}, '"Foo" is not a valid label selector operator', id="op"
        ),
        pytest.param(
            {"key": "a", "operator": "In", "values": []}, "values set can't be empty", id="in-empty"
        ),
        pytest.param(
            {"key": "a", "operator": "Exists", "values": ["x"]},
            "values set must be empty",
            id="exists-with-values",
        ),
    ],
)
def test_from_label_selector_errors(expr: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment):
        from_label_selector({"matchExpressions": [expr]})


_KEY = st.from_regex(
    r"\A([a-z]{1,5}\.)?[a-z]{1,5}/[a-zA-Z0-9]([a-zA-Z0-9._-]{0,5}[a-zA-Z0-9])?\Z|\A[a-z][a-z0-9]{0,6}\Z"
)
_VALUE = st.from_regex(r"\A([a-zA-Z0-9]([a-zA-Z0-9._-]{0,5}[a-zA-Z0-9])?)?\Z")
# "a in ()" does not parse in Kubernetes either, so a set's lone value is never empty.
_SET_VALUE = st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9._-]{0,5}[a-zA-Z0-9])?\Z")
_REQUIREMENT = st.one_of(
    st.builds(lambda k, v, op: f"{k}{op}{v}", _KEY, _VALUE, st.sampled_from(["=", "==", "!="])),
    st.builds(
        lambda k, vs, op: f"{k} {op} ({','.join(vs)})",
        _KEY,
        st.lists(_SET_VALUE, min_size=1, max_size=3),
        st.sampled_from(["in", "notin"]),
    ),
    st.builds(lambda k, neg: f"{'!' if neg else ''}{k}", _KEY, st.booleans()),
)


@given(st.lists(_REQUIREMENT, max_size=4))
def test_canonical_string_reparses_to_equal_selector(parts: list[str]) -> None:
    selector = parse_label_selector(",".join(parts))
    assert parse_label_selector(str(selector)) == selector


@given(st.lists(_REQUIREMENT, max_size=4), st.dictionaries(_KEY, _VALUE, max_size=4))
def test_canonical_string_matches_like_original(parts: list[str], labels: dict[str, str]) -> None:
    selector = parse_label_selector(",".join(parts))
    assert parse_label_selector(str(selector)).matches(labels) == selector.matches(labels)
