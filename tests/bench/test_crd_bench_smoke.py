"""Smoke test of ``bench/crd.py``: the quick SQLite run with the synthetic bundle exits 0 with every figure.

Runs the script as a subprocess as a person would (real apiserver processes, HTTPS, the real
kubectl), so a change that breaks the bench, the CRD paths it drives or the synthetic bundle shows
up in CI. The figures themselves are not asserted against their targets: CI machines vary too much.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.crd_bundle import rule_count, synthetic_bundle, synthetic_crds

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]


def test_synthetic_bundle_has_the_shape_of_istios() -> None:
    crds = synthetic_crds()
    bundle = synthetic_bundle()
    assert len(crds) == 15
    assert sum(len(c["spec"]["versions"]) for c in crds) == 24
    assert 0.8e6 < len(bundle.encode()) < 1.2e6
    assert 350 <= rule_count(bundle) <= 450


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    json_path = tmp_path_factory.mktemp("bench-crd") / "out.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "crd.py"), "--quick", "--store", "sqlite", "--bundle", "synthetic",
         "--json", str(json_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )
    figures = orjson.loads(json_path.read_bytes()) if json_path.exists() else {}
    return result, figures


def test_quick_run_prints_summary(bench_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    result, _ = bench_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "== SUMMARY (sqlite)" in result.stdout
    assert "custom / ConfigMap" in result.stdout


def test_quick_run_writes_every_figure(bench_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    _, figures = bench_run
    for key in ("configmap_create_per_s", "custom_create_per_s", "custom_vs_configmap",
                "bundle_client_side_apply_s", "bundle_client_side_established_s",
                "bundle_server_side_apply_s", "bundle_server_side_established_s"):
        assert isinstance(figures.get(key), int | float) and figures[key] > 0, key
    assert figures["bundle_crds"] == 15 and figures["bundle_source"].startswith("synthetic")
