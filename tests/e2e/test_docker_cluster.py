"""End to end on real Docker: ``kubelab up --nodes 2``, Services + DNS, logs/exec, cleanup, ``kubelab down``.

One cluster per module (a tmp state dir, so its own cluster name, pod network, service range and iptables
chains; apiserver on a free port), brought up with the real CLI and torn down with ``kubelab down``. The
tests touch only this cluster's pods and containers (found by the cluster label). Real kubectl throughout.

Note: the busybox-static ``wget`` segfaults with ``-T`` and on "connection refused" (see the runtime
reference), so requests here use plain ``wget -qO-`` against endpoints that answer.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from kubelab import laptop
from kubelab.images import BUSYBOX, ensure_images
from kubelet.network.node_address import bridge_interface
from tests.e2e.docker_harness import CLUSTER_LABEL, DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "lab"
WEB = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 3
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
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: {BUSYBOX}, command: ["sleep", "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: talker, namespace: {NS}}}
spec:
  restartPolicy: Never
  containers:
  - {{name: one, image: {BUSYBOX}, command: ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done"]}}
  - {{name: two, image: {BUSYBOX}, command: ["sh", "-c", "echo only-two"]}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("docker-cluster"), docker_client, "--nodes", "2") as c:
        yield c


@pytest.fixture(scope="module")
def web(cluster: DockerCluster) -> DockerCluster:
    """The web Deployment + Service, a client pod and a finished two-container pod, all Ready/done."""
    cluster.kubectl("create", "namespace", NS)
    cluster.kubectl("apply", "-f", "-", input=WEB)
    cluster.kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=60s", timeout=70)
    cluster.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s", timeout=70)
    cluster.kubectl("-n", NS, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/talker", "--timeout=60s",
                    timeout=70)
    return cluster


def test_up_gives_ready_nodes_and_dns(cluster: DockerCluster) -> None:
    nodes = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert sorted(nodes) == ["node-1", "node-2"]
    network = cluster.docker.networks.get(f"kubelab-{cluster.cluster}")
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    assert laptop.dns_answers(gateway)
    print(f"kubelab up --nodes 2 (images present): {cluster.up_seconds:.2f}s")


def _url(cluster: DockerCluster, form: str) -> str:
    if form == "cluster-ip":
        return "http://" + cluster.kubectl("-n", NS, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    return {"short": "http://web", "namespaced": f"http://web.{NS}",
            "fqdn": f"http://web.{NS}.svc.cluster.local"}[form]


@pytest.mark.parametrize("form", [
    pytest.param("short", id="web"),
    pytest.param("namespaced", id="web.ns"),
    pytest.param("fqdn", id="fqdn"),
    pytest.param("cluster-ip", id="cluster-ip"),
])
def test_service_answers_from_another_pod(web: DockerCluster, form: str) -> None:
    url = _url(web, form)
    seen = set()
    for _ in range(6):
        out = web.kubectl("-n", NS, "exec", "client", "--", "wget", "-qO-", url).stdout
        assert out.startswith("hello-from-web-"), out
        seen.add(out.strip())
    if form == "cluster-ip":
        assert len(seen) >= 2, f"6 requests all went to {seen}"


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["-c", "one"], "line-1\nline-2\nline-3\nline-4\nline-5\n", id="container"),
    pytest.param(["-c", "two"], "only-two\n", id="other-container"),
    pytest.param(["-c", "one", "--tail", "2"], "line-4\nline-5\n", id="tail"),
    pytest.param(["-c", "one", "-f"], "line-1\nline-2\nline-3\nline-4\nline-5\n", id="follow-finished"),
])
def test_kubectl_logs(web: DockerCluster, args: list[str], expected: str) -> None:
    assert web.kubectl("-n", NS, "logs", "talker", *args, timeout=20).stdout == expected


@pytest.mark.parametrize(("args", "stdin", "code", "stdout"), [
    pytest.param(["--", "sh", "-c", "echo out; echo err >&2; exit 3"], None, 3, "out\n", id="exit-code"),
    pytest.param(["--", "hostname"], None, 0, "client\n", id="ok"),
    pytest.param(["-i", "--", "sh", "-c", "cat; echo done"], "hello\n", 0, "hello\ndone\n", id="stdin"),
])
def test_kubectl_exec(web: DockerCluster, args: list[str], stdin: str | None, code: int, stdout: str) -> None:
    result = web.kubectl("-n", NS, "exec", "client", *args, input=stdin, check=False, timeout=30)
    assert (result.returncode, result.stdout) == (code, stdout), result.stderr
    if code:
        assert "err" in result.stderr


def test_a_node_address_the_bridge_lost_comes_back(web: DockerCluster) -> None:
    """As after a restart of the Docker engine: node-1's InternalIP is taken off the bridge; its
    kubelet puts it back within its check period and ``kubectl logs`` (dialled there) works again."""
    node = web.json("get", "node", "node-1")
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    bridge = bridge_interface(web.docker.networks.get(f"kubelab-{web.cluster}").attrs)

    def on_bridge() -> bool:
        shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True,
                               check=True).stdout
        return f" {ip}/" in shown

    assert on_bridge()
    subprocess.run(["ip", "-4", "addr", "del", f"{ip}/32", "dev", bridge], check=True)
    assert not on_bridge()
    deadline = time.monotonic() + 40
    while not on_bridge():
        assert time.monotonic() < deadline, f"{ip} was not put back on {bridge}"
        time.sleep(0.5)
    pod = next(p for p in web.json("-n", NS, "get", "pods")["items"] if p["spec"].get("nodeName") == "node-1")
    name = pod["metadata"]["name"]
    assert web.kubectl("-n", NS, "logs", name, "--all-containers", "--tail", "1", timeout=20).returncode == 0


def test_deleting_the_deployment_removes_its_containers(web: DockerCluster) -> None:
    pods = web.kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.uid}").stdout
    uids = pods.split()
    assert len(uids) == 3
    assert all(web.containers(**{"io.kubernetes.pod.uid": uid}) for uid in uids)
    web.kubectl("-n", NS, "delete", "deployment", "web", "--wait=false")
    deadline = time.monotonic() + 45
    left = uids
    while time.monotonic() < deadline:
        left = [uid for uid in uids if web.containers(**{"io.kubernetes.pod.uid": uid})]
        if not left:
            break
        time.sleep(0.5)
    assert left == [], f"containers of pods {left} still exist"
    assert web.containers(**{"io.kubernetes.pod.name": "client"}), "the client pod must be untouched"


def _chains(cluster: str) -> list[str]:
    from kubelet.network.iptables_rules import ChainNames

    prefix = ChainNames(cluster).prefix
    out = "".join(subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=True).stdout
                  for table in ("filter", "nat"))
    return [line for line in out.splitlines() if prefix + "-" in line]


def test_down_leaves_nothing(web: DockerCluster) -> None:
    """Last in the module: ``kubelab down`` removes every container, the network and the chains."""
    assert web.containers() and _chains(web.cluster)
    result = web.kubelab("down")
    assert result.returncode == 0, result.stderr
    assert "removed" in result.stdout and "iptables chain" in result.stdout
    assert web.containers() == []
    assert web.docker.networks.list(filters={"label": [f"{CLUSTER_LABEL}={web.cluster}"]}) == []
    assert _chains(web.cluster) == []
