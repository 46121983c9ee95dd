"""The classic lesson: read the cluster's state straight out of etcd with ``etcdctl``.

``kubelab up --store etcd --hollow-nodes 1`` runs the control plane over an etcd of its own (here
a private member, so that nothing else writes into it), with no key prefix, exactly as a
Kubernetes apiserver with its default ``--etcd-prefix=/registry``. After ``kubectl create
deployment web`` and ``kubectl expose``, ``etcdctl get --prefix --keys-only /registry/`` shows
the keys a Kubernetes cluster shows: ``/registry/deployments/default/web``,
``/registry/replicasets/default/web-<hash>``, ``/registry/pods/default/web-<hash>-<suffix>``,
``/registry/services/specs/default/web``, ``/registry/services/endpoints/default/web``,
``/registry/minions/<node>``; and ``etcdctl get`` of a key prints the object's JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelab.testing import kubectl
from tests.e2e.chaos_harness import wait_for
from tests.etcd_server import EtcdServer

pytestmark = [pytest.mark.etcd, pytest.mark.kubectl, pytest.mark.slow]

ETCDCTL = shutil.which("etcdctl")


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path / "etcd") as server:
        yield server


@pytest.fixture
def state_dir(tmp_path: Path, etcd: EtcdServer) -> Iterator[Path]:
    state = tmp_path / "state"
    up = [sys.executable, "-m", "kubelab", "up", "--state-dir", str(state), "--port", "0", "--store", "etcd",
          "--etcd-servers", etcd.client_url, "--hollow-nodes", "1"]
    try:
        done = subprocess.run(up, capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, f"kubelab up failed: {done.stderr}{done.stdout}"
        yield state
    finally:
        subprocess.run([sys.executable, "-m", "kubelab", "down", "--state-dir", str(state)],
                       capture_output=True, timeout=120, check=False)


def etcdctl(etcd: EtcdServer, *args: str) -> str:
    assert ETCDCTL is not None, "etcdctl is missing: scripts/setup installs Debian's etcd-client"
    done = subprocess.run([ETCDCTL, "--endpoints", etcd.client_url, *args], capture_output=True, text=True,
                          timeout=60, check=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    return done.stdout


def registry_keys(etcd: EtcdServer) -> list[str]:
    return [line for line in etcdctl(etcd, "get", "--prefix", "--keys-only", "/registry/").splitlines() if line]


def test_etcdctl_shows_kubernetes_keys(state_dir: Path, etcd: EtcdServer) -> None:
    kubeconfig = state_dir / "kubeconfig"
    kubectl("create", "deployment", "web", "--image=busybox", "--replicas=2", kubeconfig=kubeconfig)
    kubectl("expose", "deployment", "web", "--port=80", kubeconfig=kubeconfig)

    def pods_and_endpoints() -> bool:
        keys = registry_keys(etcd)
        pods = [k for k in keys if k.startswith("/registry/pods/default/web-")]
        return len(pods) == 2 and "/registry/services/endpoints/default/web" in keys

    wait_for(pods_and_endpoints, timeout=120, what="the Deployment's pods and the Service's endpoints in etcd")
    keys = registry_keys(etcd)
    for expected in ("/registry/deployments/default/web", "/registry/services/specs/default/web",
                     "/registry/services/endpoints/default/web", "/registry/namespaces/default",
                     "/registry/services/specs/default/kubernetes"):
        assert expected in keys, (expected, keys)
    assert any(k.startswith("/registry/replicasets/default/web-") for k in keys), keys
    assert any(k.startswith("/registry/minions/") for k in keys), keys
    assert any(k.startswith("/registry/leases/kube-node-lease/") for k in keys), keys
    # Nothing is left in kubelab's earlier layout (plural.group roots, or bare core plurals).
    assert not [k for k in keys if k.split("/")[2] in ("deployments.apps", "replicasets.apps", "endpoints",
                                                        "nodes", "leases.coordination.k8s.io")], keys
    assert not [k for k in keys if k.startswith("/registry/services/default/")], keys

    # The value is the object as stored (JSON here; Kubernetes stores protobuf).
    value = etcdctl(etcd, "get", "--print-value-only", "/registry/deployments/default/web")
    stored = json.loads(value)
    assert (stored["kind"], stored["metadata"]["name"], stored["spec"]["replicas"]) == ("Deployment", "web", 2)
