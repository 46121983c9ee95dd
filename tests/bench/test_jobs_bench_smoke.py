"""Smoke test of ``bench/jobs.py``: the quick run completes its Job with exactly one pod per
completion and prints the summary (figures not held to targets: CI machines vary too much)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow]


def test_quick_run_completes_every_pod_once() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "jobs.py"), "--quick"], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    summary = run.stdout.split("== SUMMARY", 1)[1]
    match = re.search(r"50 one-shot pods, .*: ([\d.]+) s, ([\d.]+) completions/s .*, (\d+) pods created, (\d+) failed",
                      summary)
    assert match is not None, summary
    # Listed once the Job is Complete: one pod per completion, none run in excess and deleted (a
    # deleted running pod would count as failed).
    assert float(match.group(2)) > 0 and (int(match.group(3)), int(match.group(4))) == (50, 0), summary
