"""Reaching real Docker pods from outside: ``kubectl port-forward`` (1.27-1.33; pod/, svc/, deploy/),
``kubectl attach``, ``kubectl run -i --rm``, exec and cp over SPDY, the Python client's
port-forward, attach and str stdin, and the proxy subresources behind ``kubectl proxy``.

One ``kubelab up --nodes 1`` cluster for the module (tests/e2e/docker_harness.py); real kubectl.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from kubelab.testing import kubectl, kubectl_binary
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "reach"
APPS = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html
          && head -c 4000000 /dev/zero > /www/big && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: ticker, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {BUSYBOX}
    stdin: true
    command: ["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata: {{name: local-only, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /w && echo only-on-loopback > /w/index.html
      && exec httpd -f -p 127.0.0.1:8081 -h /w"]
---
apiVersion: v1
kind: Pod
metadata: {{name: reader, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {BUSYBOX}
    stdin: true
    command: ["sh", "-c", "while read line; do echo got:$line; done"]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("reach-cluster"), docker_client, "--nodes", "1") as c:
        c.kubectl("create", "namespace", NS)
        c.kubectl("apply", "-f", "-", input=APPS)
        c.kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=90s", timeout=100)
        for pod in ("ticker", "reader", "local-only"):
            c.kubectl("-n", NS, "wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=90s", timeout=100)
        yield c


def _web_pod(cluster: DockerCluster) -> str:
    return str(cluster.kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o",
                               "jsonpath={.items[0].metadata.name}").stdout)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _port_forward(cluster: DockerCluster, target: str, *mappings: str,
                  version: str | None = None) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    cache = cluster.state_dir / f"kc-pf-{version}"
    process = subprocess.Popen([str(kubectl_binary(version)), "port-forward", f"--cache-dir={cache}", "-n", NS,
                                "--address=127.0.0.1", target, *mappings], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    try:
        for _ in mappings:
            line = process.stdout.readline()
            assert line.startswith("Forwarding from 127.0.0.1:"), (line, process.poll())
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _get(port: int, path: str = "/index.html") -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        body: bytes = response.read()
        return body


@pytest.mark.parametrize("version", ["1.27", "1.29", "1.31", "1.33"])
def test_kubectl_port_forward_to_a_pod(cluster: DockerCluster, version: str) -> None:
    pod = _web_pod(cluster)
    local = _free_port()
    with _port_forward(cluster, f"pod/{pod}", f"{local}:8080", version=version):
        assert _get(local) == f"hello-from-{pod}\n".encode()
        assert len(_get(local, "/big")) == 4_000_000


def test_kubectl_port_forward_reaches_a_process_listening_on_loopback_only(cluster: DockerCluster) -> None:
    """As on Kubernetes, the kubelet connects to localhost inside the pod's network namespace."""
    local = _free_port()
    with _port_forward(cluster, "pod/local-only", f"{local}:8081"):
        assert _get(local) == b"only-on-loopback\n"


@pytest.mark.parametrize("target", ["svc/web", "deploy/web", "service/web"])
def test_kubectl_port_forward_to_a_service_or_deployment(cluster: DockerCluster, target: str) -> None:
    pod = _web_pod(cluster)
    local = _free_port()
    mapping = f"{local}:80" if "svc" in target or "service" in target else f"{local}:8080"
    with _port_forward(cluster, target, mapping):
        assert _get(local) == f"hello-from-{pod}\n".encode()


def test_kubectl_port_forward_to_a_closed_port_reports_and_recovers(cluster: DockerCluster) -> None:
    pod = _web_pod(cluster)
    local = _free_port()
    with _port_forward(cluster, f"pod/{pod}", f"{local}:9999") as process:
        with socket.create_connection(("127.0.0.1", local), timeout=30) as conn:
            assert conn.recv(100) == b""
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "error forwarding port 9999" in line and "connection refused" in line, line
    with _port_forward(cluster, f"pod/{pod}", f"{local}:8080"):
        assert _get(local).startswith(b"hello-from-")


@pytest.mark.parametrize("version", ["1.27", "1.29"])
def test_kubectl_exec_and_cp_over_spdy(cluster: DockerCluster, tmp_path: Path, version: str) -> None:
    pod = _web_pod(cluster)
    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=cluster.kubeconfig, version=version, input=input, check=False, timeout=90)

    done = run("-n", NS, "exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (done.returncode, done.stdout) == (4, "out\n"), done.stderr
    assert "command terminated with exit code 4" in done.stderr
    done = run("-n", NS, "exec", "-i", pod, "--", "cat", input="typed\n")
    assert (done.returncode, done.stdout) == (0, "typed\n"), done.stderr
    local = tmp_path / "data.txt"
    local.write_text("copied " * 5000)
    done = run("cp", str(local), f"{NS}/{pod}:/tmp/data.txt")
    assert done.returncode == 0, done.stderr
    back = tmp_path / "back.txt"
    done = run("cp", f"{NS}/{pod}:/tmp/data.txt", str(back))
    assert done.returncode == 0, done.stderr
    assert back.read_text() == local.read_text()


@pytest.mark.parametrize("version", [None, "1.27"])  # WebSocket v5, SPDY/3.1
def test_kubectl_attach_streams_the_main_process(cluster: DockerCluster, version: str | None) -> None:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    process = subprocess.Popen([str(kubectl_binary(version)), "attach", "-n", NS, "ticker",
                                f"--cache-dir={cluster.state_dir / f'kc-attach-{version}'}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    try:
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert first.startswith("tick-") and second.startswith("tick-"), (first, second)
        assert int(second.split("-")[1]) == int(first.split("-")[1]) + 1
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_kubectl_run_interactive_rm(cluster: DockerCluster) -> None:
    done = cluster.kubectl("run", "-n", NS, "-i", "--rm", "--restart=Never", f"--image={BUSYBOX}", "hi", "--",
                           "sh", "-c", "read line; echo got:$line; echo hi", input="typed\n", check=False,
                           timeout=120)
    assert done.returncode == 0, done.stderr
    assert "got:typed\nhi\n" in done.stdout, (done.stdout, done.stderr)
    assert 'pod "hi" deleted' in done.stdout + done.stderr
    gone = cluster.kubectl("get", "-n", NS, "pod", "hi", check=False)
    assert gone.returncode == 1 and "NotFound" in gone.stderr


def test_kubectl_run_interactive_rm_of_a_quick_command(cluster: DockerCluster) -> None:
    """The command may end before kubectl attaches: kubectl then shows the logs, as on Kubernetes."""
    done = cluster.kubectl("run", "-n", NS, "-i", "--rm", "--restart=Never", f"--image={BUSYBOX}", "quick", "--",
                           "sh", "-c", "echo hi", check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hi\n"), (done.stdout, done.stderr)
    assert cluster.kubectl("get", "-n", NS, "pod", "quick", check=False).returncode == 1


def test_kubectl_attach_to_a_finished_container_says_why(cluster: DockerCluster) -> None:
    cluster.kubectl("run", "-n", NS, "--restart=Never", f"--image={BUSYBOX}", "finished", "--", "true")
    cluster.kubectl("-n", NS, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/finished", "--timeout=90s",
                    timeout=100)
    done = cluster.kubectl("attach", "-n", NS, "finished", check=False, timeout=60)
    assert (done.returncode, done.stderr) == (1, "error: cannot attach a container in a completed pod; current "
                                                 "phase is Succeeded\n")  # kubectl's own check
    from kubernetes.stream import stream

    with pytest.raises(Exception) as refused:  # the Python client asks anyway: the server says why
        stream(_python_core(cluster).connect_get_namespaced_pod_attach, "finished", NS, stdout=True,
               _preload_content=False)
    assert "404" in str(refused.value) and "container is not running" in str(refused.value), refused.value


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pty")
def test_kubectl_run_with_a_terminal(cluster: DockerCluster) -> None:
    """``kubectl run -i -t --rm``: a TTY through attach (resizes included), then the pod is deleted."""
    command = (f"stty rows 41 cols 101; {kubectl_binary()} --cache-dir={cluster.state_dir / 'kc-run-tty'} "
               f"run -n {NS} -i -t --rm --restart=Never --image={BUSYBOX} tty -- "
               # The resize travels beside stdin: wait (up to 10 s) for the size to land in the pty.
               "sh -c 'read line; echo got:$line; i=0; "
               "while [ -z \"$(stty size 2>/dev/null)\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
               "exec stty size'")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    done = subprocess.run(["script", "-qec", command, "/dev/null"], input="typed\n", capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "got:typed" in done.stdout, done.stdout
    assert done.stdout.split("got:typed", 1)[1].split()[:2] == ["41", "101"]  # the terminal's size arrived
    assert cluster.kubectl("get", "-n", NS, "pod", "tty", check=False).returncode == 1


def _python_core(cluster: DockerCluster) -> Any:
    from tests.e2e.pyclient import client, new_client_from_config

    api: Any = new_client_from_config(config_file=str(cluster.kubeconfig))
    return client.CoreV1Api(api)


def test_python_client_port_forward_and_attach(cluster: DockerCluster) -> None:
    from kubernetes.stream import portforward, stream

    core = _python_core(cluster)
    pod = _web_pod(cluster)
    pf: Any = portforward(core.connect_get_namespaced_pod_portforward, pod, NS, ports="8080")
    sock = pf.socket(8080)
    sock.settimeout(30)
    sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    pf.close()
    assert answer.startswith(b"HTTP/1.") and answer.endswith(f"hello-from-{pod}\n".encode())

    attached: Any = stream(core.connect_get_namespaced_pod_attach, "reader", NS, container="c", stdin=True,
                           stdout=True, stderr=True, tty=False, _preload_content=False)
    attached.write_stdin("from-python\n")  # a str: sent as a text frame
    out, deadline = "", time.monotonic() + 60
    while "got:from-python" not in out and time.monotonic() < deadline:
        attached.update(timeout=5)
        out += attached.read_stdout()
    attached.close()
    assert "got:from-python\n" in out


def test_proxy_subresources_behind_kubectl_proxy(cluster: DockerCluster) -> None:
    pod = _web_pod(cluster)
    raw = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{pod}:8080/proxy/index.html").stdout
    assert raw == f"hello-from-{pod}\n"
    raw = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/services/web:http/proxy/").stdout
    assert f"hello-from-{pod}" in raw
    assert cluster.kubectl("get", "--raw", "/api/v1/nodes/node-1/proxy/healthz").stdout == "ok"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    process = subprocess.Popen([str(kubectl_binary()), "proxy", "--port=0",
                                f"--cache-dir={cluster.state_dir / 'kc-proxy'}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{port}/api/v1/namespaces/{NS}/pods/{pod}:8080/proxy/"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == f"hello-from-{pod}\n".encode()
    finally:
        process.terminate()
        process.wait(timeout=30)
