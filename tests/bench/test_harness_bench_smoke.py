"""Smoke test of ``bench/harness.py``: the quick run exits 0 and prints every figure and the anchors.

The figures themselves are not asserted (the machines vary too much), only that each was measured.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_quick_run_prints_each_fixture_cost_beside_the_anchors() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "harness.py"), "--quick"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for row in ("kubelab_apiserver: start until /readyz 200", "then the first Pod created",
                "kubelab_cluster: 2 hollow nodes until Ready", "kubelab_namespace: create + delete until gone",
                "kubelab down"):
        assert re.search(rf"{re.escape(row)}\s+p50\s+\d+\.\d\d s", result.stdout), row
    assert "envtest (etcd + kube-apiserver)" in result.stdout
