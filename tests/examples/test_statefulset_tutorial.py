"""The StatefulSet basics tutorial (``examples/tutorials/statefulset``) on real Docker containers:
ordered creation, one bound claim per pod, per-pod DNS names through the headless Service, pages
written into the volumes surviving the pods' deletion, scale-down keeping the claims."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]
LAB = Path(__file__).resolve().parents[2] / "examples" / "tutorials" / "statefulset"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox", "nginx"])
    with running_cluster(tmp_path_factory.mktemp("sts-lab"), docker_client, "--nodes", "2") as c:
        yield c


def _pods(cluster: DockerCluster) -> dict[str, dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "pods", "-l", "app=nginx", "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p for p in items}


def _ready_since(pod: dict[str, Any]) -> str:
    return str(next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready"))


def test_tutorial(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", str(LAB / "web.yaml"))
    cluster.kubectl("rollout", "status", "sts/web", "--timeout=120s", timeout=130)
    pods = _pods(cluster)
    assert set(pods) == {"web-0", "web-1"}
    assert pods["web-1"]["metadata"]["creationTimestamp"] >= _ready_since(pods["web-0"])
    claims = json.loads(cluster.kubectl("get", "pvc", "-o", "json").stdout)["items"]
    assert {(c["metadata"]["name"], c["status"].get("phase")) for c in claims} == {
        ("www-web-0", "Bound"), ("www-web-1", "Bound")}

    for i in (0, 1):
        assert cluster.kubectl("exec", f"web-{i}", "--", "sh", "-c", "hostname").stdout.strip() == f"web-{i}"
        cluster.kubectl("exec", f"web-{i}", "--", "sh", "-c",
                        'echo "$(hostname)" > /usr/share/nginx/html/index.html')
    cluster.kubectl("run", "client", f"--image={BUSYBOX}", "--restart=Never", "--", "sleep", "3600")
    cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s", timeout=70)
    for i in (0, 1):
        page = cluster.kubectl("exec", "client", "--", "wget", "-qO-", f"http://web-{i}.nginx").stdout
        assert page.strip() == f"web-{i}"

    cluster.kubectl("delete", "pod", "-l", "app=nginx")
    cluster.kubectl("rollout", "status", "sts/web", "--timeout=120s", timeout=130)

    def pages() -> list[str]:
        return [cluster.kubectl("exec", f"web-{i}", "--", "cat", "/usr/share/nginx/html/index.html").stdout.strip()
                for i in (0, 1)]
    assert pages() == ["web-0", "web-1"], "the volumes kept their pages across the pods' deletion"

    cluster.kubectl("scale", "sts", "web", "--replicas=1")
    deadline = time.monotonic() + 60
    while set(_pods(cluster)) != {"web-0"}:  # web-1 leaves after its preStop pause
        assert time.monotonic() < deadline, "web-1 was not removed"
        time.sleep(0.5)
    names = {c["metadata"]["name"] for c in json.loads(cluster.kubectl("get", "pvc", "-o", "json").stdout)["items"]}
    assert names == {"www-web-0", "www-web-1"}, "scale-down keeps the claims (Retain)"
