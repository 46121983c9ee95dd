"""A synthetic CRD bundle shaped like Istio's published one, for ``bench/crd.py`` and its smoke test.

Istio's ``crd-all.gen.yaml`` (15 CRDs, ~1 MB, 24 served versions, ~400 ``x-kubernetes-validations``
rules of ~40 distinct texts) is kept out of the repository; :func:`synthetic_bundle` writes a bundle
of our own with the same shape: every CRD has a large, described, structural schema made of
sections that carry the kinds of rules real mesh CRDs use (durations, port ranges, host and key
checks, a one-of over optional fields, URL schemes), with ``maxItems``/``maxLength`` bounds so the
rules stay within Kubernetes' cost budget, and the first ``versions - crds`` CRDs serve a second
version with the same schema, as Istio's ``v1`` + ``v1beta1`` CRDs do.
"""

from __future__ import annotations

from typing import Any

import yaml

GROUP = "mesh.bench.example.com"

_WORDS = ("traffic", "policy", "route", "destination", "workload", "selector", "weight", "header", "retry",
          "timeout", "subset", "gateway", "listener", "cluster", "endpoint", "certificate")


def _text(seed: int, words: int) -> str:
    return " ".join(_WORDS[(seed * 7 + i * 3) % len(_WORDS)] for i in range(words)).capitalize() + "."


def _rule(rule: str, message: str) -> dict[str, str]:
    return {"rule": rule, "message": message}


def _section(i: int, words: int) -> dict[str, Any]:
    """One described object with 3 rules (duration, port range, keys) and a one-of over two fields."""
    return {
        "type": "object",
        "description": _text(i, words),
        "properties": {
            "timeout": {"type": "string", "description": _text(i + 1, words),
                        "x-kubernetes-validations": [_rule("duration(self) >= duration('1ms')",
                                                           "must be a valid duration greater than 1ms")]},
            "port": {"type": "integer", "description": _text(i + 2, words), "maximum": 4294967295, "minimum": 0,
                     "x-kubernetes-validations": [_rule("0 < self && self <= 65535",
                                                        "port must be between 1-65535")]},
            "labels": {"type": "object", "description": _text(i + 3, words), "maxProperties": 64,
                       "additionalProperties": {"type": "string", "maxLength": 63},
                       "x-kubernetes-validations": [_rule("self.all(key, !key.contains('*'))",
                                                          "wildcard not allowed in label key match")]},
            "hosts": {"type": "array", "description": _text(i + 4, words), "maxItems": 32,
                      "items": {"type": "string", "maxLength": 253}},
            "mode": {"type": "string", "description": _text(i + 5, words), "enum": ["UNSET", "DISABLE", "STRICT"]},
            "name": {"type": "string", "description": _text(i + 6, words), "maxLength": 63,
                     "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "match": {"type": "object", "description": _text(i + 7, words), "properties": {
                "exact": {"type": "string", "description": _text(i + 8, words), "maxLength": 1024},
                "prefix": {"type": "string", "description": _text(i + 9, words), "maxLength": 1024},
                "regex": {"type": "string", "description": _text(i + 10, words), "maxLength": 1024},
            }, "oneOf": [{"not": {"anyOf": [{"required": ["exact"]}, {"required": ["prefix"]},
                                            {"required": ["regex"]}]}},
                         {"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}]},
            "weight": {"type": "integer", "format": "int32", "description": _text(i + 11, words)},
        },
    }


def _schema(index: int, sections: int, words: int) -> dict[str, Any]:
    spec_props = {f"section{j}": _section(index * 31 + j, words) for j in range(sections)}
    spec_props["url"] = {"type": "string", "description": _text(index, words), "maxLength": 2048,
                         "x-kubernetes-validations": [_rule("url(self).getScheme() in ['http', 'https']",
                                                            "url must have schema one of [http, https]")]}
    return {"openAPIV3Schema": {
        "type": "object",
        "description": _text(index, words * 2),
        "properties": {
            "spec": {"type": "object", "description": _text(index + 1, words), "properties": spec_props,
                     "x-kubernetes-validations": [_rule(
                         "(has(self.section0) ? 1 : 0) + (has(self.section1) ? 1 : 0) <= 2",
                         "at most two of section0, section1 can be set")]},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }}


def synthetic_crds(*, crds: int = 15, versions: int = 24, sections: int = 8, words: int = 40) -> list[dict[str, Any]]:
    """``crds`` CRDs serving ``versions`` versions in all, ~27 rules each with the defaults (~1 MB)."""
    out = []
    for i in range(crds):
        plural, kind = f"meshthing{i}s", f"MeshThing{i}"
        schema = _schema(i, sections, words)
        served = [{"name": "v1", "served": True, "storage": True, "schema": schema,
                   "subresources": {"status": {}}}]
        if i < versions - crds:
            served.append({"name": "v1beta1", "served": True, "storage": False, "schema": schema,
                           "subresources": {"status": {}}})
        out.append({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app": "mesh-bench"}},
            "spec": {"group": GROUP, "scope": "Namespaced",
                     "names": {"plural": plural, "singular": f"meshthing{i}", "kind": kind,
                               "categories": ["mesh-bench"]},
                     "versions": served},
        })
    return out


def synthetic_bundle(**kwargs: int) -> str:
    """The bundle as multi-document YAML, as ``kubectl apply -f`` reads it."""
    return yaml.safe_dump_all(synthetic_crds(**kwargs), sort_keys=False, width=120)


def rule_count(bundle: str) -> int:
    """How many ``x-kubernetes-validations`` rules a YAML bundle holds (served versions included)."""
    return sum(line.lstrip().startswith(("- rule:", "rule:")) for line in bundle.splitlines())
