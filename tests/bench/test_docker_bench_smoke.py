"""Smoke test of the Docker benchmarks: ``bench/pod_startup.py --quick`` and ``bench/kubelet_idle.py --quick``.

Each script runs as a subprocess exactly as a person would (an apiserver process and a Docker kubelet
process on a unique cluster name and pod subnet), must exit 0, print its summary and write every
figure; afterwards no container or network of its cluster may remain. The figures themselves are
not asserted (CI machines vary too much), except that they are positive.
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

pytestmark = [pytest.mark.slow, pytest.mark.docker]

BENCHES = {
    "pod_startup": (["== SUMMARY pod startup", "raw Docker SDK pause+app", "kubelet create->Ready", "p50 ratio"],
                    ["raw_p50_s", "raw_p99_s", "kubelet_p50_s", "kubelet_p99_s", "p50_ratio"]),
    "kubelet_idle": (["== SUMMARY idle with 5 running pods", "kubelet    RSS", "apiserver  RSS"],
                     ["kubelet_rss_mb", "apiserver_rss_mb", "kubelet_rss_before_pods_mb", "pods_ready_s"]),
}


@pytest.fixture(scope="module", params=list(BENCHES))
def bench_run(request: pytest.FixtureRequest, docker_client: docker.DockerClient,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[str, subprocess.CompletedProcess[str], dict[str, Any]]:
    name = str(request.param)
    json_path = tmp_path_factory.mktemp(name) / "out.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick", "--json", str(json_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    figures = json.loads(json_path.read_text()) if json_path.exists() else {}
    return name, result, figures


def test_quick_run_prints_summary(bench_run: tuple[str, subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    name, result, _ = bench_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in BENCHES[name][0]:
        assert line in result.stdout, line


def test_quick_run_writes_every_figure(bench_run: tuple[str, subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    name, result, figures = bench_run
    assert figures, result.stderr[-3000:]
    for key in BENCHES[name][1]:
        assert isinstance(figures[key], int | float) and figures[key] > 0, key


def test_quick_run_leaves_nothing_behind(bench_run: tuple[str, subprocess.CompletedProcess[str], dict[str, Any]],
                                         docker_client: docker.DockerClient) -> None:
    _, _, figures = bench_run
    selector = {"label": [f"kubelab.dev/cluster={figures['cluster']}"]}
    assert docker_client.containers.list(all=True, filters=selector) == []
    assert docker_client.networks.list(filters=selector) == []
