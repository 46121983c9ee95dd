"""Smoke test of ``bench/chaos.py``: a small run exits 0 and reports every round and the outage.

Runs the script as a subprocess exactly as a person would (``kubelab up`` with its supervisor,
SIGKILLs, a short outage), so a change that breaks the bench or the healing it measures shows up
in CI. Only the shape and the sanity of the figures are asserted: CI machines vary too much.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    json_path = tmp_path_factory.mktemp("bench") / "chaos.json"
    result = subprocess.run(
        # Smaller than --quick (3 rounds, 50 replicas, 10 s outage): the shape is what is checked here.
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--rounds", "2", "--replicas", "20", "--nodes", "2",
         "--outage", "5", "--json", str(json_path)],
        capture_output=True, text=True, timeout=900, cwd=ROOT, check=False,
    )
    return result, json_path


def test_small_run_prints_each_round_and_a_summary(bench_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, _ = bench_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rounds = [line for line in result.stdout.splitlines() if line.strip().startswith("round ")]
    assert len(rounds) == 2 and all("killed" in r and "restart delay" in r and "re-converged" in r for r in rounds)
    assert "== SUMMARY" in result.stdout
    assert "chaos seed" in result.stdout


def test_small_run_measures_every_kill_and_the_outage(bench_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, json_path = bench_run
    report = orjson.loads(json_path.read_bytes())
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for kill in report["rounds"]:
        assert kill["component"] in {"apiserver", "scheduler", "controller-manager", "kubelet-hollow", "meshd"}
        assert 0 < kill["restart_delay"] <= kill["converge"]  # the bench waits for the restart, then convergence
    outage = report["results"]["outage"]
    assert outage["down"] >= 5 and 0 < outage["converge"] <= 30
