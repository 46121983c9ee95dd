"""Smoke test of ``bench/mesh.py --quick``: a real meshed cluster, hey in a pod, every figure written.

The script runs as a subprocess exactly as a person would (``kubelab up --nodes 2`` in a temporary
state dir, torn down at the end); it must exit 0, print its summary and write every figure. The
figures are not held to the targets (machines vary too much), only to being measured: positive,
both latency runs answered 200 only, and the sidecar run's requests crossed the sidecars (its
proxies used CPU). Afterwards no container or network of its cluster may remain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.kubectl]

SUMMARY = ["== SUMMARY mesh", "direct ", "meshed ", "added   p50", "sidecar CPU", "push to 8 real sidecars",
           "simulated proxies", "pod start", "CSRs signed"]
FIGURES = ["direct_p50_ms", "direct_p90_ms", "direct_p99_ms", "meshed_p50_ms", "meshed_p90_ms", "meshed_p99_ms",
           "direct_rps", "meshed_rps", "sidecar_cpu_cores_per_1k_rps", "sidecar_rss_mb", "real_push_p50_s",
           "real_push_p99_s", "simulated_push_p99_s", "pod_start_direct_s", "pod_start_meshed_s", "pod_start_ratio",
           "csrs_per_s"]


@pytest.fixture(scope="module")
def bench_run(docker_client: docker.DockerClient,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    json_path = tmp_path_factory.mktemp("mesh-bench") / "out.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "mesh.py"), "--quick", "--json", str(json_path)],
                            capture_output=True, text=True, timeout=1200, cwd=ROOT, check=False)
    figures = json.loads(json_path.read_text()) if json_path.exists() else {}
    return result, figures


def test_quick_run_prints_summary(bench_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    result, _ = bench_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in SUMMARY:
        assert line in result.stdout, line


def test_quick_run_writes_every_figure(bench_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    result, figures = bench_run
    assert figures, result.stderr[-3000:]
    for key in FIGURES:
        assert isinstance(figures[key], int | float) and figures[key] > 0, key
    assert figures["direct_non_200"] == 0 and figures["meshed_non_200"] == 0
    assert figures["real_sidecars"] == 8


def test_quick_run_leaves_nothing_behind(bench_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
                                         docker_client: docker.DockerClient) -> None:
    _, figures = bench_run
    selector = {"label": [f"kubelab.dev/cluster={figures['cluster']}"]}
    assert docker_client.containers.list(all=True, filters=selector) == []
    assert docker_client.networks.list(filters=selector) == []
