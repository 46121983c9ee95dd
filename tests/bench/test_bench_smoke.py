"""Smoke test of ``bench/apiserver.py``: the quick SQLite run exits 0 and prints its summary.

Runs the script as a subprocess exactly as a person would (real apiserver process, HTTPS,
watchers in a child process), so a change that breaks the bench, or the API paths it drives,
shows up in CI. The figures themselves are not asserted: CI machines vary too much.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "expected_line",
    [
        pytest.param("== SUMMARY", id="summary-header"),
        pytest.param("HTTP creates/s, 16 clients (ConfigMaps)", id="create-row"),
        pytest.param("watch delay p99", id="watch-row"),
        pytest.param("apiserver RSS after pods", id="rss-row"),
    ],
)
def test_quick_sqlite_run_prints_summary(bench_run: tuple[subprocess.CompletedProcess[str], Path],
                                         expected_line: str) -> None:
    result, _ = bench_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert expected_line in result.stdout


def test_quick_sqlite_run_writes_every_figure(bench_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, json_path = bench_run
    figures = orjson.loads(json_path.read_bytes())["results"]["sqlite"]
    for key in ("create_per_s", "raw_store_creates_per_s", "create_p99_ms", "get_p99_ms", "list_p50_ms",
                "list_table_p50_ms", "watch_p99_ms", "rss_idle_mb", "rss_after_pods_mb"):
        assert isinstance(figures[key], int | float) and figures[key] > 0, key
    assert figures["watch_events"] == figures["watch_events_expected"]
    assert "error" not in figures


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    json_path = tmp_path_factory.mktemp("bench") / "out.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "apiserver.py"), "--quick", "--store", "sqlite",
         "--json", str(json_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )
    return result, json_path
