"""NetworkPolicy on real Docker: connections between real pods are allowed and refused as the policies say
(default deny, pod and namespace selectors, ipBlock, named ports, egress), and kubelet probes keep
working under default deny. Connections are tried with busybox ``nc`` from inside the client pods
(``kubectl exec``); a refused connection is REJECTed, so it fails at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "default"
WAIT = 120.0


def _pod(name: str, ns: str, labels: dict[str, str], *, server: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": BUSYBOX, "command": ["sh", "-c", "sleep 3600"]}
    if server:
        container.update(command=["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && "
                                              "exec httpd -f -p 8080 -h /www"],
                         ports=[{"name": "http", "containerPort": 8080}],
                         readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [container]}}


def _policy(name: str, spec: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": name, "namespace": NS}, "spec": spec})


def _ready(cluster: DockerCluster, name: str, ns: str = NS) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while True:
        pod = cluster.json("get", "pod", name, "-n", ns)
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
        if conditions.get("Ready") == "True" and pod["status"].get("podIP"):
            return pod
        assert time.monotonic() < deadline, f"{ns}/{name} never became Ready: {pod['status']}"
        time.sleep(0.5)


def _connects(cluster: DockerCluster, client: str, ip: str, ns: str = NS) -> bool:
    done = cluster.kubectl("exec", client, "-n", ns, "--", "sh", "-c", f"echo | nc -w 3 {ip} 8080",
                           check=False, timeout=60)
    return done.returncode == 0


def _becomes(cluster: DockerCluster, client: str, ip: str, want: bool, ns: str = NS) -> None:
    deadline = time.monotonic() + WAIT
    while _connects(cluster, client, ip, ns) is not want:
        assert time.monotonic() < deadline, f"{ns}/{client} -> {ip}: never {'allowed' if want else 'refused'}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("netpol"), docker_client, "--nodes", "1") as c:
        c.kubectl("create", "namespace", "prod")
        c.kubectl("label", "namespace", "prod", "env=prod")
        for name, ns, labels, server in (("web", NS, {"app": "web"}, True), ("client", NS, {"role": "client"}, False),
                                         ("other", NS, {"role": "other"}, False),
                                         ("prod-client", "prod", {"role": "client"}, False)):
            c.kubectl("apply", "-f", "-", input=json.dumps(_pod(name, ns, labels, server=server)))
        yield c


def test_policies_between_real_pods(cluster: DockerCluster) -> None:
    c = cluster
    web = _ready(c, "web")["status"]["podIP"]
    other_ip = _ready(c, "other")["status"]["podIP"]
    _ready(c, "client")
    _ready(c, "prod-client", "prod")
    assert _connects(c, "client", web), "no policy: open"

    c.kubectl("apply", "-f", "-", input=_policy("deny-web", {"podSelector": {"matchLabels": {"app": "web"}},
                                                             "policyTypes": ["Ingress"]}))
    _becomes(c, "client", web, False)
    assert not _connects(c, "other", web)
    # the kubelet's readiness probe still reaches a pod isolated by default deny
    c.kubectl("apply", "-f", "-", input=json.dumps(_pod("web2", NS, {"app": "web"}, server=True)))
    web2 = _ready(c, "web2")["status"]["podIP"]
    assert not _connects(c, "client", web2)

    c.kubectl("apply", "-f", "-", input=_policy("from-clients", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                     "ports": [{"port": "http"}]}]}))
    _becomes(c, "client", web, True)
    assert not _connects(c, "other", web)
    assert not _connects(c, "prod-client", web, "prod"), "a podSelector alone selects the policy's namespace"

    c.kubectl("apply", "-f", "-", input=_policy("from-prod", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}]}))
    _becomes(c, "prod-client", web, True, "prod")

    c.kubectl("apply", "-f", "-", input=_policy("from-block", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": f"{other_ip}/32"}}], "ports": [{"port": 8080}]}]}))
    _becomes(c, "other", web, True)

    c.kubectl("apply", "-f", "-", input=_policy("client-egress", {
        "podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"]}))
    _becomes(c, "client", web, False)
    assert _connects(c, "other", web), "egress isolation of the clients leaves others alone"

    for name in ("deny-web", "from-clients", "from-prod", "from-block", "client-egress"):
        c.kubectl("delete", "networkpolicy", name)
    _becomes(c, "client", web, True)


def test_invalid_cidr_is_refused_with_kubernetes_message(cluster: DockerCluster) -> None:
    bad = cluster.kubectl("apply", "-f", "-", check=False, input=_policy("bad", {
        "podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/4"]}}]}]}))
    assert bad.returncode != 0
    assert 'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/4": must be a strict subset of ' \
           "`cidr`" in bad.stderr, bad.stderr
