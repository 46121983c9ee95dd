"""Smoke test of ``bench/tokens.py``: the quick run exits 0 and writes every figure.

Runs the script as a subprocess as a person would (a real apiserver process, HTTPS, TokenRequest,
TokenReview, bearer and client-certificate GETs through RBAC), so a change that breaks the bench or
the token paths it drives shows up in CI. The figures are not held to targets: machines vary too much.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow]


def test_quick_run_reviews_tokens_and_times_both_credentials(tmp_path: Path) -> None:
    json_path = tmp_path / "out.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "tokens.py"), "--quick", "--json", str(json_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "TokenReviews:" in result.stdout and "bearer-token authentication overhead" in result.stdout
    figures = orjson.loads(json_path.read_bytes())
    for key in ("token_requests_per_s", "reviews_per_s", "review_p50_ms", "review_p99_ms", "bearer_get_p50_ms",
                "bearer_get_p99_ms", "cert_get_p50_ms", "cert_get_p99_ms"):
        assert isinstance(figures.get(key), int | float) and figures[key] > 0, key
    assert figures["review_p50_ms"] <= figures["review_p99_ms"]
    assert figures["reviews"] >= 16
