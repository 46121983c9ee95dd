"""Smoke test of ``bench/portforward.py --quick``: run as a person would, it must exit 0, print its
summary and write positive figures; afterwards nothing of its cluster may remain. The figures
themselves are not asserted (the machine is shared), except that they are positive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_portforward_bench_quick(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "portforward.py"), "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "through port-forward:" in result.stdout and "direct to the pod IP:" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["direct_mb_s"] > 0 and figures["portforward_mb_s"] > 0
    left = docker_client.containers.list(all=True, filters={"label": f"kubelab.dev/cluster={figures['cluster']}"})
    assert left == []
