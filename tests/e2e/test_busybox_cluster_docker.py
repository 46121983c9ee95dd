"""The busybox commands tutorials run, in a pod of a real Docker cluster, against other pods: ``printenv``,
``nc -z`` to a listening and a closed port, ``wget -T`` to a server, a closed port, an address of the pod
network nothing owns (it fails within its timeout, no crash) and a Service by name, ``nslookup`` through
the cluster DNS, and the HPA walkthrough's ``wget`` loop. Each runs through ``kubectl exec`` in exec form
and through ``sh -c``.

Only the cluster's own pod network and service range are contacted: the unowned address is taken from the
node's podCIDR, skipping every address a pod holds.
"""

from __future__ import annotations

import ipaddress
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

SERVER = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"


@dataclass(frozen=True)
class Lab:
    cluster: DockerCluster
    server_ip: str
    unowned_ip: str
    web_ip: str
    kubernetes_ip: str


def _wait(what: str, probe: Callable[[], str], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _running_ip(cluster: DockerCluster, pod: str) -> str:
    status = cluster.json("get", "pod", pod)["status"]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return str(status.get("podIP") or "") if ready else ""


def _unowned_address(cluster: DockerCluster) -> str:
    """The highest host address of the node's podCIDR that no pod holds."""
    node = cluster.json("get", "nodes")["items"][0]
    taken = {ip["ip"] for pod in cluster.json("get", "pods", "-A")["items"]
             for ip in pod["status"].get("podIPs") or []}
    taken |= {a["address"] for a in node["status"].get("addresses") or []}
    network = ipaddress.ip_network(node["spec"]["podCIDR"])
    for offset in range(2, 50):
        candidate = str(network.broadcast_address - offset)
        if candidate not in taken:
            return candidate
    raise AssertionError(f"no free address in {network}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[Lab]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("busybox"), docker_client, "--nodes", "1") as c:
        c.kubectl("run", "server", f"--image={BUSYBOX}", "--restart=Never", "--labels=app=web",
                  "--", "sh", "-c", SERVER)
        c.kubectl("run", "client", f"--image={BUSYBOX}", "--restart=Never", "--", "sleep", "3600")
        c.kubectl("expose", "pod", "server", "--name=web", "--port=80", "--target-port=8080")
        server_ip = _wait("the server pod", lambda: _running_ip(c, "server"))
        _wait("the client pod", lambda: _running_ip(c, "client"))
        web_ip = c.json("get", "service", "web")["spec"]["clusterIP"]
        kubernetes_ip = c.json("get", "service", "kubernetes")["spec"]["clusterIP"]
        # The server answers once httpd listens (the pod has no readiness probe).
        _wait("httpd in the server pod", lambda: "up" if c.kubectl(
            "exec", "client", "--", "nc", "-z", server_ip, "8080", check=False).returncode == 0 else "")
        yield Lab(c, server_ip, _unowned_address(c), web_ip, kubernetes_ip)


def _exec(lab: Lab, argv: list[str], shell: bool) -> tuple[int, str, float]:
    command = ["sh", "-c", shlex.join(argv)] if shell else argv
    started = time.monotonic()
    result = lab.cluster.kubectl("exec", "client", "--", *command, check=False, timeout=120)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


FORMS = [pytest.param(False, id="exec"), pytest.param(True, id="sh-c")]


@pytest.mark.parametrize("shell", FORMS)
def test_printenv_hostname(lab: Lab, shell: bool) -> None:
    code, out, _ = _exec(lab, ["printenv", "HOSTNAME"], shell)
    assert (code, out.splitlines()[:1]) == (0, ["client"]), out


@pytest.mark.parametrize("shell", FORMS)
def test_nc_z_tells_an_open_port_from_a_closed_one(lab: Lab, shell: bool) -> None:
    assert _exec(lab, ["nc", "-z", "-w", "5", lab.server_ip, "8080"], shell)[0] == 0
    code, out, _ = _exec(lab, ["nc", "-z", "-w", "5", lab.server_ip, "9"], shell)
    assert code not in (0, 139), out


@pytest.mark.parametrize("shell", FORMS)
def test_wget_with_a_timeout_reaches_a_pod(lab: Lab, shell: bool) -> None:
    code, out, _ = _exec(lab, ["wget", "-T", "2", "-qO-", f"http://{lab.server_ip}:8080/"], shell)
    assert (code, "hello" in out.splitlines()) == (0, True), out


@pytest.mark.parametrize("shell", FORMS)
def test_wget_with_a_timeout_fails_cleanly_on_a_closed_port(lab: Lab, shell: bool) -> None:
    code, out, _ = _exec(lab, ["wget", "-T", "2", "-qO-", f"http://{lab.server_ip}:9/"], shell)
    assert code == 1, out
    assert f"wget: can't connect to remote host ({lab.server_ip}): Connection refused" in out, out


@pytest.mark.parametrize("shell", FORMS)
def test_wget_with_a_timeout_gives_up_on_an_address_that_does_not_answer(lab: Lab, shell: bool) -> None:
    code, out, seconds = _exec(lab, ["wget", "-T", "2", "-qO-", f"http://{lab.unowned_ip}:8080/"], shell)
    assert code == 1, out
    # Within the 2 s limit (kubectl's own round trip on top): "download timed out", or the kernel's
    # "No route to host" when the neighbour lookup gives up first.
    assert any(line.startswith("wget: ") for line in out.splitlines()), out
    assert seconds < 30, out


@pytest.mark.parametrize("shell", FORMS)
def test_wget_reaches_a_service_by_name(lab: Lab, shell: bool) -> None:
    code, out, _ = _exec(lab, ["wget", "-T", "5", "-qO-", "http://web"], shell)
    assert (code, "hello" in out.splitlines()) == (0, True), out


@pytest.mark.parametrize("shell", FORMS)
@pytest.mark.parametrize(("name", "address"), [
    pytest.param("kubernetes.default", "kubernetes_ip", id="kubernetes.default"),
    pytest.param("web", "web_ip", id="service-short-name"),
])
def test_nslookup_through_the_cluster_dns(lab: Lab, shell: bool, name: str, address: str) -> None:
    code, out, _ = _exec(lab, ["nslookup", name], shell)
    assert code == 0, out
    assert f"Address: {getattr(lab, address)}" in out.split("Name:", 1)[-1], out


def test_a_wget_load_loop(lab: Lab) -> None:
    # The HPA walkthrough's load generator, bounded to 30 requests.
    loop = ("i=0; while sleep 0.01; do wget -q -O- http://web >/dev/null || exit 1; i=$((i+1)); "
            "[ $i -ge 30 ] && break; done; echo requests=$i")
    code, out, _ = _exec(lab, ["sh", "-c", loop], shell=False)
    assert (code, out.split()) == (0, ["requests=30"]), out
