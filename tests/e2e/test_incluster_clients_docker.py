"""In-cluster clients nobody here wrote, on real Docker: the official Python client and kopf.

An app image FROM ``kubelab/python:3.11`` carries ``kubernetes`` and ``kopf`` (installed on the
host with ``pip install --target`` at the versions of the test environment) and two programs:

* ``main.py`` calls ``kubernetes.config.load_incluster_config()`` and lists the pods of its
  namespace; its ServiceAccount is bound to the ``view`` ClusterRole. The test reads its logs;
* ``greeter.py`` (:mod:`tests.e2e.kopf_operators.greeter`) runs as a Deployment
  (``python3 -m kopf run --standalone --namespace NS``) with ``serviceAccountName: operator``,
  a Role for its custom resources and Events, and a ClusterRole to observe CRDs and namespaces
  as kopf does. The test creates a ``Greeting`` and waits for the operator's status, then checks
  the operator never met a Forbidden answer.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest

from kubelab.images import PYTHON, build_app_image, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster
from tests.e2e.kopf_operators import greeter

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

IMAGE = "kubelab/incluster-clients:1"
NS = "incluster"
GROUP, VERSION, PLURAL = greeter.GROUP, greeter.VERSION, greeter.PLURAL
DEADLINE = 180.0

T = TypeVar("T")

LISTER = """
from kubernetes import client, config
config.load_incluster_config()
namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
pods = client.CoreV1Api().list_namespaced_pod(namespace)
print("pods:", " ".join(sorted(p.metadata.name for p in pods.items)), flush=True)
"""

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"plural": PLURAL, "singular": "greeting", "kind": "Greeting"},
             "versions": [{"name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"name": {"type": "string"}}},
                               "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]},
}


def _rbac() -> list[dict[str, Any]]:
    """What the operator needs, from kopf's deployment RBAC: its resources (watch, patch for
    finalizers and annotations, ``/status``), Events, and cluster-wide observation of CRDs and
    namespaces."""
    rbac = "rbac.authorization.k8s.io/v1"
    ref = {"apiGroup": "rbac.authorization.k8s.io"}
    subject = [{"kind": "ServiceAccount", "name": "operator", "namespace": NS}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator", "namespace": NS}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "lister", "namespace": NS}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": "incluster-operator"},
         "rules": [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": "incluster-operator"},
         "roleRef": {**ref, "kind": "ClusterRole", "name": "incluster-operator"}, "subjects": subject},
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": "operator", "namespace": NS},
         "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["list", "watch", "patch"]},
                   {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
                   {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "operator", "namespace": NS},
         "roleRef": {**ref, "kind": "Role", "name": "operator"}, "subjects": subject},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "lister-view", "namespace": NS},
         "roleRef": {**ref, "kind": "ClusterRole", "name": "view"},
         "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": NS}]},
    ]


def _operator_deployment() -> dict[str, Any]:
    command = ["python3", "-m", "kopf", "run", "--standalone", "--namespace", NS, "/app/greeter.py"]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "operator", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "operator"}},
                 "template": {"metadata": {"labels": {"app": "operator"}},
                              "spec": {"serviceAccountName": "operator", "terminationGracePeriodSeconds": 2,
                                       "containers": [{"name": "operator", "image": IMAGE,
                                                       "command": command}]}}},
    }


def _wait(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def app_image(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> str:
    ensure_images(docker_client, ["busybox", "python"])
    source = tmp_path_factory.mktemp("incluster-app")
    (source / "main.py").write_text(LISTER)
    shutil.copyfile(Path(greeter.__file__), source / "greeter.py")
    pins = [f"{name}=={metadata.version(name)}" for name in ("kubernetes", "kopf")]
    started = time.monotonic()
    build_app_image(docker_client, IMAGE, source, base=PYTHON, requirements=pins)
    size = docker_client.images.get(IMAGE).attrs["Size"]
    print(f"{IMAGE}: built in {time.monotonic() - started:.1f}s, {size / 1e6:.0f} MB")
    return IMAGE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
            app_image: str) -> Iterator[DockerCluster]:
    with running_cluster(tmp_path_factory.mktemp("incluster-clients"), docker_client, "--nodes", "1") as c:
        c.kubectl("create", "namespace", NS)
        yield c


def _apply(cluster: DockerCluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def _finished_phase(cluster: DockerCluster, name: str) -> str | None:
    phase = str(cluster.json("get", "pod", "-n", NS, name).get("status", {}).get("phase", ""))
    return phase if phase in ("Succeeded", "Failed") else None


def test_official_client_lists_pods_with_load_incluster_config(cluster: DockerCluster) -> None:
    _apply(cluster, *_rbac())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lister", "namespace": NS},
           "spec": {"serviceAccountName": "lister", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "lister", "image": IMAGE}]}}
    _apply(cluster, pod)
    phase = _wait(lambda: _finished_phase(cluster, "lister"), "the lister pod to finish")
    logs = cluster.kubectl("logs", "-n", NS, "lister", check=False)
    assert phase == "Succeeded", f"{phase}: {logs.stdout}{logs.stderr}"
    [line] = [line for line in logs.stdout.splitlines() if line.startswith("pods:")]
    assert "lister" in line.split()[1:]


def _greeting_status(cluster: DockerCluster, name: str) -> dict[str, Any] | None:
    status = cluster.json("get", f"{PLURAL}.{GROUP}", "-n", NS, name).get("status") or {}
    return status if status.get("greeting") else None


def test_kopf_operator_runs_as_a_deployment_with_a_role(cluster: DockerCluster) -> None:
    _apply(cluster, CRD)
    cluster.kubectl("wait", "--for", "condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout", "60s")
    _apply(cluster, *_rbac(), _operator_deployment())
    cluster.kubectl("rollout", "status", "-n", NS, "deployment/operator", "--timeout", f"{DEADLINE:.0f}s",
                    timeout=DEADLINE + 30)
    greeting = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Greeting", "metadata": {"name": "hi", "namespace": NS},
                "spec": {"name": "kubelab"}}
    _apply(cluster, greeting)
    try:
        status = _wait(lambda: _greeting_status(cluster, "hi"), "the operator's status on the Greeting")
    finally:
        logs = cluster.kubectl("logs", "-n", NS, "deployment/operator", check=False).stdout
        print(logs)
    assert status["greeting"] == "hello, kubelab"
    [pod] = cluster.json("get", "pods", "-n", NS, "-l", "app=operator")["items"]
    assert status["handledBy"] == pod["metadata"]["name"]
    assert pod["spec"]["serviceAccountName"] == "operator"
    events = cluster.json("get", "events", "-n", NS)["items"]
    assert any(e.get("reason") == "Greeted" and e["involvedObject"]["name"] == "hi" for e in events), events
    assert "Forbidden" not in logs and "permissions" not in logs, logs
