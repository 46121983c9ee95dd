"""Smoke test of ``bench/metrics_api.py --quick``: it exits 0 and prints both latency lines.

Runs the script as a subprocess as a person would (an apiserver process, hollow kubelets in the
script's process). The figures are not asserted beyond being printed: machines vary too much.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_quick_run_prints_latencies() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "metrics_api.py"), "--quick"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("GET ")]
    assert len(lines) == 2, result.stdout
    assert "(100 items, 30 requests)" in lines[0]
    assert all(re.search(r"p50 [\d.]+ ms, p99 [\d.]+ ms", line) for line in lines), lines
