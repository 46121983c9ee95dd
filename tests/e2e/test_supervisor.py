"""``kubelab up`` supervises what it starts: a whole hollow-node cluster on both stores.

Each component (etcd too, with ``--store etcd``) is killed with SIGKILL in turn; the supervisor
must start it again (restart count + 1, last exit ``killed by SIGKILL``) and the cluster must
answer again (``/readyz``, every node Ready) without the test restarting anything. Then the
supervisor itself is killed: ``kubelab up`` restores it without touching a running component,
``kubelab status`` shows the table, and ``kubelab down`` leaves no process behind.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from kubelab import launcher, supervision, testing
from kubelab.supervision import State, SupervisorStatus

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]

NODES = 2


def kubelab(state_dir: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*launcher.kubelab_command(), *args, "--state-dir", str(state_dir)],
                            capture_output=True, text=True, timeout=timeout, env=launcher.python_env(), check=False)
    assert result.returncode == 0, f"kubelab {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def up(state_dir: Path, store: str) -> subprocess.CompletedProcess[str]:
    return kubelab(state_dir, "up", "--port", "0", "--store", store, "--hollow-nodes", str(NODES), "--timeout", "120")


def cluster_answers(state_dir: Path) -> bool:
    """The apiserver answers and lists every hollow node Ready."""
    url, context = launcher.apiserver_url(state_dir), launcher.apiserver_ssl_context(state_dir)
    if url is None or context is None:
        return False
    code, body = launcher.get_json(url, "/api/v1/nodes", context)
    if code != 200 or not isinstance(body, dict):
        return False
    return [row[1] for row in launcher.node_rows(body.get("items") or [])] == ["Ready"] * NODES


def leases_renewed_since(state_dir: Path, since: float) -> bool:
    """Every hollow node's Lease was renewed after ``since`` (wall clock): its kubelet is back."""
    url, context = launcher.apiserver_url(state_dir), launcher.apiserver_ssl_context(state_dir)
    if url is None or context is None:
        return False
    code, body = launcher.get_json(url, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", context)
    if code != 200 or not isinstance(body, dict):
        return False
    renewed = [datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00")).timestamp()
               for lease in body.get("items") or [] if lease["metadata"]["name"].startswith("hollow-node-")]
    return len(renewed) == NODES and min(renewed) > since


def wait_for(predicate: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("etcd", id="etcd", marks=pytest.mark.etcd)])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    store: str = request.param
    if store == "etcd" and not Path("/usr/bin/etcd").exists():
        pytest.fail("etcd is not installed (/usr/bin/etcd)")
    state_dir = tmp_path / "state"
    up(state_dir, store)
    try:
        yield state_dir, store
    finally:
        subprocess.run([*launcher.kubelab_command(), "down", "--state-dir", str(state_dir)],
                       capture_output=True, timeout=120, env=launcher.python_env(), check=False)


def test_every_killed_component_comes_back_and_down_leaves_nothing(cluster: tuple[Path, str]) -> None:
    state_dir, store = cluster
    components = ["apiserver", "controller-manager", "kubelet-hollow", "meshd", "scheduler"]
    if store == "etcd":
        components.append("etcd")
    status = supervision.read_status(state_dir)
    assert status is not None and sorted(status.components) == sorted(components)
    assert all(c.state is State.RUNNING and c.child for c in status.components.values())

    for name in components:
        before = supervision.read_status(state_dir)
        assert before is not None
        old = before.components[name]
        assert old.pid is not None
        killed, killed_at = time.monotonic(), time.time()
        os.kill(old.pid, signal.SIGKILL)

        def restarted(status: SupervisorStatus, name: str = name, restarts: int = old.restarts) -> bool:
            component = status.components[name]
            return component.restarts == restarts + 1 and component.state is State.RUNNING

        component = supervision.wait_for(state_dir, restarted, timeout=60, what=f"{name} restarted").components[name]
        back = time.monotonic() - killed
        assert component.last_exit == "killed by SIGKILL" and component.pid != old.pid
        answering = wait_for(lambda: cluster_answers(state_dir), 90, f"the cluster to answer after {name} came back")
        if name == "kubelet-hollow":
            wait_for(functools.partial(leases_renewed_since, state_dir, killed_at), 60,
                     "the restarted kubelet's lease renewals")
        print(f"{store}: {name} running again after {back:.1f} s, cluster answering {answering:.1f} s later")

    # The supervisor dies; `kubelab up` restores it and it adopts every component as it runs.
    supervisor = launcher.read_process(state_dir, supervision.SUPERVISOR)
    assert supervisor is not None
    pids = {p.name: p.pid for p in launcher.list_processes(state_dir) if p.name != supervision.SUPERVISOR}
    os.kill(supervisor.pid, signal.SIGKILL)
    wait_for(lambda: not launcher.is_alive(supervisor.pid), 10, "the supervisor to die")
    out = up(state_dir, store).stdout
    assert "started supervisor" in out and "started apiserver" not in out
    assert {p.name: p.pid for p in launcher.list_processes(state_dir) if p.name != supervision.SUPERVISOR} == pids
    restored = supervision.read_status(state_dir)
    assert restored is not None and restored.pid != supervisor.pid
    assert {name: c.pid for name, c in restored.components.items()} == pids
    assert all(c.restarts == 1 for c in restored.components.values())

    # Every restarted component does its work: a Deployment is created, scheduled and run.
    testing.kubectl("create", "deployment", "web", "--image=kubelab/busybox:1.35", "--replicas=2",
                    kubeconfig=state_dir / "kubeconfig")
    testing.kubectl("rollout", "status", "deployment/web", "--timeout=120s", kubeconfig=state_dir / "kubeconfig",
                    timeout=150)

    table = kubelab(state_dir, "status").stdout
    assert re.search(r"^COMPONENT +STATE +PID +UPTIME +RESTARTS +LAST EXIT$", table, re.MULTILINE), table
    for name, pid in pids.items():
        row = rf"^{name} +running +{pid} +\S+ +1 \(\S+ ago\) +killed by SIGKILL$"
        assert re.search(row, table, re.MULTILINE), table

    every = [*pids.values(), restored.pid]
    out = kubelab(state_dir, "down").stdout
    assert out.splitlines()[0].startswith("stopped supervisor")
    assert launcher.list_processes(state_dir) == []
    assert [pid for pid in every if launcher.is_alive(pid)] == []
