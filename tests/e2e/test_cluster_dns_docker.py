"""Cluster DNS on real Docker: a pod's ``/etc/resolv.conf`` names the ``kube-system/kube-dns`` ClusterIP
(the tenth address of the service range, as on Kubernetes, not Docker's 127.0.0.11) with the namespace's
search path, and names resolve through it (the service proxy DNATs the ClusterIP to the cluster DNS on
the node)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

SCRIPT = ("cat /etc/resolv.conf; echo ---; nslookup kubernetes.default; echo ---; "
          "nslookup kube-dns.kube-system.svc.cluster.local")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("clusterdns"), docker_client, "--nodes", "1") as c:
        yield c


def _finished(cluster: DockerCluster, name: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = cluster.json("get", "pod", name)["status"].get("phase", "")
        if phase in ("Succeeded", "Failed"):
            return phase
        time.sleep(0.5)
    return phase


def test_pods_resolve_through_the_kube_dns_cluster_ip(cluster: DockerCluster) -> None:
    dns = cluster.json("get", "service", "kube-dns", "-n", "kube-system")
    kubernetes = cluster.json("get", "service", "kubernetes")
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dns", "namespace": "default"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", SCRIPT]}]}}))
    phase = _finished(cluster, "dns")
    logs = cluster.kubectl("logs", "dns", check=False).stdout
    resolv, short, fqdn = logs.split("---\n")
    assert f"nameserver {dns['spec']['clusterIP']}" in resolv.splitlines(), logs
    assert "127.0.0.11" not in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv.splitlines(), logs
    assert "options ndots:5" in resolv.splitlines(), logs
    assert phase == "Succeeded", logs
    # After "Name:": the server's own address (the tenth) contains the first one as a prefix.
    assert f"Address: {kubernetes['spec']['clusterIP']}" in short.split("Name:")[-1].splitlines(), logs
    assert dns["spec"]["clusterIP"] in fqdn.split("Name:")[-1], logs
