"""Mesh CNI mode on real Docker pods (``kubelab up --mesh-cni``): no ``istio-init``, the kubelet programs the capture.

One two-node cluster whose meshd injects in CNI mode. Namespace ``cni`` holds an ``httpbin``-style
server under PeerAuthentication STRICT, a meshed client ``sleep`` and an unmeshed ``legacy`` pod.
What proves the capture is in place without any init container: the meshed client's plain HTTP
request leaves through its sidecar (outbound capture) and reaches the server's app with the
client's SPIFFE identity in ``X-Forwarded-Client-Cert`` (inbound capture and mTLS), while the
unmeshed pod is refused (inbound capture: without it the app's port would answer anyone); a Job's
very first request goes through the mesh (the app starts after its proxy is ready).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from kubelab.images import PYTHON
from tests.e2e.mesh_harness import (
    SERVER_PY,
    WAIT,
    MeshCluster,
    client_pod,
    mesh_cluster,
    namespace,
    python_deployment,
    service,
    service_account,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "cni"
FIRST_REQUEST_PY = r"""
import urllib.request
print(urllib.request.urlopen("http://httpbin:8000/", timeout=10).read().decode().strip())
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[MeshCluster]:
    with mesh_cluster(tmp_path_factory.mktemp("mesh-cni"), docker_client, up_args=("--mesh-cni",)) as m:
        m.apply(
            namespace(NS), service_account("sleep", NS),
            python_deployment("httpbin", NS, SERVER_PY, labels={"app": "httpbin"}, env={"VERSION": "httpbin"}),
            service("httpbin", NS, 8000, 8080),
            client_pod("sleep", NS, account="sleep"),
            client_pod("legacy", NS, injected=False),
            {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
             "metadata": {"name": "default", "namespace": NS}, "spec": {"mtls": {"mode": "STRICT"}}},
        )
        yield m


def _init_names(pod: dict[str, Any]) -> list[str]:
    return [c["name"] for c in pod["spec"].get("initContainers") or []]


def test_cni_mode_pods_have_no_istio_init_and_their_traffic_is_captured(mesh: MeshCluster) -> None:
    server = mesh.wait_ready(NS, "app=httpbin")[0]
    client = mesh.wait_ready(NS, "app=sleep")[0]
    mesh.wait_ready(NS, "app=legacy")
    for pod in (server, client):
        assert _init_names(pod) == ["istio-proxy"], _init_names(pod)
        annotations = pod["metadata"]["annotations"]
        assert annotations["sidecar.istio.io/interceptionMode"] == "REDIRECT"
        assert annotations["traffic.sidecar.istio.io/includeOutboundIPRanges"] == "*"
    name = server["metadata"]["name"]
    table = mesh.kubectl("get", "pod", name, "-n", NS).stdout
    assert re.search(rf"{name}\s+2/2\s+Running", table), table

    meshed = mesh.load("sleep", NS, host="httpbin", port=8000, path="/xfcc", count=10, conns=1)
    assert meshed["failures"] == 0 and meshed["codes"] == {"200": 10}, meshed
    (xfcc,) = meshed["bodies"]
    assert f"URI=spiffe://cluster.local/ns/{NS}/sa/sleep" in xfcc, xfcc

    def legacy_refused() -> bool:
        done = mesh.exec("legacy", NS, "python3", "-c", "import urllib.request as u; "
                         "print(u.urlopen('http://httpbin:8000/', timeout=5).read().decode())", check=False)
        return bool(done.returncode != 0)
    wait_for(legacy_refused, WAIT, "STRICT to refuse a pod without a sidecar")


def test_a_jobs_first_request_goes_through_the_mesh(mesh: MeshCluster) -> None:
    mesh.wait_ready(NS, "app=httpbin")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "first-request", "namespace": NS},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
               "name": "app", "image": PYTHON, "command": ["python3", "-c", FIRST_REQUEST_PY]}]}}}}
    mesh.apply(job)

    def finished() -> str | None:
        conditions = mesh.cluster.json("get", "job", "first-request", "-n", NS)["status"].get("conditions") or []
        return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"),
                    None)
    outcome = wait_for(finished, WAIT, "the Job to finish")
    assert outcome == "Complete", mesh.kubectl("describe", "job", "first-request", "-n", NS).stdout
    pod = mesh.pods(NS, "job-name=first-request")[0]
    assert _init_names(pod) == ["istio-proxy"]
    logs = mesh.kubectl("logs", pod["metadata"]["name"], "-n", NS, "-c", "app").stdout
    assert logs.strip() == "httpbin", logs
