"""kubelet.stats.DockerStats on real containers: a CPU-burning container shows up with its rate.

A busybox container labelled as a pod's app container of one node burns a core; the node's
summary (what ``/stats/summary`` serves and the apiserver's metrics API reads) reports it with a
CPU rate measured between two scrapes, a working set, and the pod's reference; a container of
another node and the pause container are left out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import docker
import pytest

from apiserver.metrics_scraper import parse_summary
from kubelab.images import BUSYBOX, ensure_images
from kubelet.stats import DockerStats
from tests.docker_daemon import TEST_LABEL

pytestmark = pytest.mark.docker


@pytest.fixture
def burning(docker_client: docker.DockerClient) -> Iterator[str]:
    ensure_images(docker_client, ["busybox"])
    cluster = f"stats-{uuid.uuid4().hex[:8]}"
    started = []
    for name, node, kind, command in (("app", "n1", "app", "while :; do :; done"),
                                      ("POD", "n1", "sandbox", "sleep 600"),
                                      ("app", "n2", "app", "sleep 600")):
        labels = {TEST_LABEL: "1", "kubelab.dev/cluster": cluster, "kubelab.dev/node": node, "kubelab.dev/kind": kind,
                  "io.kubernetes.pod.uid": f"uid-{node}", "io.kubernetes.pod.namespace": "default",
                  "io.kubernetes.pod.name": f"burn-{node}", "io.kubernetes.container.name": name}
        started.append(docker_client.containers.run(BUSYBOX, ["sh", "-c", command], detach=True, labels=labels))
    try:
        yield cluster
    finally:
        for container in started:
            container.remove(force=True)


async def test_a_burning_container_reports_its_rate(docker_client: docker.DockerClient, burning: str) -> None:
    stats = DockerStats(docker_client, cluster=burning, node="n1")
    await stats.summary()
    await asyncio.sleep(2.0)
    summary = await stats.summary()
    [pod] = summary["pods"]
    assert pod["podRef"] == {"name": "burn-n1", "namespace": "default", "uid": "uid-n1"}
    [container] = pod["containers"]
    assert container["name"] == "app"
    # A busy loop uses about one core; a loaded two-core machine still gives it a good share.
    assert container["cpu"]["usageNanoCores"] > 200_000_000
    assert container["memory"]["workingSetBytes"] > 0
    assert summary["node"]["cpu"]["usageNanoCores"] >= container["cpu"]["usageNanoCores"] // 2
    node_sample, pods = parse_summary("n1", summary)
    assert node_sample is not None and node_sample.usage["cpu"].endswith("n")
    assert [p.name for p in pods] == ["burn-n1"]
    assert pods[0].containers[0][1]["memory"].endswith("Ki")
