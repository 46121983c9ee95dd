"""RBAC with the real kubectl, every pinned version (1.27 … 1.33) on SQLite and etcd:
``create role``/``rolebinding``/``clusterrole``/``clusterrolebinding`` (1.32+ send protobuf),
``auth can-i`` (``--as``, ``--list``), Forbidden messages, and escalation refused in Kubernetes'
words."""

from __future__ import annotations

import subprocess
import time

import pytest

from kubelab.testing import RunningApiServer, kubectl, kubectl_versions

pytestmark = pytest.mark.kubectl

VERSIONS = [pytest.param(v, id=v) for v in kubectl_versions()] + [pytest.param(None, id="kubectl")]


def suffix(version: str | None) -> str:
    return (version or "default").replace(".", "-")


def can_i(server: RunningApiServer, version: str | None, *args: str) -> str:
    done = kubectl("auth", "can-i", *args, kubeconfig=server.kubeconfig, version=version, check=False)
    return done.stdout.strip()


def wait_answer(server: RunningApiServer, version: str | None, want: str, *args: str, timeout: float = 60) -> None:
    """A new binding reaches the authorizer through the watch cache: wait for the answer to change."""
    deadline = time.monotonic() + timeout
    while (got := can_i(server, version, *args)) != want:
        assert time.monotonic() < deadline, f"can-i {args}: {got!r}, want {want!r}"
        time.sleep(0.2)


@pytest.mark.parametrize("version", VERSIONS)
def test_roles_bindings_and_can_i(module_cluster: RunningApiServer, version: str | None) -> None:
    server, s = module_cluster, suffix(version)
    ns, user = f"rbac-{s}", f"user-{s}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=server.kubeconfig, version=version)

    run("create", "namespace", ns)
    assert can_i(server, version, "list", "pods", "-n", ns, "--as", user) == "no"
    denied = kubectl("get", "pods", "-n", ns, "--as", user, kubeconfig=server.kubeconfig, version=version,
                     check=False)
    assert denied.returncode == 1
    assert (f'Error from server (Forbidden): pods is forbidden: User "{user}" cannot list resource "pods" in API '
            f'group "" in the namespace "{ns}"') in denied.stderr
    assert run("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n",
               ns).stdout.startswith("role.rbac.authorization.k8s.io/pod-reader created")
    run("create", "rolebinding", "reads", "--role=pod-reader", f"--user={user}", "-n", ns)
    wait_answer(server, version, "yes", "list", "pods", "-n", ns, "--as", user)
    assert can_i(server, version, "delete", "pods", "-n", ns, "--as", user) == "no"
    assert can_i(server, version, "list", "pods", "-n", "default", "--as", user) == "no"
    assert can_i(server, version, "get", "pods", "--subresource=log", "-n", ns, "--as", user) == "no"
    listed = run("auth", "can-i", "--list", "-n", ns, "--as", user).stdout.splitlines()
    assert listed[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    pods_row = next(line for line in listed if line.startswith("pods "))
    assert pods_row.split()[-3:] == ["[get", "list", "watch]"]
    run("create", "clusterrole", f"node-viewer-{s}", "--verb=get,list", "--resource=nodes")
    run("create", "clusterrolebinding", f"node-viewer-{s}", f"--clusterrole=node-viewer-{s}", f"--user={user}")
    wait_answer(server, version, "yes", "list", "nodes", "--as", user)
    got = run("get", "rolebinding", "reads", "-n", ns, "-o", "jsonpath={.roleRef.kind}/{.roleRef.name}").stdout
    assert got == "Role/pod-reader"
    table = run("get", "rolebinding", "reads", "-n", ns, "-o", "wide").stdout.splitlines()
    assert table[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert table[1].split()[:2] == ["reads", "Role/pod-reader"] and table[1].split()[3] == user


@pytest.mark.parametrize("version", VERSIONS)
def test_escalation_is_refused(module_cluster: RunningApiServer, version: str | None) -> None:
    server, s = module_cluster, suffix(version)
    ns, user = f"esc-{s}", f"lead-{s}"
    kubectl("create", "namespace", ns, kubeconfig=server.kubeconfig, version=version)
    kubectl("create", "rolebinding", "lead-admin", "--clusterrole=admin", f"--user={user}", "-n", ns,
            kubeconfig=server.kubeconfig, version=version)
    wait_answer(server, version, "yes", "create", "roles", "-n", ns, "--as", user)
    ok = kubectl("create", "role", "cm", "--verb=get", "--resource=configmaps", "-n", ns, "--as", user,
                 kubeconfig=server.kubeconfig, version=version)
    assert "created" in ok.stdout
    refused = kubectl("create", "role", "nodes", "--verb=get", "--resource=nodes", "-n", ns, "--as", user,
                      kubeconfig=server.kubeconfig, version=version, check=False)
    assert refused.returncode == 1
    assert (f'Error from server (Forbidden): roles.rbac.authorization.k8s.io "nodes" is forbidden: user "{user}" '
            '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}') in refused.stderr
    refused = kubectl("create", "rolebinding", "me-admin", "--clusterrole=cluster-admin", f"--user={user}", "-n", ns,
                      "--as", user, kubeconfig=server.kubeconfig, version=version, check=False)
    assert refused.returncode == 1 and "is attempting to grant RBAC permissions not currently held" in refused.stderr
