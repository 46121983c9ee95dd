"""Structural-schema checks: each rule refuses with Kubernetes' field path and wording."""

from __future__ import annotations

from typing import Any

import pytest

from apiserver.apiextensions import SchemaError, compile_schema, version_schema_path
from apiserver.apiextensions.structural import check_schema

ROOT = "spec.validation.openAPIV3Schema"


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


@pytest.mark.parametrize(
    ("schema", "field", "message"),
    [
        pytest.param(
            _obj(spec={"properties": {"a": {"type": "string"}}}),
            f"{ROOT}.properties[spec].type",
            "Required value: must not be empty for specified object fields",
            id="field-without-type",
        ),
        pytest.param(
            _obj(spec={"type": "array", "items": {}}),
            f"{ROOT}.properties[spec].items.type",
            "Required value: must not be empty for specified array items",
            id="items-without-type",
        ),
        pytest.param(
            {"properties": {}},
            f"{ROOT}.type",
            "Required value: must not be empty at the root",
            id="root-without-type",
        ),
        pytest.param(
            {"type": "string"}, f"{ROOT}.type", 'Invalid value: "string": must be object at the root', id="root-string"
        ),
        pytest.param(
            _obj(spec={"type": "array"}),
            f"{ROOT}.properties[spec].items",
            "Required value: must be specified",
            id="array-without-items",
        ),
        pytest.param(
            _obj(
                spec={
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "additionalProperties": {"type": "string"},
                }
            ),
            f"{ROOT}.properties[spec].additionalProperties",
            "Forbidden: additionalProperties and properties are mutual exclusive",
            id="properties-and-additionalProperties",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": {"type": "string"}},
            f"{ROOT}.additionalProperties",
            "Forbidden: must not be used at the root",
            id="additionalProperties-at-root",
        ),
        pytest.param(
            _obj(spec={"$ref": "#/definitions/x", "type": "object"}),
            f"{ROOT}.properties[spec].$ref",
            "Forbidden: $ref is not supported",
            id="ref",
        ),
        pytest.param(
            _obj(spec={"type": "object", "definitions": {"x": {"type": "string"}}}),
            f"{ROOT}.properties[spec].definitions",
            "Forbidden: definitions is not supported",
            id="definitions",
        ),
        pytest.param(
            _obj(spec={"type": "object", "dependencies": {"a": ["b"]}}),
            f"{ROOT}.properties[spec].dependencies",
            "Forbidden: dependencies is not supported",
            id="dependencies",
        ),
        pytest.param(
            _obj(spec={"type": "object", "patternProperties": {"^a": {"type": "string"}}}),
            f"{ROOT}.properties[spec].patternProperties",
            "Forbidden: patternProperties is not supported",
            id="patternProperties",
        ),
        pytest.param(
            _obj(spec={"type": "string", "id": "x"}),
            f"{ROOT}.properties[spec].id",
            "Forbidden: id is not supported",
            id="id",
        ),
        pytest.param(
            _obj(spec={"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
            f"{ROOT}.properties[spec].uniqueItems",
            "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            id="uniqueItems",
        ),
        pytest.param(
            _obj(spec={"type": "null"}),
            f"{ROOT}.properties[spec].type",
            "Forbidden: type cannot be set to null, use nullable as an alternative",
            id="type-null",
        ),
        pytest.param(
            _obj(spec={"type": "strin"}),
            f"{ROOT}.properties[spec].type",
            'Unsupported value: "strin": supported values: "array", "boolean", "integer", "number", "object", "string"',
            id="type-unknown",
        ),
        pytest.param(
            {"type": "object", "nullable": True},
            f"{ROOT}.nullable",
            "Forbidden: nullable cannot be true at the root",
            id="nullable-root",
        ),
        pytest.param(
            _obj(metadata={"type": "object", "properties": {"labels": {"type": "object"}}}),
            f"{ROOT}.properties[metadata]",
            "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly "
            "specified",
            id="metadata-beyond-name",
        ),
        pytest.param(
            _obj(metadata={"type": "object", "default": {"name": "x"}}),
            f"{ROOT}.properties[metadata].default",
            "Forbidden: must not be set in top-level metadata",
            id="metadata-default",
        ),
        pytest.param(
            _obj(spec={"type": "object", "anyOf": [{"type": "object"}]}),
            f"{ROOT}.properties[spec].anyOf[0].type",
            "Forbidden: must be empty to be structural",
            id="type-in-anyOf",
        ),
        pytest.param(
            _obj(spec={"type": "object", "oneOf": [{"properties": {"a": {"minLength": 1}}}]}),
            f"{ROOT}.properties[spec].properties[a]",
            f"Required value: because it is defined in {ROOT}.properties[spec].oneOf[0].properties[a]",
            id="junctor-field-not-declared",
        ),
        pytest.param(
            _obj(spec={"type": "string", "pattern": "^(?=a)"}),
            f"{ROOT}.properties[spec].pattern",
            'Invalid value: "^(?=a)": must be a valid regular expression, but isn\'t:',
            id="pattern-lookahead",
        ),
        pytest.param(
            _obj(spec={"type": "object", "x-kubernetes-preserve-unknown-fields": False}),
            f"{ROOT}.properties[spec].x-kubernetes-preserve-unknown-fields",
            "Invalid value: false: must be true or undefined",
            id="preserve-false",
        ),
        pytest.param(
            _obj(spec={"x-kubernetes-int-or-string": True, "x-kubernetes-preserve-unknown-fields": True}),
            f"{ROOT}.properties[spec].x-kubernetes-preserve-unknown-fields",
            "Invalid value: true: must be false if x-kubernetes-int-or-string is true",
            id="int-or-string-and-preserve",
        ),
        pytest.param(
            _obj(spec={"type": "string", "x-kubernetes-embedded-resource": True}),
            f"{ROOT}.properties[spec].type",
            'Invalid value: "string": must be object if x-kubernetes-embedded-resource is true',
            id="embedded-not-object",
        ),
        pytest.param(
            _obj(spec={"type": "object", "x-kubernetes-embedded-resource": True}),
            f"{ROOT}.properties[spec].properties",
            "Required value: must not be empty if x-kubernetes-embedded-resource is true without "
            "x-kubernetes-preserve-unknown-fields",
            id="embedded-empty",
        ),
        pytest.param(
            _obj(
                spec={
                    "type": "array",
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                }
            ),
            f"{ROOT}.properties[spec].items.properties[name].default",
            "Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a "
            "required property",
            id="list-map-key-not-required",
        ),
        pytest.param(
            _obj(spec={"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "map"}),
            f"{ROOT}.properties[spec].x-kubernetes-list-map-keys",
            "Required value: must not be empty if x-kubernetes-list-type is map",
            id="list-map-without-keys",
        ),
        pytest.param(
            _obj(spec={"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"}),
            f"{ROOT}.properties[spec].x-kubernetes-list-type",
            'Unsupported value: "bag": supported values: "atomic", "set", "map"',
            id="list-type-unknown",
        ),
        pytest.param(
            _obj(spec={"type": "integer", "default": "three"}),
            f"{ROOT}.properties[spec].default",
            'Invalid value: "string":',
            id="default-wrong-type",
        ),
        pytest.param(
            _obj(spec={"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": 1}}),
            f"{ROOT}.properties[spec].default",
            'Invalid value: {"a":"x","b":1}: must not have unknown fields, got: ["b"]',
            id="default-not-pruned",
        ),
        pytest.param(
            _obj(spec={"type": "object", "x-kubernetes-validations": [{"rule": "true", "reason": "Bogus"}]}),
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].reason",
            'Unsupported value: "Bogus": supported values: "FieldValueDuplicate", "FieldValueForbidden", '
            '"FieldValueInvalid", "FieldValueRequired"',
            id="rule-reason",
        ),
        pytest.param(
            _obj(spec={"type": "object", "x-kubernetes-validations": [{"rule": "true\n&& true"}]}),
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].message",
            "Required value: message must be specified if rule contains line breaks",
            id="rule-multiline-without-message",
        ),
        pytest.param(
            _obj(
                spec={
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".b"}],
                }
            ),
            f"{ROOT}.properties[spec].x-kubernetes-validations[0].fieldPath",
            'Invalid value: ".b": fieldPath must be a valid path',
            id="rule-fieldPath-unknown",
        ),
    ],
)
def test_non_structural_schema_is_refused_with_kubernetes_wording(
    schema: dict[str, Any], field: str, message: str
) -> None:
    causes = check_schema(schema, ROOT)
    assert any(c.field == field and c.message.startswith(message) for c in causes), causes


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param(
            _obj(spec={"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
            id="int-or-string-anyOf",
        ),
        pytest.param(_obj(spec={"type": "object", "x-kubernetes-preserve-unknown-fields": True}), id="preserve"),
        pytest.param(_obj(spec={"x-kubernetes-preserve-unknown-fields": True}), id="preserve-untyped"),
        pytest.param(
            _obj(metadata={"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}),
            id="metadata-name",
        ),
        pytest.param(
            _obj(
                spec={
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "oneOf": [{"required": ["a"]}, {"properties": {"a": {"minLength": 2}}}],
                }
            ),
            id="oneOf",
        ),
        pytest.param(
            _obj(spec={"type": "object", "additionalProperties": True, "properties": {"a": {"type": "string"}}}),
            id="additionalProperties-true",
        ),
        pytest.param(
            _obj(
                tpl={
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                }
            ),
            id="embedded",
        ),
        pytest.param(
            _obj(
                spec={
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                }
            ),
            id="list-map",
        ),
    ],
)
def test_structural_schema_is_accepted(schema: dict[str, Any]) -> None:
    assert check_schema(schema, ROOT) == []


def test_compile_schema_raises_schema_error_with_causes_under_the_given_path() -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(_obj(spec={"type": "array"}), field_path="spec.versions[1].schema.openAPIV3Schema")
    assert [c.field for c in info.value.causes] == ["spec.versions[1].schema.openAPIV3Schema.properties[spec].items"]


@pytest.mark.parametrize(
    ("schemas", "expected"),
    [
        pytest.param([_obj(), _obj()], ROOT, id="shared-schema-is-hoisted"),
        pytest.param([_obj(), _obj(a={"type": "string"})], "spec.versions[1].schema.openAPIV3Schema", id="distinct"),
    ],
)
def test_version_schema_path_follows_kubernetes_hoisting(schemas: list[dict[str, Any]], expected: str) -> None:
    versions = [{"name": f"v{i}", "schema": {"openAPIV3Schema": s}} for i, s in enumerate(schemas)]
    assert version_schema_path(versions, 1) == expected
