"""Real clients against a kubelab apiserver process: the compatibility details they depend on.

* The official ``kubernetes`` Python client: ``VersionApi().get_code()`` (it asks for
  ``/version/``), a delete that answers a ``V1Status`` (or the object, for pods), lists with a
  non-positive ``limit`` and with empty field selector terms.
* ``kr8s``: it starts (discovery through ``/api/`` and ``/apis/``), lists, creates and deletes.
* Every pinned kubectl (1.27 … 1.33) still prints ``<kind> "<name>" deleted`` whether the
  answer is a Status (configmaps, deployments) or the object (pods).

Runs on both stores (``module_cluster`` from ``tests/e2e/conftest.py``); each test names its
objects with a fresh token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kr8s
import pytest
from kr8s.objects import ConfigMap, Pod

from kubelab.testing import RunningApiServer, kubectl, kubectl_versions
from tests.e2e.pyclient import NS, client, new_client

WAIT_SECONDS = 60.0


@pytest.fixture
def api_client(module_cluster: RunningApiServer) -> Iterator[Any]:
    api = new_client(module_cluster)
    yield api
    api.close()


@pytest.fixture
def token() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def pod_body(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def deployment(name: str) -> Any:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))))


# ---- the official Python client --------------------------------------------------------------
def test_python_client_version_get_code(api_client: Any) -> None:
    info = client.VersionApi(api_client).get_code()
    assert info.git_version.startswith("v1.") and info.major == "1"


def as_status(api_client: Any, answer: Any) -> Any:
    """The delete answer read as the client's ``V1Status`` model (strict pydantic)."""
    return client.V1Status.from_dict(api_client.sanitize_for_serialization(answer))


def test_python_client_delete_configmap_answers_status(api_client: Any, token: str) -> None:
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=token)))
    status = as_status(api_client, core.delete_namespaced_config_map(token, NS))
    assert status.kind == "Status" and status.status == "Success"
    assert status.details.name == token and status.details.kind == "configmaps"
    assert status.details.uid == created.metadata.uid and status.details.group is None


def test_python_client_delete_deployment_answers_status(api_client: Any, token: str) -> None:
    apps = client.AppsV1Api(api_client)
    created = apps.create_namespaced_deployment(NS, deployment(token))
    status = as_status(api_client, apps.delete_namespaced_deployment(token, NS))
    assert status.status == "Success" and status.details.group == "apps"
    assert status.details.kind == "deployments" and status.details.uid == created.metadata.uid


def test_python_client_delete_pod_answers_the_pod(api_client: Any, token: str) -> None:
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_pod(NS, pod_body(token))
    deleted = core.delete_namespaced_pod(token, NS)
    assert isinstance(deleted, client.V1Pod) and deleted.metadata.uid == created.metadata.uid


def test_python_client_lists_with_compat_parameters(api_client: Any, token: str) -> None:
    core = client.CoreV1Api(api_client)
    for name in (f"{token}-a", f"{token}-b"):
        core.create_namespaced_config_map(NS, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"run": token})))
    listed = core.list_namespaced_config_map(NS, label_selector=f"run={token}", limit=-5)
    assert sorted(i.metadata.name for i in listed.items) == [f"{token}-a", f"{token}-b"]
    listed = core.list_namespaced_config_map(NS, field_selector=f"metadata.name={token}-a,")
    assert [i.metadata.name for i in listed.items] == [f"{token}-a"]


# ---- kr8s ------------------------------------------------------------------------------------
def test_kr8s_starts_lists_creates_and_deletes(module_cluster: RunningApiServer, token: str) -> None:
    api: Any = kr8s.api(kubeconfig=str(module_cluster.kubeconfig))  # its get() may yield dicts (raw)
    assert api.version()["gitVersion"].startswith("v1.")
    pod = Pod(pod_body(token), api=api)
    pod.create()
    cm = ConfigMap({"metadata": {"name": token, "namespace": NS}, "data": {"k": "v"}}, api=api)
    cm.create()
    assert token in [p.name for p in api.get("pods", namespace=NS)]
    assert token in [p.name for p in api.get("pods", namespace=kr8s.ALL)]
    assert [c.name for c in api.get("configmaps", token, namespace=NS)] == [token]
    cm.delete()
    pod.delete()
    wait_until(lambda: not cm.exists() and not pod.exists(), "kr8s to see the objects gone")


# ---- kubectl, every pinned version ---------------------------------------------------------------
@pytest.mark.kubectl
@pytest.mark.parametrize("version", kubectl_versions())
def test_kubectl_delete_prints_deleted(module_cluster: RunningApiServer, version: str, token: str) -> None:
    def run(*args: str) -> str:
        return kubectl(*args, "-n", NS, kubeconfig=module_cluster.kubeconfig, version=version, timeout=60).stdout

    run("create", "configmap", token)
    run("create", "deployment", token, "--image=busybox")
    run("run", token, "--image=busybox")
    out = run("delete", f"configmap/{token}", f"deployment/{token}", f"pod/{token}").splitlines()
    assert out == [f'configmap "{token}" deleted', f'deployment.apps "{token}" deleted', f'pod "{token}" deleted']
    missing = kubectl("get", "configmap", token, "-n", NS, kubeconfig=module_cluster.kubeconfig, version=version,
                      check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr
