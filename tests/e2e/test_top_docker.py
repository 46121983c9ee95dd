"""``kubectl top`` on a Docker cluster (``kubelab up --nodes 1``): real cgroup numbers.

A pod that burns a core shows a CPU use in the hundreds of milli-cores, an idle one a few; the node
is listed with its usage. The apiserver scrapes the kubelet every 15 s, so the first numbers take
up to half a minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

PODS = f"""
apiVersion: v1
kind: Pod
metadata:
  name: burner
  labels: {{app: burner}}
spec:
  containers:
  - name: loop
    image: {BUSYBOX}
    command: ["sh", "-c", "while :; do :; done"]
    resources: {{requests: {{cpu: 100m}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: idle
  labels: {{app: idle}}
spec:
  containers:
  - name: sleep
    image: {BUSYBOX}
    command: ["sleep", "3600"]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(Path(tmp_path_factory.mktemp("top")), docker_client, "--nodes", "1") as c:
        yield c


def milli(cpu: str) -> int:
    return int(cpu.removesuffix("m")) if cpu.endswith("m") else int(cpu) * 1000


def test_kubectl_top_reads_cgroups(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=PODS)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/burner", "pod/idle", "--timeout=120s")
    deadline = time.monotonic() + 120
    rows: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        result = cluster.kubectl("top", "pods", "--containers", check=False)
        rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line.strip()}
        if result.returncode == 0 and "burner" in rows and "idle" in rows and milli(rows["burner"][2]) >= 200:
            break
        time.sleep(2)
    assert "burner" in rows and "idle" in rows, rows
    assert rows["burner"][1] == "loop" and milli(rows["burner"][2]) >= 200, rows
    assert milli(rows["idle"][2]) < 100, rows
    assert rows["idle"][3].endswith("Mi"), rows
    nodes = cluster.kubectl("top", "nodes").stdout.splitlines()
    assert len(nodes) == 2 and milli(nodes[1].split()[1]) >= 200, nodes
