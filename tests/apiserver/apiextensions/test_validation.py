"""Validating custom objects: each schema keyword, worded as kube-apiserver reports it."""

from __future__ import annotations

from typing import Any

import pytest

from apiserver.apiextensions.validation import validate_value
from machinery.errors import StatusCause, invalid


def _messages(schema: dict[str, Any], value: Any) -> list[str]:
    return [
        f"{c.field}: {c.message}"
        for c in validate_value({"type": "object", "properties": {"spec": schema}}, {"spec": value})
    ]


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        pytest.param(
            {"type": "integer"},
            "three",
            'spec: Invalid value: "string": spec in body must be of type integer: "string"',
            id="type",
        ),
        pytest.param(
            {"type": "integer"},
            1.5,
            'spec: Invalid value: "number": spec in body must be of type integer: "number"',
            id="integer-vs-number",
        ),
        pytest.param(
            {"type": "string"},
            None,
            'spec: Invalid value: "null": spec in body must be of type string: "null"',
            id="null-not-nullable",
        ),
        pytest.param(
            {"x-kubernetes-int-or-string": True},
            True,
            'spec: Invalid value: "boolean": spec in body must be of type integer,string: "boolean"',
            id="int-or-string",
        ),
        pytest.param(
            {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}},
            {},
            "spec.a: Required value",
            id="required",
        ),
        pytest.param(
            {"type": "string", "enum": ["a", "b"]},
            "c",
            'spec: Unsupported value: "c": supported values: "a", "b"',
            id="enum",
        ),
        pytest.param(
            {"type": "integer", "enum": [1, 2]},
            3,
            'spec: Unsupported value: 3: supported values: "1", "2"',
            id="enum-int",
        ),
        pytest.param(
            {"type": "string", "pattern": "^[a-z]+$"},
            "A1",
            "spec: Invalid value: \"A1\": spec in body should match '^[a-z]+$'",
            id="pattern",
        ),
        pytest.param(
            {"type": "integer", "minimum": 1},
            0,
            "spec: Invalid value: 0: spec in body should be greater than or equal to 1",
            id="minimum",
        ),
        pytest.param(
            {"type": "integer", "minimum": 1, "exclusiveMinimum": True},
            1,
            "spec: Invalid value: 1: spec in body should be greater than 1",
            id="exclusive-minimum",
        ),
        pytest.param(
            {"type": "number", "maximum": 2.5},
            3,
            "spec: Invalid value: 3: spec in body should be less than or equal to 2.5",
            id="maximum",
        ),
        pytest.param(
            {"type": "integer", "maximum": 10, "exclusiveMaximum": True},
            10,
            "spec: Invalid value: 10: spec in body should be less than 10",
            id="exclusive-maximum",
        ),
        pytest.param(
            {"type": "integer", "multipleOf": 5},
            7,
            "spec: Invalid value: 7: spec in body should be a multiple of 5",
            id="multipleOf",
        ),
        pytest.param(
            {"type": "string", "minLength": 2},
            "a",
            'spec: Invalid value: "a": spec in body should be at least 2 chars long',
            id="minLength",
        ),
        pytest.param(
            {"type": "string", "maxLength": 3}, "abcd", "spec: Too long: may not be longer than 3", id="maxLength"
        ),
        pytest.param(
            {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            [],
            "spec: Invalid value: []: spec in body should have at least 1 items",
            id="minItems",
        ),
        pytest.param(
            {"type": "array", "items": {"type": "integer"}, "maxItems": 1},
            [1, 2],
            "spec: Too many: 2: must have at most 1 items",
            id="maxItems",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1},
            {"a": "", "b": ""},
            "spec: Too many: 2: must have at most 1 items",
            id="maxProperties",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
            {},
            "spec: Invalid value: {}: spec in body should have at least 1 properties",
            id="minProperties",
        ),
        pytest.param(
            {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
            [1, 1],
            "spec: Invalid value: [1,1]: spec in body shouldn't contain duplicates",
            id="uniqueItems",
        ),
        pytest.param(
            {"type": "array", "items": {"type": "integer", "minimum": 0}},
            [1, -1],
            "spec[1]: Invalid value: -1: spec[1] in body should be greater than or equal to 0",
            id="items-path",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": {"type": "integer"}},
            {"x": "y"},
            'spec.x: Invalid value: "string": spec.x in body must be of type integer: "string"',
            id="additionalProperties",
        ),
        pytest.param(
            {"type": "string", "format": "date-time"},
            "yesterday",
            'spec: Invalid value: "yesterday": spec in body must be of type date-time: "yesterday"',
            id="format-date-time",
        ),
        pytest.param(
            {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            ["a", "b", "a"],
            'spec[2]: Duplicate value: "a"',
            id="list-set",
        ),
        pytest.param(
            {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}},
            },
            [{"name": "a", "v": 1}, {"name": "a", "v": 2}],
            'spec[1]: Duplicate value: {"name":"a"}',
            id="list-map",
        ),
        pytest.param(
            {"type": "string", "anyOf": [{"enum": ["a"]}, {"enum": ["b"]}]},
            "c",
            'spec: Invalid value: "": spec in body must validate at least one schema (anyOf)',
            id="anyOf",
        ),
        pytest.param(
            {"type": "string", "oneOf": [{"minLength": 1}, {"maxLength": 5}]},
            "abc",
            'spec: Invalid value: "": spec in body must validate one and only one schema (oneOf)',
            id="oneOf",
        ),
        pytest.param(
            {"type": "string", "not": {"enum": ["x"]}},
            "x",
            'spec: Invalid value: "": spec in body must not validate the schema (not)',
            id="not",
        ),
        pytest.param(
            {"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True},
            {"metadata": {"name": "Bad_Name"}},
            "spec.apiVersion: Required value: must not be empty",
            id="embedded-apiVersion",
        ),
    ],
)
def test_invalid_value_is_reported_with_kubernetes_wording(schema: dict[str, Any], value: Any, expected: str) -> None:
    assert expected in _messages(schema, value)


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        pytest.param("date-time", "2024-02-29T10:00:00Z", "2024-02-30T10:00:00Z", id="date-time"),
        pytest.param("date", "2024-01-31", "2024-13-01", id="date"),
        pytest.param("uri", "https://example.com/a?b", "not a uri", id="uri"),
        pytest.param("email", "ops@example.com", "ops.example.com", id="email"),
        pytest.param("hostname", "api.example.com", "-bad-.com", id="hostname"),
        pytest.param("ipv4", "10.0.0.1", "10.0.0.256", id="ipv4"),
        pytest.param("ipv6", "fd00::1", "10.0.0.1", id="ipv6"),
        pytest.param("cidr", "10.0.0.0/8", "10.0.0.0", id="cidr"),
        pytest.param("mac", "02:42:ac:11:00:02", "02:42:ac:11:00", id="mac"),
        pytest.param("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567", id="uuid"),
        pytest.param("byte", "aGVsbG8=", "not base64!", id="byte"),
        pytest.param("duration", "1h30m", "soon", id="duration"),
    ],
)
def test_format(fmt: str, good: str, bad: str) -> None:
    schema = {"type": "string", "format": fmt}
    assert _messages(schema, good) == []
    assert _messages(schema, bad) == [f'spec: Invalid value: "{bad}": spec in body must be of type {fmt}: "{bad}"']


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        pytest.param({"type": "string", "nullable": True}, None, id="nullable"),
        pytest.param({"type": "number"}, 3, id="integer-is-a-number"),
        pytest.param({"type": "integer"}, 3.0, id="integral-float-is-an-integer"),
        pytest.param({"x-kubernetes-int-or-string": True}, "50%", id="int-or-string-string"),
        pytest.param({"type": "integer", "format": "int32"}, 2**40, id="numeric-formats-not-checked"),
        pytest.param({"type": "string", "format": "made-up"}, "anything", id="unknown-format"),
        pytest.param({"type": "number", "multipleOf": 0.1}, 0.3, id="multipleOf-decimal"),
        pytest.param({"x-kubernetes-preserve-unknown-fields": True}, {"any": [1, "x"]}, id="preserve-untyped"),
    ],
)
def test_valid_value_passes(schema: dict[str, Any], value: Any) -> None:
    assert _messages(schema, value) == []


def test_causes_render_as_kubernetes_invalid_status() -> None:
    causes = validate_value(
        {"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}},
        {"spec": {"replicas": "two"}},
    )
    err = invalid("Widget", "w1", causes, group="example.com")
    assert err.message == (
        'Widget.example.com "w1" is invalid: spec.replicas: Invalid value: "string": '
        'spec.replicas in body must be of type integer: "string"'
    )
    assert causes == [StatusCause("spec.replicas", causes[0].message, "FieldValueTypeInvalid")]
