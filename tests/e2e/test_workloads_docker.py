"""Workloads on real Docker containers (``kubelab up --nodes 2``): a Job whose pods run to
completion, an Indexed Job that reads its index, and a StatefulSet whose pods answer on their
per-pod DNS names through the headless Service (``web-0.web.<ns>.svc.cluster.local``)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "workloads"
STS = f"""\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{port: 8080, name: http}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: {NS}}}
spec:
  serviceName: web
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html
          && exec httpd -f -p 8080 -h /www"]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: {BUSYBOX}, command: ["sleep", "3600"]}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: indexed, namespace: {NS}}}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - {{name: main, image: {BUSYBOX}, command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX"]}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("docker-workloads"), docker_client, "--nodes", "2") as c:
        c.kubectl("create", "namespace", NS)
        c.kubectl("apply", "-f", "-", input=STS)
        yield c


def test_job_runs_its_container_to_completion(cluster: DockerCluster) -> None:
    cluster.kubectl("-n", NS, "create", "job", "hello", f"--image={BUSYBOX}", "--", "echo", "hello from a job")
    cluster.kubectl("-n", NS, "wait", "--for=condition=complete", "job/hello", "--timeout=90s", timeout=100)
    assert cluster.kubectl("-n", NS, "logs", "job/hello").stdout.strip() == "hello from a job"


def test_indexed_job_pods_read_their_index(cluster: DockerCluster) -> None:
    cluster.kubectl("-n", NS, "wait", "--for=condition=complete", "job/indexed", "--timeout=90s", timeout=100)
    # One succeeded pod per index (a pod that failed on a loaded machine may have been replaced).
    names = cluster.kubectl("-n", NS, "get", "pods", "-l", "job-name=indexed", "--field-selector",
                            "status.phase=Succeeded", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    logs = sorted(cluster.kubectl("-n", NS, "logs", name).stdout.strip() for name in names)
    assert logs == ["index=0", "index=1", "index=2"]


@pytest.mark.parametrize("ordinal", [0, 1])
def test_statefulset_pods_answer_on_their_dns_names(cluster: DockerCluster, ordinal: int) -> None:
    cluster.kubectl("-n", NS, "rollout", "status", "sts/web", "--timeout=90s", timeout=100)
    cluster.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s", timeout=70)
    url = f"http://web-{ordinal}.web.{NS}.svc.cluster.local:8080/"
    out = cluster.kubectl("-n", NS, "exec", "client", "--", "wget", "-qO-", url).stdout
    assert out.strip() == f"hello-from-web-{ordinal}"
