"""The CronJob tutorial (``examples/tutorials/cronjob``) on real Docker containers, driven by the
real kubectl as its README says: the CronJob starts a Job within a minute, the Job completes, its
pod's log has the greeting, and deleting the CronJob deletes its Jobs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from kubelab.images import ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]
LAB = Path(__file__).resolve().parents[2] / "examples" / "tutorials" / "cronjob"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("cronjob-lab"), docker_client, "--nodes", "1") as c:
        yield c


def _jobs(cluster: DockerCluster) -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(cluster.kubectl("get", "jobs", "-o", "json").stdout)["items"]
    return items


def test_tutorial(cluster: DockerCluster) -> None:
    cluster.kubectl("create", "-f", str(LAB / "cronjob.yaml"))
    row = cluster.kubectl("get", "cronjob", "hello").stdout.splitlines()[1].split()
    assert row[:6] == ["hello", "*", "*", "*", "*", "*"] and row[6:8] == ["<none>", "False"]
    deadline = time.monotonic() + 150
    while not _jobs(cluster):
        assert time.monotonic() < deadline, "no job within two minutes"
        time.sleep(1)
    name = str(_jobs(cluster)[0]["metadata"]["name"])  # type: ignore[index]
    assert name.startswith("hello-") and name.removeprefix("hello-").isdigit()
    cluster.kubectl("wait", "--for=condition=complete", f"job/{name}", "--timeout=90s", timeout=100)
    pods = cluster.kubectl("get", "pods", f"--selector=job-name={name}",
                           "--output=jsonpath={.items[*].metadata.name}").stdout.split()
    assert "Hello from the Kubernetes cluster" in cluster.kubectl("logs", *pods).stdout
    assert cluster.kubectl("get", "cronjob", "hello", "-o", "jsonpath={.status.lastScheduleTime}").stdout
    cluster.kubectl("delete", "cronjob", "hello")
    deadline = time.monotonic() + 60
    while _jobs(cluster):
        assert time.monotonic() < deadline, "the CronJob's jobs were not deleted with it"
        time.sleep(1)
