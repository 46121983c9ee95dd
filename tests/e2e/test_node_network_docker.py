"""End to end on real Docker: each node of ``kubelab up --nodes 2`` has its own InternalIP and pod CIDR.

One cluster for the module (a tmp state dir: its own cluster name, pod network and chains), one pod pinned
to each node. Checked: distinct node addresses on the pod network (not the bridge gateway), each pod's IP
inside its node's ``spec.podCIDR`` and its ``hostIP`` the node's address, the apiserver reaching both
kubelets (``kubectl logs`` / ``exec``), pod → pod across nodes, pod → node and node → pod (also when a
default-deny policy isolates the pod: node traffic is always allowed). The test process itself only
binds and dials addresses on the cluster's pod network.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "nodenet"
NODES = ("node-1", "node-2")


def _pod(name: str, node: str) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {NS}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /www && echo served-by-{name} > /www/index.html && echo started-{name}
      && exec httpd -f -p 8080 -h /www"]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("node-network"), docker_client, "--nodes", "2", "--no-mesh") as c:
        c.kubectl("create", "namespace", NS)
        c.kubectl("apply", "-f", "-", input="---\n".join(_pod(f"pod-{i}", node) for i, node in enumerate(NODES, 1)))
        c.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/pod-1", "pod/pod-2", "--timeout=120s", timeout=150)
        yield c


def _nodes(c: DockerCluster) -> dict[str, dict[str, Any]]:
    return {n["metadata"]["name"]: n for n in c.json("get", "nodes")["items"]}


def _internal_ip(node: dict[str, Any]) -> str:
    return str(next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"))


def _pods(c: DockerCluster) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in c.json("-n", NS, "get", "pods")["items"]}


def _pod_network(c: DockerCluster) -> tuple[ipaddress.IPv4Network, str]:
    config = c.docker.networks.get(f"kubelab-{c.cluster}").attrs["IPAM"]["Config"][0]
    return ipaddress.IPv4Network(config["Subnet"]), str(config["Gateway"])


def test_nodes_report_their_own_internal_ip_and_pod_cidr(cluster: DockerCluster) -> None:
    nodes = _nodes(cluster)
    subnet, gateway = _pod_network(cluster)
    ips = {name: _internal_ip(nodes[name]) for name in NODES}
    cidrs = {name: ipaddress.IPv4Network(nodes[name]["spec"]["podCIDR"]) for name in NODES}
    assert len(set(ips.values())) == 2, ips
    assert gateway not in ips.values()
    assert all(ipaddress.ip_address(ip) in subnet for ip in ips.values()), (ips, subnet)
    assert all(c.subnet_of(subnet) for c in cidrs.values()), (cidrs, subnet)
    assert not cidrs["node-1"].overlaps(cidrs["node-2"])
    assert all(ipaddress.ip_address(ips[n]) not in cidrs[m] for n in NODES for m in NODES)
    assert all(nodes[n]["spec"]["podCIDRs"] == [str(cidrs[n])] for n in NODES)


def test_pod_ips_come_from_their_nodes_pod_cidr(cluster: DockerCluster) -> None:
    nodes, pods = _nodes(cluster), _pods(cluster)
    for name, node in (("pod-1", "node-1"), ("pod-2", "node-2")):
        status = pods[name]["status"]
        assert pods[name]["spec"]["nodeName"] == node
        assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(nodes[node]["spec"]["podCIDR"]), status
        assert status["podIPs"] == [{"ip": status["podIP"]}]
        assert status["hostIP"] == _internal_ip(nodes[node])
        assert status["hostIPs"] == [{"ip": status["hostIP"]}]
        # What Docker gave the sandbox is what the API says.
        sandbox = cluster.containers(**{"io.kubernetes.pod.name": name, "kubelab.dev/kind": "sandbox"})
        assert [c.attrs["NetworkSettings"]["Networks"][f"kubelab-{cluster.cluster}"]["IPAddress"]
                for c in sandbox if c.status == "running"] == [status["podIP"]]


def test_apiserver_reaches_each_nodes_kubelet(cluster: DockerCluster) -> None:
    nodes = _nodes(cluster)
    for index, node in enumerate(NODES, 1):
        pod = f"pod-{index}"
        assert cluster.kubectl("-n", NS, "logs", pod, timeout=30).stdout == f"started-{pod}\n"
        assert cluster.kubectl("-n", NS, "exec", pod, "--", "cat", "/www/index.html", timeout=30).stdout == \
            f"served-by-{pod}\n"
        # The kubelet listens on the node's own address (and the apiserver dialled it for the above).
        port = nodes[node]["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        with socket.create_connection((_internal_ip(nodes[node]), port), timeout=10):
            pass


def test_pod_reaches_a_pod_on_the_other_node(cluster: DockerCluster) -> None:
    target = _pods(cluster)["pod-2"]["status"]["podIP"]
    out = cluster.kubectl("-n", NS, "exec", "pod-1", "--", "wget", "-qO-", f"http://{target}:8080/", timeout=30)
    assert out.stdout == "served-by-pod-2\n"


class _Listener:
    """A TCP listener on a node's address that records who connected and what they sent."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(60)
        self.port = self.sock.getsockname()[1]
        self.peer = ""
        self.data = b""
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            conn, (peer, _) = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            self.peer = peer
            while chunk := conn.recv(1024):
                self.data += chunk

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)


@pytest.mark.parametrize("node", NODES)
def test_pod_reaches_a_node_address(cluster: DockerCluster, node: str) -> None:
    node_ip = _internal_ip(_nodes(cluster)[node])
    pod_ip = _pods(cluster)["pod-1"]["status"]["podIP"]
    listener = _Listener(node_ip)
    try:
        cluster.kubectl("-n", NS, "exec", "pod-1", "--", "sh", "-c",
                        f"echo hello-node | nc -w 5 {node_ip} {listener.port}", timeout=30, check=False)
        listener.thread.join(30)
    finally:
        listener.close()
    assert (listener.peer, listener.data) == (pod_ip, b"hello-node\n")


def _get_from(source: str, ip: str, port: int = 8080) -> bytes:
    with socket.create_connection((ip, port), timeout=10, source_address=(source, 0)) as conn:
        conn.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        body = b""
        while chunk := conn.recv(4096):
            body += chunk
    return body


def test_node_reaches_pods_also_when_a_policy_isolates_them(cluster: DockerCluster) -> None:
    nodes, pods = _nodes(cluster), _pods(cluster)
    target = pods["pod-2"]["status"]["podIP"]
    for node in NODES:
        assert _get_from(_internal_ip(nodes[node]), target).endswith(b"served-by-pod-2\n")
    cluster.kubectl("-n", NS, "apply", "-f", "-", input=f"""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny-all, namespace: {NS}}}
spec:
  podSelector: {{matchLabels: {{app: pod-2}}}}
  policyTypes: [Ingress]
""")
    try:
        deadline = time.monotonic() + 90
        while True:  # the policy is in force once pod-1 can no longer reach pod-2
            probe = cluster.kubectl("-n", NS, "exec", "pod-1", "--", "sh", "-c",
                                    f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} 8080 | grep -q served "
                                    "&& echo open || echo closed", check=False, timeout=30)
            if probe.stdout.strip() == "closed":
                break
            assert time.monotonic() < deadline, f"the policy never isolated pod-2: {probe.stdout} {probe.stderr}"
            time.sleep(1)
        for node in NODES:
            assert _get_from(_internal_ip(nodes[node]), target).endswith(b"served-by-pod-2\n")
    finally:
        cluster.kubectl("-n", NS, "delete", "networkpolicy", "deny-all", check=False)
