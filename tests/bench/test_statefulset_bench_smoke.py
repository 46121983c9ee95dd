"""Smoke test of ``bench/statefulset.py --quick``: run as a person would, it must exit 0, print its
summary and write positive figures for the raw floor and both policies; afterwards nothing of its
cluster may remain. The figures themselves are not asserted (the machine is shared), except that
they are positive and the ordered chain is no shorter than its pods' starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_statefulset_bench_quick(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "statefulset.py"), "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("== SUMMARY StatefulSet of 3", "raw docker run, sequential", "OrderedReady  all Ready",
                 "Parallel      all Ready", "controller gap"):
        assert line in result.stdout, line
    figures = json.loads(out.read_text())
    assert figures["replicas"] == 3 and figures["raw"]["sum_s"] > 0
    for policy in ("OrderedReady", "Parallel"):
        assert figures[policy]["total_s"] > 0 and figures[policy]["pod_start_p50_s"] > 0
    ordered = figures["OrderedReady"]
    assert ordered["total_s"] >= ordered["pod_start_sum_s"] > 0
    selector = {"label": [f"kubelab.dev/cluster={figures['cluster']}"]}
    assert docker_client.containers.list(all=True, filters=selector) == []
    assert docker_client.networks.list(filters=selector) == []
