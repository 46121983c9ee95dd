"""``kubelab up --hollow-nodes 2`` starts meshd under the supervisor; after ``kill -9`` it comes back and serves."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelab import launcher, supervision
from kubelab.supervision import State

pytestmark = [pytest.mark.slow]


def kubelab(state_dir: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*launcher.kubelab_command(), *args, "--state-dir", str(state_dir)],
                            capture_output=True, text=True, timeout=timeout, env=launcher.python_env(), check=False)
    assert result.returncode == 0, f"kubelab {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def meshd_ready(state_dir: Path) -> bool:
    try:
        port = int((state_dir / "meshd" / "debug.port").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def wait(condition: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Path]:
    state_dir = tmp_path / "cluster"
    try:
        kubelab(state_dir, "up", "--port", "0", "--hollow-nodes", "2", "--timeout", "120")
        yield state_dir
    finally:
        subprocess.run([*launcher.kubelab_command(), "down", "--state-dir", str(state_dir)], capture_output=True,
                       timeout=120, env=launcher.python_env(), check=False)


def test_up_returns_once_the_sidecar_injector_is_registered(cluster: Path) -> None:
    """A pod created right after ``kubelab up`` must not escape injection: up waits for meshd."""
    assert meshd_ready(cluster)
    kubectl = subprocess.run(["kubectl", "get", "mutatingwebhookconfiguration", "istio-sidecar-injector", "-o", "name"],
                             capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, "KUBECONFIG": str(cluster / "kubeconfig")})
    assert kubectl.stdout.strip() == "mutatingwebhookconfiguration.admissionregistration.k8s.io/istio-sidecar-injector"


def test_meshd_runs_supervised_and_is_restarted_after_kill_9(cluster: Path) -> None:
    status = supervision.wait_for(cluster, lambda s: s.components.get("meshd") is not None
                                  and s.components["meshd"].state is State.RUNNING, timeout=60, what="meshd running")
    wait(lambda: meshd_ready(cluster))
    listed = kubelab(cluster, "mesh", "proxy-status").stdout
    assert "No proxies are connected." in listed
    pid = status.components["meshd"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    after = supervision.wait_for(cluster, lambda s: s.components["meshd"].restarts >= 1
                                 and s.components["meshd"].state is State.RUNNING
                                 and s.components["meshd"].pid != pid, timeout=90, what="meshd restarted")
    assert after.components["meshd"].last_exit == "killed by SIGKILL"
    wait(lambda: meshd_ready(cluster))
    kubectl = subprocess.run(["kubectl", "get", "crd", "virtualservices.networking.istio.io", "-o", "name"],
                             capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, "KUBECONFIG": str(cluster / "kubeconfig")})
    assert kubectl.stdout.strip() == "customresourcedefinition.apiextensions.k8s.io/virtualservices.networking.istio.io"


def test_no_mesh_leaves_meshd_out(tmp_path: Path) -> None:
    state_dir = tmp_path / "plain"
    try:
        kubelab(state_dir, "up", "--port", "0", "--hollow-nodes", "1", "--no-mesh", "--timeout", "120")
        assert "meshd" not in supervision.read_components(state_dir)[1]
        assert launcher.read_process(state_dir, "meshd") is None
    finally:
        subprocess.run([*launcher.kubelab_command(), "down", "--state-dir", str(state_dir)], capture_output=True,
                       timeout=120, env=launcher.python_env(), check=False)
