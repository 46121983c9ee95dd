"""``x-kubernetes-validations``: rules, transition rules, messages, reasons, the extension library, cost."""

from __future__ import annotations

from typing import Any

import pytest

from apiserver.apiextensions import SchemaError, compile_schema
from machinery.errors import StatusCause

ROOT = "spec.validation.openAPIV3Schema"


def _schema(spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": spec}}


def _with_rule(spec_props: dict[str, Any], **rule: Any) -> dict[str, Any]:
    return _schema({"type": "object", "properties": spec_props, "x-kubernetes-validations": [rule]})


PROPS = {
    "min": {"type": "integer"},
    "max": {"type": "integer"},
    "name": {"type": "string", "maxLength": 64},
    "tags": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 32}},
}


@pytest.mark.parametrize(
    ("rule", "spec", "expected"),
    [
        pytest.param(
            {"rule": "self.min <= self.max", "message": "min must not exceed max"},
            {"min": 3, "max": 1},
            StatusCause("spec", 'Invalid value: "object": min must not exceed max'),
            id="message",
        ),
        pytest.param(
            {"rule": "self.min <= self.max"},
            {"min": 3, "max": 1},
            StatusCause("spec", 'Invalid value: "object": failed rule: self.min <= self.max'),
            id="default-message",
        ),
        pytest.param(
            {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' > max'"},
            {"min": 3, "max": 1},
            StatusCause("spec", 'Invalid value: "object": min 3 > max'),
            id="messageExpression",
        ),
        pytest.param(
            {
                "rule": "has(self.name)",
                "message": "name is required",
                "reason": "FieldValueRequired",
                "fieldPath": ".name",
            },
            {},
            StatusCause("spec.name", "Required value: name is required", "FieldValueRequired"),
            id="reason-required-fieldPath",
        ),
        pytest.param(
            {"rule": "!has(self.tags)", "message": "no tags", "reason": "FieldValueForbidden"},
            {"tags": []},
            StatusCause("spec", "Forbidden: no tags", "FieldValueForbidden"),
            id="reason-forbidden",
        ),
        pytest.param(
            {
                "rule": "self.tags.all(t, self.tags.exists_one(u, u == t))",
                "reason": "FieldValueDuplicate",
                "fieldPath": ".tags",
            },
            {"tags": ["a", "a"]},
            StatusCause("spec.tags", 'Duplicate value: "object"', "FieldValueDuplicate"),
            id="reason-duplicate",
        ),
        pytest.param(
            {"rule": "self.name.size() > 10"},
            {},
            StatusCause("spec", 'Invalid value: "object": no such key: name evaluating rule: self.name.size() > 10'),
            id="evaluation-error",
        ),
    ],
)
def test_failing_rule_is_reported(rule: dict[str, Any], spec: dict[str, Any], expected: StatusCause) -> None:
    compiled = compile_schema(_with_rule(PROPS, **rule))
    assert compiled.validate({"spec": spec}) == [expected]


def test_rule_on_scalar_and_list_items_reports_their_paths() -> None:
    schema = _schema(
        {
            "type": "object",
            "properties": {
                "port": {
                    "type": "integer",
                    "x-kubernetes-validations": [
                        {"rule": "0 < self && self <= 65535", "message": "port must be between 1-65535"}
                    ],
                },
                "hosts": {
                    "type": "array",
                    "maxItems": 8,
                    "items": {
                        "type": "string",
                        "maxLength": 64,
                        "x-kubernetes-validations": [{"rule": "self != '*'", "message": "hostname cannot be wildcard"}],
                    },
                },
            },
        }
    )
    compiled = compile_schema(schema)
    assert compiled.validate({"spec": {"port": 0, "hosts": ["a", "*"]}}) == [
        StatusCause("spec.port", 'Invalid value: "integer": port must be between 1-65535'),
        StatusCause("spec.hosts[1]", 'Invalid value: "string": hostname cannot be wildcard'),
    ]
    assert compiled.validate({"spec": {"port": 8080, "hosts": ["a"]}}) == []


IMMUTABLE = _schema(
    {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "name is immutable"}],
            },
            "count": {
                "type": "integer",
                "x-kubernetes-validations": [
                    {
                        "rule": "!oldSelf.hasValue() || self >= oldSelf.value()",
                        "message": "count may only grow",
                        "optionalOldSelf": True,
                    }
                ],
            },
        },
    }
)


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        pytest.param({"name": "a", "count": 1}, None, [], id="create-skips-transition-rule"),
        pytest.param(
            {"name": "b"},
            {"name": "a"},
            [StatusCause("spec.name", 'Invalid value: "string": name is immutable')],
            id="update-changes",
        ),
        pytest.param({"name": "a"}, {"name": "a"}, [], id="update-same"),
        pytest.param({"name": "a"}, {}, [], id="field-added-on-update-has-no-oldSelf"),
        pytest.param(
            {"count": 1},
            {"count": 2},
            [StatusCause("spec.count", 'Invalid value: "integer": count may only grow')],
            id="optional-old-self",
        ),
        pytest.param({"count": 3}, {"count": 2}, [], id="optional-old-self-ok"),
    ],
)
def test_transition_rules(new: dict[str, Any], old: dict[str, Any] | None, expected: list[StatusCause]) -> None:
    compiled = compile_schema(IMMUTABLE)
    assert compiled.validate({"spec": new}, {"spec": old} if old is not None else None) == expected


def test_transition_rule_in_list_map_items_correlates_by_key() -> None:
    schema = _schema(
        {
            "type": "object",
            "properties": {
                "ports": {
                    "type": "array",
                    "maxItems": 10,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "maxLength": 16},
                            "port": {
                                "type": "integer",
                                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}],
                            },
                        },
                    },
                }
            },
        }
    )
    compiled = compile_schema(schema)
    old = {"spec": {"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}}
    new = {"spec": {"ports": [{"name": "b", "port": 2}, {"name": "a", "port": 5}]}}
    assert compiled.validate(new, old) == [StatusCause("spec.ports[1].port", 'Invalid value: "integer": immutable')]


@pytest.mark.parametrize(
    ("rule", "self_value"),
    [
        pytest.param("self.substring(7, 8) == '/'", "unix:///run/x", id="substring"),
        pytest.param("self.lowerAscii() == 'abc' && self.upperAscii() == 'ABC'", "aBc", id="case"),
        pytest.param("self.replace('-', '_') == 'a_b' && self.split('-') == ['a', 'b']", "a-b", id="replace-split"),
        pytest.param("['a', 'b'].join('-') == self", "a-b", id="join"),
        pytest.param(
            "self.trim() == 'x' && '  x '.indexOf('x') == 2 && 'xax'.lastIndexOf('x') == 2", " x ", id="trim-index"
        ),
        pytest.param("self.charAt(1) == 'b'", "abc", id="charAt"),
        pytest.param("'%s has %d items'.format([self, 2]) == 'list has 2 items'", "list", id="format"),
        pytest.param(
            "self.matches('^[a-z]+$') && !self.contains('*') && self.startsWith('ab') && self.endsWith('c')",
            "abc",
            id="std-strings",
        ),
        pytest.param("self.find('[0-9]+') == '42' && self.findAll('[0-9]') == ['4', '2']", "x42", id="regex-find"),
        pytest.param(
            "[1, 2, 3].isSorted() && [1, 2].sum() == 3 && [3, 1].min() == 1 && [3, 1].max() == 3"
            " && [1, 2].indexOf(2) == 1",
            "",
            id="lists",
        ),
        pytest.param(
            "isURL(self) && url(self).getScheme() == 'https' && url(self).getHost() == 'example.com:8443'"
            " && url(self).getHostname() == 'example.com' && url(self).getPort() == '8443'"
            " && url(self).getEscapedPath() == '/a/b' && url(self).getQuery()['q'] == ['1']",
            "https://example.com:8443/a/b?q=1",
            id="url",
        ),
        pytest.param("!isURL(self)", "not a url", id="not-url"),
        pytest.param(
            "isIP(self) && ip(self).family() == 4 && ip(self).isLoopback() && !isIP('1.2.3')", "127.0.0.1", id="ip"
        ),
        pytest.param(
            "isCIDR(self) && cidr(self).containsIP(ip('10.1.2.3')) && cidr(self).containsIP('10.9.9.9')"
            " && cidr(self).prefixLength() == 8 && cidr(self).containsCIDR('10.1.0.0/16')",
            "10.0.0.0/8",
            id="cidr",
        ),
        pytest.param(
            "isQuantity(self) && quantity(self).isGreaterThan(quantity('1Gi'))"
            " && quantity(self).asInteger() == 2147483648 && quantity('500m').isLessThan(quantity('1'))"
            " && quantity(self).add(quantity('1Gi')).compareTo(quantity('3Gi')) == 0",
            "2Gi",
            id="quantity",
        ),
        pytest.param("duration(self) >= duration('1ms') && duration(self) < duration('1h')", "1.5s", id="duration"),
        pytest.param("timestamp('2024-01-01T00:00:00Z') < timestamp('2025-01-01T00:00:00Z')", "", id="timestamp"),
        pytest.param(
            "int(self) == 80 && double('1.5') == 1.5 && string(1) == '1' && bytes('a').size() == 1 && uint(3) == 3u",
            "80",
            id="conversions",
        ),
        pytest.param(
            "[1, 2, 3].map(x, x * 2).filter(x, x > 2).size() == 2 && [1].exists(x, x == 1)"
            " && [1, 2].exists_one(x, x == 2)",
            "",
            id="macros",
        ),
    ],
)
def test_kubernetes_library_functions(rule: str, self_value: str) -> None:
    schema = _schema({"type": "string", "maxLength": 256, "x-kubernetes-validations": [{"rule": rule}]})
    compiled = compile_schema(schema)
    assert compiled.validate({"spec": self_value}) == []


def test_escaped_property_names_and_metadata_view() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name.startsWith('web')"},
            {"rule": "self.spec.x__dash__y == 1 && self.spec.__namespace__ == 'a'"},
        ],
        "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {"x-y": {"type": "integer"}, "namespace": {"type": "string"}}},
        },
    }
    compiled = compile_schema(schema)
    obj = {"metadata": {"name": "web-1", "labels": {"a": "b"}}, "spec": {"x-y": 1, "namespace": "a"}}
    assert compiled.validate(obj) == []


def test_root_metadata_shows_only_name_and_generate_name() -> None:
    schema = {
        "type": "object",
        "properties": {"metadata": {"type": "object"}},
        "x-kubernetes-validations": [{"rule": "has(self.metadata.labels)"}],
    }
    with pytest.raises(SchemaError) as info:
        compile_schema(schema)
    assert "undefined field 'labels'" in info.value.causes[0].message


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        pytest.param(
            {"rule": "self.min <"},
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].rule",
            "compilation failed: ERROR: <input>:1:11: Syntax error:",
            id="syntax",
        ),
        pytest.param(
            {"rule": "self.nope == 1"},
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].rule",
            "compilation failed: ERROR: <input>:1:5: undefined field 'nope'",
            id="undefined-field",
        ),
        pytest.param(
            {"rule": "frobnicate(self.min)"},
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].rule",
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'frobnicate'",
            id="undeclared-function",
        ),
        pytest.param(
            {"rule": "other.min == 1"},
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].rule",
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'other'",
            id="undeclared-variable",
        ),
        pytest.param(
            {"rule": "true", "messageExpression": "'a' +"},
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].messageExpression",
            "messageExpression compilation failed:",
            id="messageExpression",
        ),
        pytest.param(
            {"rule": "self.min > 0", "optionalOldSelf": True},
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].optionalOldSelf",
            "Invalid value: true: may not be set if oldSelf is not used in rule",
            id="optionalOldSelf-without-oldSelf",
        ),
    ],
)
def test_rule_that_does_not_compile_refuses_the_crd(rule: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(_with_rule(PROPS, **rule))
    assert [c.field for c in info.value.causes] == [field]
    assert message in info.value.causes[0].message


def test_old_self_under_atomic_list_is_refused() -> None:
    schema = _schema(
        {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "maxItems": 5,
                    "items": {
                        "type": "string",
                        "maxLength": 5,
                        "x-kubernetes-validations": [{"rule": "self == oldSelf"}],
                    },
                }
            },
        }
    )
    with pytest.raises(SchemaError) as info:
        compile_schema(schema)
    assert info.value.causes[0].message.endswith(
        "oldSelf cannot be used on the uncorrelatable portion of the schema within "
        f"{ROOT}.properties[spec].properties[items]"
    )


def _nested_unbounded(rule: str) -> dict[str, Any]:
    return _schema(
        {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": {"type": "string"},
                        "x-kubernetes-validations": [{"rule": rule}],
                    },
                }
            },
        }
    )


def test_rule_over_unbounded_lists_exceeds_the_cost_limit() -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(_nested_unbounded("self.all(a, self.all(b, a.matches(b)))"))
    cause = info.value.causes[0]
    assert cause.field == f"{ROOT}.properties[spec].properties[groups].items.x-kubernetes-validations[0].rule"
    assert cause.message == (
        "Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule, or "
        "adding "
        "maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )


def test_bounded_version_of_the_same_rule_is_accepted() -> None:
    schema = _schema(
        {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "maxItems": 4,
                    "items": {
                        "type": "array",
                        "maxItems": 8,
                        "items": {"type": "string", "maxLength": 16},
                        "x-kubernetes-validations": [
                            {"rule": "self.all(a, self.exists_one(b, a == b))", "message": "no duplicates"}
                        ],
                    },
                }
            },
        }
    )
    compiled = compile_schema(schema)
    assert compiled.validate({"spec": {"groups": [["a", "b"], ["c", "c"]]}}) == [
        StatusCause("spec.groups[1]", 'Invalid value: "array": no duplicates')
    ]


def test_runtime_cost_limit_stops_an_expensive_call() -> None:
    schema = _schema(
        {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "maxItems": 1200,
                    "items": {"type": "integer"},
                    "x-kubernetes-validations": [{"rule": "self.all(a, self.all(b, a == b || a != b))"}],
                }
            },
        }
    )
    compiled = compile_schema(schema)
    causes = compiled.validate({"spec": {"items": list(range(1150))}})
    assert len(causes) == 1 and causes[0].field == "spec.items"
    assert (
        "'operation cancelled: actual cost limit exceeded': no further validation rules will be run"
        in causes[0].message
    )
    assert compiled.validate({"spec": {"items": list(range(10))}}) == []
