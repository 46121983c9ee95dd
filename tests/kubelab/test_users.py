"""``kubelab user add`` end to end: two students, each with a namespace, a kubeconfig and the
``edit`` role there; real kubectl shows what each may do and refuses the other's namespace."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubelab.testing import RunningApiServer, kubectl, start_apiserver
from kubelab.users import UserError, add_user

pytestmark = [pytest.mark.kubectl]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    with start_apiserver(tmp_path_factory.mktemp("users")) as server:
        yield server


def kubelab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelab", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def until_allowed(kubeconfig: Path, *can_i: str, timeout: float = 60) -> None:
    """The new binding reaches the authorizer through the watch cache: wait for it."""
    deadline = time.monotonic() + timeout
    while kubectl("auth", "can-i", *can_i, kubeconfig=kubeconfig, check=False).stdout.strip() != "yes":
        assert time.monotonic() < deadline, f"never allowed: {can_i}"
        time.sleep(0.2)


def test_two_students_each_in_their_own_namespace(cluster: RunningApiServer) -> None:
    state = cluster.state_dir
    for name in ("alice", "bob"):
        done = kubelab("user", "add", name, "--state-dir", str(state))
        assert done.returncode == 0, done.stderr
        assert f"export KUBECONFIG={state / 'users' / f'{name}.kubeconfig'}" in done.stdout
    alice, bob = state / "users" / "alice.kubeconfig", state / "users" / "bob.kubeconfig"
    assert stat.S_IMODE(alice.stat().st_mode) == 0o600
    assert yaml.safe_load(alice.read_text())["contexts"][0]["context"]["namespace"] == "alice"
    until_allowed(alice, "create", "deployments")
    until_allowed(bob, "create", "deployments")
    kubectl("create", "configmap", "notes", "--from-literal=a=1", kubeconfig=alice)
    assert kubectl("get", "configmap", "notes", "-o", "name", kubeconfig=alice).stdout.strip() == "configmap/notes"
    denied = kubectl("get", "configmaps", "-n", "alice", kubeconfig=bob, check=False)
    assert denied.returncode == 1
    assert ('Error from server (Forbidden): configmaps is forbidden: User "bob" cannot list resource "configmaps" '
            'in API group "" in the namespace "alice"') in denied.stderr
    denied = kubectl("get", "configmap", "notes", "-n", "alice", kubeconfig=bob, check=False)
    assert 'configmaps "notes" is forbidden: User "bob" cannot get resource "configmaps"' in denied.stderr
    assert kubectl("auth", "can-i", "create", "roles", kubeconfig=alice, check=False).stdout.strip() == "no"
    listed = kubectl("auth", "can-i", "--list", kubeconfig=alice).stdout
    rows = {line.split()[0]: line for line in listed.splitlines()[1:] if line and not line.startswith(" ")}
    assert "create" in rows["configmaps"] and "create" in rows["deployments.apps"]
    assert "rolebindings.rbac.authorization.k8s.io" not in rows
    whoami = kubectl("auth", "whoami", "-o", "yaml", kubeconfig=alice).stdout
    assert yaml.safe_load(whoami)["status"]["userInfo"]["groups"] == ["kubelab:students", "system:authenticated"]
    assert kubectl("get", "namespaces", kubeconfig=alice, check=False).returncode == 1


def test_another_role_and_namespace(cluster: RunningApiServer) -> None:
    added = add_user(cluster.state_dir, "carol", namespace="shared-lab", cluster_role="view")
    assert added.kubeconfig == cluster.state_dir / "users" / "carol.kubeconfig"
    until_allowed(added.kubeconfig, "list", "pods")
    assert kubectl("auth", "can-i", "create", "pods", kubeconfig=added.kubeconfig,
                   check=False).stdout.strip() == "no"
    again = add_user(cluster.state_dir, "carol", namespace="shared-lab", cluster_role="view")
    assert again.namespace == "shared-lab", "adding a user twice re-issues the kubeconfig"


@pytest.mark.parametrize(("name", "namespace"), [
    pytest.param("Alice", "", id="uppercase"), pytest.param("a_b", "", id="underscore"),
    pytest.param("ok", "bad/ns", id="namespace"),
])
def test_bad_names_are_refused(cluster: RunningApiServer, name: str, namespace: str) -> None:
    with pytest.raises(UserError, match="must be a DNS label"):
        add_user(cluster.state_dir, name, namespace=namespace)


def test_unknown_cluster_role_is_an_error(cluster: RunningApiServer) -> None:
    done = kubelab("user", "add", "dave", "--clusterrole", "no-such-role", "--state-dir", str(cluster.state_dir))
    assert done.returncode == 1
    assert 'clusterroles.rbac.authorization.k8s.io "no-such-role" not found' in done.stderr
