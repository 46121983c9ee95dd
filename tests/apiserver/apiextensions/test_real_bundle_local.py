"""A local-only check against a real CRD bundle with CEL rules (Istio's), when one is on this machine.

The bundle is not part of the repository: put Istio's ``crd-all.gen.yaml`` at
``/tmp/kl/istio-crds.yaml`` (and optionally its bookinfo networking samples under
``/tmp/kl/istio-samples/``) to run these; they are skipped otherwise.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from apiserver.apiextensions import compile_schema, version_schema_path

BUNDLE = Path("/tmp/kl/istio-crds.yaml")
SAMPLES = Path("/tmp/kl/istio-samples")

pytestmark = pytest.mark.skipif(not BUNDLE.exists(), reason=f"{BUNDLE} is not on this machine")


def _crds() -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = yaml.load_all(BUNDLE.read_text(), Loader=loader)
    return [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]


def test_every_crd_version_compiles_with_all_its_rules_quickly() -> None:
    crds = _crds()
    started = time.perf_counter()
    rules = 0
    for crd in crds:
        versions = crd["spec"]["versions"]
        for i, version in enumerate(versions):
            compiled = compile_schema(version["schema"]["openAPIV3Schema"], field_path=version_schema_path(versions, i))
            rules += compiled.rule_count
    elapsed = time.perf_counter() - started
    assert len(crds) >= 10
    assert rules >= 300
    assert elapsed < 2.0, f"compiling {rules} rules took {elapsed:.2f}s"


def test_samples_pass_and_a_broken_object_is_refused() -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is not on this machine")
    compiled: dict[tuple[str, str], Any] = {}
    for crd in _crds():
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            compiled[key] = compile_schema(version["schema"]["openAPIV3Schema"])
    checked = 0
    for path in sorted(SAMPLES.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj or (obj["apiVersion"], obj["kind"]) not in compiled:
                continue
            schema = compiled[(obj["apiVersion"], obj["kind"])]
            obj = copy.deepcopy(obj)
            assert schema.prune(obj) == [], path.name
            schema.default(obj)
            assert schema.validate(obj) == [], path.name
            checked += 1
    assert checked > 0
    dr = compiled[("networking.istio.io/v1", "DestinationRule")]
    bad = {"spec": {"host": "r", "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": "0.5ms"}}}}}
    causes = dr.validate(bad)
    assert [c.field for c in causes] == ["spec.trafficPolicy.connectionPool.tcp.connectTimeout"]
    assert causes[0].message == 'Invalid value: "string": must be a valid duration greater than 1ms'
