"""The whole-cluster harness: ``kubelab_cluster``, ``kubelab_namespace``, reuse and the failure dump.

The plugin is exercised as its users see it, in inner pytest runs (``pytester``, each in a
subprocess). The inner runs reuse this module's hollow cluster through ``--kubelab-kubeconfig``
(which also tests the reuse option), except the one that checks that ``kubelab_cluster`` starts
and stops a cluster of its own.
"""

from __future__ import annotations

import json
import re

import pytest

from kubelab import launcher
from kubelab.testing_cluster import NamespaceNotDeletedError, RunningCluster, namespace_name

pytestmark = [pytest.mark.kubectl, pytest.mark.slow]


@pytest.mark.parametrize("hint", [
    pytest.param("test_one", id="plain"),
    pytest.param("test_x[sqlite-Case/1]", id="parametrized"),
    pytest.param("t" * 200, id="long"),
    pytest.param("___", id="nothing-usable"),
])
def test_namespace_names_are_fresh_dns_labels(hint: str) -> None:
    names = {namespace_name(hint) for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
        assert name.startswith("kt-")


def status_of(cluster: RunningCluster, path: str) -> int:
    return cluster.request("GET", path)[0]


def test_namespace_deletion_waits_for_content_and_finalizers(kubelab_cluster: RunningCluster) -> None:
    cluster = kubelab_cluster
    ns = cluster.create_namespace("finalizers")
    cluster.kubectl("run", "web", "--image=kubelab/nginx:1.22", "-n", ns)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/web", "-n", ns, "--timeout=90s", timeout=120)
    held = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    assert cluster.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=held)[0] == 201

    with pytest.raises(NamespaceNotDeletedError, match="Terminating"):
        cluster.delete_namespace(ns, timeout=5)
    assert status_of(cluster, f"/api/v1/namespaces/{ns}/configmaps/held") == 200, "held by its finalizer"
    cluster.kubectl("patch", "configmap", "held", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    cluster.delete_namespace(ns, timeout=120)
    assert status_of(cluster, f"/api/v1/namespaces/{ns}/pods/web") == 404

    again = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    assert cluster.request("POST", "/api/v1/namespaces", body=again)[0] == 201, "the name is free again"
    cluster.delete_namespace(ns)


ISOLATION = """
import pathlib

RECORD = pathlib.Path(__file__).parent / "namespaces.txt"


def make(cluster, ns, who):
    cluster.kubectl("create", "configmap", "same-name", "-n", ns, f"--from-literal=who={who}")
    cluster.kubectl("run", "web", "--image=kubelab/nginx:1.22", "-n", ns)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/web", "-n", ns, "--timeout=90s", timeout=120)
    with RECORD.open("a") as out:
        out.write(ns + "\\n")


def test_one(kubelab_cluster, kubelab_namespace):
    make(kubelab_cluster, kubelab_namespace, "one")


def test_two(kubelab_cluster, kubelab_namespace):
    make(kubelab_cluster, kubelab_namespace, "two")
    api = kubelab_cluster.api_client()
    from kubernetes import client
    names = [cm.metadata.name for cm in client.CoreV1Api(api).list_namespaced_config_map(kubelab_namespace).items]
    assert "same-name" in names
    api.close()
"""


def test_each_test_gets_its_own_namespace_deleted_after_it(
        pytester: pytest.Pytester, kubelab_cluster: RunningCluster) -> None:
    pytester.makepyfile(test_isolation=ISOLATION)
    result = pytester.runpytest_subprocess(
        "-p", "kubelab.pytest_plugin", f"--kubelab-kubeconfig={kubelab_cluster.kubeconfig}", timeout=600)
    result.assert_outcomes(passed=2)
    names = (pytester.path / "namespaces.txt").read_text().split()
    assert len(set(names)) == 2, names
    for name in names:
        assert name.startswith("kt-test-")
        assert status_of(kubelab_cluster, f"/api/v1/namespaces/{name}") == 404, f"{name} was deleted and gone"
    assert kubelab_cluster.request("GET", "/readyz", accept="*/*")[0] == 200, "a reused cluster keeps running"


DUMP = """
def test_passes(kubelab_namespace):
    pass


def test_fails(kubelab_cluster, kubelab_namespace):
    ns = kubelab_namespace
    kubelab_cluster.kubectl("run", "crasher", "--image=kubelab/crash:1", "--restart=Never", "-n", ns)
    kubelab_cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Failed", "pod/crasher", "-n", ns,
                            "--timeout=90s", timeout=120)
    assert False, "failed on purpose"


def test_apiserver_fails(kubelab_apiserver):
    assert False, "failed on purpose"
"""


def test_a_failed_test_reports_its_namespace_state_and_apiserver_log(
        pytester: pytest.Pytester, kubelab_cluster: RunningCluster) -> None:
    pytester.makepyfile(test_dump=DUMP)
    result = pytester.runpytest_subprocess(
        "-p", "kubelab.pytest_plugin", f"--kubelab-kubeconfig={kubelab_cluster.kubeconfig}", timeout=600)
    result.assert_outcomes(passed=1, failed=2)
    output = result.stdout.str()
    assert output.count("kubelab namespace kt-") == 1, "only the failed test gets a dump"
    dump = output.split("kubelab namespace kt-test-fails-", 1)[1]
    assert "=== events in kt-test-fails-" in dump
    assert re.search(r"Normal Scheduled pod/crasher", dump), dump
    assert "pod/crasher phase=Failed node=hollow-node-" in dump
    assert "container crasher ready=False restarts=0 state=terminated Error exitCode=1" in dump
    assert "=== logs of crasher/crasher, last 30 lines" in dump
    assert "exited with code 1" in dump
    assert "kubelab apiserver log" in output and "apiserver.log" in output


STARTS_ITS_OWN = """
import json
import pathlib

from kubelab import launcher
from kubernetes import client


def test_cluster(kubelab_cluster):
    assert kubelab_cluster.owned
    api = kubelab_cluster.api_client()
    nodes = client.CoreV1Api(api).list_node().items
    api.close()
    ready = [n.metadata.name for n in nodes
             if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
    assert sorted(ready) == ["hollow-node-1", "hollow-node-2"]
    assert "hollow-node-1" in kubelab_cluster.kubectl("get", "nodes").stdout
    processes = [[p.name, p.pid, p.start_time] for p in launcher.list_processes(kubelab_cluster.state_dir)]
    (pathlib.Path(__file__).parent / "processes.json").write_text(json.dumps(processes))
"""


def test_kubelab_cluster_starts_hollow_nodes_and_stops_them_after_the_session(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBELAB_KUBECONFIG", raising=False)
    pytester.makepyfile(test_own=STARTS_ITS_OWN)
    result = pytester.runpytest_subprocess("-p", "kubelab.pytest_plugin", timeout=600)
    result.assert_outcomes(passed=1)
    processes = json.loads((pytester.path / "processes.json").read_text())
    names = {name for name, _, _ in processes}
    assert {"apiserver", "scheduler", "controller-manager"} <= names, names
    assert not [name for name, pid, start in processes if launcher.is_alive(pid, start)], "all stopped"
