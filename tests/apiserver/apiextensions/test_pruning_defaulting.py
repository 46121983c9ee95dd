"""Pruning unknown fields and applying defaults, as kube-apiserver decodes custom objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apiserver.apiextensions import compile_schema
from apiserver.apiextensions.defaulting import apply_defaults
from apiserver.apiextensions.pruning import prune

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer", "default": 1},
                "mode": {"type": "string", "nullable": True, "default": "auto"},
                "strategy": {"type": "string", "default": "Rolling"},
                "ports": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}},
                    },
                },
                "selector": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"weight": {"type": "integer", "default": 100}},
                    },
                },
                "extra": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}},
                },
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "limits": {"type": "object", "default": {}, "properties": {"cpu": {"type": "string", "default": "1"}}},
            },
        },
    },
}


@pytest.mark.parametrize(
    ("obj", "pruned", "after"),
    [
        pytest.param({"spec": {"bogus": 1}}, ["spec.bogus"], {"spec": {}}, id="unknown-field"),
        pytest.param(
            {"spec": {"ports": [{"port": 1, "x": 2}]}},
            ["spec.ports[0].x"],
            {"spec": {"ports": [{"port": 1}]}},
            id="in-items",
        ),
        pytest.param(
            {"spec": {"selector": {"app": {"weight": 1, "y": 0}}}},
            ["spec.selector[app].y"],
            {"spec": {"selector": {"app": {"weight": 1}}}},
            id="in-additionalProperties",
        ),
        pytest.param(
            {"spec": {"extra": {"free": [1], "known": {"a": "x", "b": "y"}}}},
            ["spec.extra.known.b"],
            {"spec": {"extra": {"free": [1], "known": {"a": "x"}}}},
            id="preserve-keeps-unknown-but-prunes-known",
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": "K", "metadata": {"name": "n"}, "status": {}},
            ["status"],
            {"apiVersion": "v1", "kind": "K", "metadata": {"name": "n"}},
            id="root-type-meta-kept",
        ),
        pytest.param(
            {"spec": {"template": {"apiVersion": "v1", "metadata": {"name": "a", "junk": 1}, "x": 1}}},
            ["spec.template.metadata.junk"],
            {"spec": {"template": {"apiVersion": "v1", "metadata": {"name": "a"}, "x": 1}}},
            id="embedded-metadata",
        ),
    ],
)
def test_prune(obj: dict[str, Any], pruned: list[str], after: dict[str, Any]) -> None:
    assert prune(obj, SCHEMA) == pruned
    assert obj == after


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {"spec": {}}, {"replicas": 1, "mode": "auto", "strategy": "Rolling", "limits": {"cpu": "1"}}, id="missing"
        ),
        pytest.param(
            {"spec": {"replicas": 3}},
            {"replicas": 3, "mode": "auto", "strategy": "Rolling", "limits": {"cpu": "1"}},
            id="set-value-kept",
        ),
        pytest.param(
            {"spec": {"mode": None, "strategy": None}},
            {"replicas": 1, "mode": None, "strategy": "Rolling", "limits": {"cpu": "1"}},
            id="null-nullable-kept-null-defaulted",
        ),
        pytest.param(
            {"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}},
            {
                "replicas": 1,
                "mode": "auto",
                "strategy": "Rolling",
                "limits": {"cpu": "1"},
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            },
            id="in-items",
        ),
        pytest.param(
            {"spec": {"selector": {"a": {}}}},
            {
                "replicas": 1,
                "mode": "auto",
                "strategy": "Rolling",
                "limits": {"cpu": "1"},
                "selector": {"a": {"weight": 100}},
            },
            id="in-additionalProperties",
        ),
    ],
)
def test_defaults(obj: dict[str, Any], expected: dict[str, Any]) -> None:
    apply_defaults(obj, SCHEMA)
    assert obj["spec"] == expected


def test_defaults_are_copies() -> None:
    a: dict[str, Any] = {"spec": {}}
    b: dict[str, Any] = {"spec": {}}
    apply_defaults(a, SCHEMA)
    apply_defaults(b, SCHEMA)
    a["spec"]["limits"]["cpu"] = "2"
    assert b["spec"]["limits"]["cpu"] == "1"
    assert SCHEMA["properties"]["spec"]["properties"]["limits"]["default"] == {}


def test_prune_then_default_on_write_does_not_resurrect_pruned_fields() -> None:
    compiled = compile_schema(copy.deepcopy(SCHEMA))
    obj: dict[str, Any] = {"spec": {"bogus": True}}
    assert compiled.prune(obj) == ["spec.bogus"]
    compiled.default(obj)
    assert "bogus" not in obj["spec"] and obj["spec"]["replicas"] == 1
    assert compiled.validate(obj) == []
    assert compiled.openapi() == SCHEMA and compiled.openapi() is not compiled.schema
