"""In-cluster API access on real Docker: a pod from ``kubelab/python:3.11`` reads its mounted
service-account token, ``ca.crt`` and namespace, finds the apiserver through
``KUBERNETES_SERVICE_HOST/PORT`` (the ``kubernetes`` Service's ClusterIP, DNAT-ed to the host's
address on the pod network) and lists its namespace's pods over verified TLS — what the official
client's ``config.load_incluster_config()`` does (plain urllib here: the image has no client)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import docker
import pytest

from kubelab.images import PYTHON, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

SCRIPT = """
import json, os, ssl, urllib.request
d = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
token, ns = open(d + "/token").read(), open(d + "/namespace").read()
ctx = ssl.create_default_context(cafile=d + "/ca.crt")
def get(path):
    req = urllib.request.Request(f"https://{host}:{port}{path}", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return json.load(r)
pods = [p["metadata"]["name"] for p in get(f"/api/v1/namespaces/{ns}/pods")["items"]]
print(json.dumps({"host": host, "ns": ns, "version": get("/version")["gitVersion"], "pods": pods}), flush=True)
"""

POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "incluster", "namespace": "default"},
    "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
             "containers": [{"name": "c", "image": PYTHON, "command": ["python3", "-c", SCRIPT]}]},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox", "python"])
    with running_cluster(tmp_path_factory.mktemp("incluster"), docker_client, "--nodes", "1") as c:
        yield c


def _wait_phase(cluster: DockerCluster, name: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = cluster.json("get", "pod", name)["status"].get("phase", "")
        if phase in ("Succeeded", "Failed"):
            return phase
        time.sleep(1)
    return phase


def test_pod_reaches_the_apiserver_with_its_token(cluster: DockerCluster) -> None:
    cluster.kubectl("create", "rolebinding", "default-view", "--clusterrole", "view",
                    "--serviceaccount", "default:default")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(POD))
    pod = cluster.json("get", "pod", "incluster")
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
    phase = _wait_phase(cluster, "incluster")
    logs = cluster.kubectl("logs", "incluster", check=False)
    assert phase == "Succeeded", f"{phase}: {logs.stdout}{logs.stderr}"
    answer = json.loads(logs.stdout.strip().splitlines()[-1])
    service = cluster.json("get", "service", "kubernetes")
    assert answer["host"] == service["spec"]["clusterIP"] and answer["ns"] == "default"
    assert "incluster" in answer["pods"] and answer["version"].startswith("v1.")
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3607
