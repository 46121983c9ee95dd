"""A CRD of our own shaped like a service mesh's routing CRDs: nested objects, oneOf/anyOf/not,
int-or-string, bounded maps and lists, and the CEL rules such CRDs carry (durations, URLs, ports,
mutually exclusive fields)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apiserver.apiextensions import compile_schema
from machinery.errors import StatusCause

_DURATION = {
    "type": "string",
    "x-kubernetes-validations": [
        {"rule": "duration(self) >= duration('1ms')", "message": "must be a valid duration greater than 1ms"}
    ],
}
_MATCH = {
    "type": "object",
    "oneOf": [
        {"not": {"anyOf": [{"required": ["exact"]}, {"required": ["prefix"]}]}},
        {"required": ["exact"]},
        {"required": ["prefix"]},
    ],
    "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}},
}
ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1",
                    "message": "only one of targetRefs or selector can be set",
                }
            ],
            "properties": {
                "hosts": {
                    "type": "array",
                    "maxItems": 64,
                    "items": {
                        "type": "string",
                        "maxLength": 253,
                        "x-kubernetes-validations": [{"rule": "self != '*'", "message": "hostname cannot be wildcard"}],
                    },
                },
                "selector": {
                    "type": "object",
                    "maxProperties": 32,
                    "additionalProperties": {"type": "string", "maxLength": 63},
                    "x-kubernetes-validations": [
                        {
                            "rule": "self.all(key, !key.contains('*'))",
                            "message": "wildcard not allowed in label key match",
                        }
                    ],
                },
                "targetRefs": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                        "type": "object",
                        "properties": {"kind": {"type": "string"}, "name": {"type": "string"}},
                        "required": ["kind", "name"],
                    },
                },
                "ports": {
                    "type": "object",
                    "maxProperties": 16,
                    "additionalProperties": {
                        "type": "integer",
                        "x-kubernetes-validations": [
                            {"rule": "0 < self && self <= 65535", "message": "port must be between 1-65535"}
                        ],
                    },
                    "x-kubernetes-validations": [
                        {
                            "rule": "self.all(key, size(key) < 63"
                            " && key.matches('^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$'))",
                            "message": "port name must be valid",
                        }
                    ],
                },
                "http": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "match": {
                                "type": "array",
                                "maxItems": 8,
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "uri": _MATCH,
                                        "port": {"type": "integer", "maximum": 4294967295, "minimum": 0},
                                    },
                                },
                            },
                            "timeout": _DURATION,
                            "retries": {
                                "type": "object",
                                "properties": {
                                    "attempts": {"type": "integer", "format": "int32"},
                                    "perTryTimeout": _DURATION,
                                },
                            },
                            "weight": {
                                "x-kubernetes-int-or-string": True,
                                "anyOf": [{"type": "integer"}, {"type": "string"}],
                            },
                            "mirrorUrl": {
                                "type": "string",
                                "maxLength": 2048,
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "url(self).getScheme() in ['http', 'https']",
                                        "message": "url must have scheme http:// or https://",
                                    }
                                ],
                            },
                        },
                    },
                },
                "mode": {"type": "string", "enum": ["UNSET", "STRICT", "PERMISSIVE"]},
                "createdAt": {"type": "string", "format": "date-time"},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}

GOOD: dict[str, Any] = {
    "apiVersion": "mesh.example.com/v1",
    "kind": "TrafficRoute",
    "metadata": {"name": "reviews"},
    "spec": {
        "hosts": ["reviews"],
        "selector": {"app": "reviews"},
        "ports": {"http": 9080},
        "http": [
            {
                "name": "v2",
                "match": [{"uri": {"prefix": "/api"}}],
                "timeout": "1.5s",
                "retries": {"attempts": 3, "perTryTimeout": "2s"},
                "weight": "50%",
                "mirrorUrl": "http://mirror:80/",
            },
            {"match": [{"uri": {}}], "weight": 50},
        ],
        "mode": "STRICT",
        "createdAt": "2024-06-01T10:00:00Z",
    },
}


def test_good_object_passes() -> None:
    compiled = compile_schema(copy.deepcopy(ROUTE_SCHEMA))
    obj = copy.deepcopy(GOOD)
    assert compiled.prune(obj) == []
    compiled.default(obj)
    assert compiled.validate(obj) == []
    assert compiled.validate(obj, old=copy.deepcopy(GOOD)) == []


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split("/")
    node: Any = obj
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        pytest.param(
            "spec/targetRefs",
            [{"kind": "Service", "name": "r"}],
            StatusCause("spec", 'Invalid value: "object": only one of targetRefs or selector can be set'),
            id="exclusive-fields",
        ),
        pytest.param(
            "spec/hosts",
            ["*"],
            StatusCause("spec.hosts[0]", 'Invalid value: "string": hostname cannot be wildcard'),
            id="host-wildcard",
        ),
        pytest.param(
            "spec/selector",
            {"ap*": "x"},
            StatusCause("spec.selector", 'Invalid value: "object": wildcard not allowed in label key match'),
            id="map-key-rule",
        ),
        pytest.param(
            "spec/ports",
            {"-bad": 80},
            StatusCause("spec.ports", 'Invalid value: "object": port name must be valid'),
            id="port-name",
        ),
        pytest.param(
            "spec/ports",
            {"http": 70000},
            StatusCause("spec.ports.http", 'Invalid value: "integer": port must be between 1-65535'),
            id="port-range",
        ),
        pytest.param(
            "spec/http/0/timeout",
            "0.1ms",
            StatusCause("spec.http[0].timeout", 'Invalid value: "string": must be a valid duration greater than 1ms'),
            id="duration",
        ),
        pytest.param(
            "spec/http/0/retries/perTryTimeout",
            "soon",
            StatusCause(
                "spec.http[0].retries.perTryTimeout",
                'Invalid value: "string": duration parse error evaluating rule: '
                "must be a valid duration greater than 1ms",
            ),
            id="duration-unparsable",
        ),
        pytest.param(
            "spec/http/0/mirrorUrl",
            "ftp://mirror/",
            StatusCause("spec.http[0].mirrorUrl", 'Invalid value: "string": url must have scheme http:// or https://'),
            id="url",
        ),
        pytest.param(
            "spec/http/0/match/0/uri",
            {"exact": "/a", "prefix": "/b"},
            StatusCause(
                "spec.http[0].match[0].uri",
                'Invalid value: "": spec.http[0].match[0].uri in body must validate one and only one schema (oneOf)',
            ),
            id="oneOf",
        ),
        pytest.param(
            "spec/http/1/weight",
            1.5,
            StatusCause(
                "spec.http[1].weight",
                'Invalid value: "number": spec.http[1].weight in body must be of type integer,string: "number"',
                "FieldValueTypeInvalid",
            ),
            id="int-or-string",
        ),
        pytest.param(
            "spec/mode",
            "LOOSE",
            StatusCause(
                "spec.mode",
                'Unsupported value: "LOOSE": supported values: "UNSET", "STRICT", "PERMISSIVE"',
                "FieldValueNotSupported",
            ),
            id="enum",
        ),
    ],
)
def test_bad_object_is_refused_naming_the_field(path: str, value: Any, expected: StatusCause) -> None:
    compiled = compile_schema(copy.deepcopy(ROUTE_SCHEMA))
    obj = copy.deepcopy(GOOD)
    _set(obj, path, value)
    causes = compiled.validate(obj)
    if expected.message.startswith('Invalid value: "string": duration parse error'):
        assert [c.field for c in causes] == [expected.field] and "evaluating rule: must be a valid duration" in causes[
            0
        ].message
    else:
        assert causes == [expected]


def test_unknown_fields_are_pruned_and_reported() -> None:
    compiled = compile_schema(copy.deepcopy(ROUTE_SCHEMA))
    obj = copy.deepcopy(GOOD)
    obj["spec"]["http"][0]["fault"] = {"delay": "1s"}
    obj["spec"]["tls"] = []
    obj["status"] = {"anything": True}
    assert compiled.prune(obj) == ["spec.http[0].fault", "spec.tls"]
    assert obj["status"] == {"anything": True}
