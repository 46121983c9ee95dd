"""The Horizontal Pod Autoscaler Walkthrough (``examples/tutorials/hpa``) on real Docker containers,
driven by the real kubectl with the README's commands: the php-apache Deployment and Service from
``kubelab/hpa-example:1.0`` (built with the README's ``docker build``), ``kubectl autoscale``, the
lab's shortened scale-down window, the tutorial's interactive load generator (``kubectl run -i
--tty --rm`` on a pseudo-terminal, stopped with Ctrl-C), and ``kubectl get hpa --watch`` until the
HPA scales up under the load and back to one replica after it. The CPU figures are the
containers' cgroup usage, capped by their 500m limit; every wait is on a condition with a generous
bound (two busy cores).

Most of its two minutes is waiting for metrics and for the scale-down window, so ``scripts/test``
runs it in the background lane; the loaded part takes the machine to itself
(:func:`tests.quiet.machine_to_myself`) so that neither the load nor the other lane's tests disturb
each other."""

from __future__ import annotations

import os
import pty
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest

from kubelab.images import ensure_images
from kubelab.testing import kubectl_binary
from tests.e2e.docker_harness import DockerCluster, running_cluster
from tests.quiet import machine_to_myself

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow, pytest.mark.background]
LAB = Path(__file__).resolve().parents[2] / "examples" / "tutorials" / "hpa"
IMAGE = "kubelab/hpa-example:1.0"
WINDOW = '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":30}}}}'
LOAD = "while sleep 0.01; do wget -q -O- http://php-apache; done"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox", "python"])
    docker_client.images.build(path=str(LAB / "hpa-example"), tag=IMAGE, rm=True, pull=False)  # the README's build
    with running_cluster(tmp_path_factory.mktemp("hpa"), docker_client, "--nodes", "2") as c:
        yield c


class Lines:
    """A kubectl process whose output ``fd`` (a pipe, or the test's side of a pseudo-terminal, which
    the test also types into) is read by a thread, line by line, until a line matches."""

    def __init__(self, process: subprocess.Popen[bytes], fd: int) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.fd = fd
        self.reader = threading.Thread(target=self._read, name="kubectl-output", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # a pseudo-terminal whose other side closed
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.replace(b"\r\n", b"\n").split(b"\n")
            for line in complete:
                self.lines.put(line.decode(errors="replace"))
            if pending.endswith(b"OK!"):  # the load generator prints its answers without newlines
                self.lines.put(pending.decode(errors="replace"))
                pending = b""
        if pending:
            self.lines.put(pending.decode(errors="replace"))
        self.lines.put(None)

    def until(self, what: str, match: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; output so far:\n" + "\n".join(self.seen[-20:])
            try:
                line = self.lines.get(timeout=min(left, 5))
            except queue.Empty:
                continue
            assert line is not None, f"kubectl ended before {what}:\n" + "\n".join(self.seen[-20:])
            self.seen.append(line)
            if match(line):
                return line


def _argv(cluster: DockerCluster, *args: str) -> tuple[list[str], dict[str, str]]:
    words = list(args)
    at = words.index("--") if "--" in words else len(words)
    words.insert(at, f"--cache-dir={cluster.state_dir / 'kc-hpa'}")
    return [str(kubectl_binary()), *words], {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}


@contextmanager
def watching_hpa(cluster: DockerCluster) -> Iterator[Lines]:
    """``kubectl get hpa php-apache --watch --no-headers`` while the block runs."""
    argv, env = _argv(cluster, "get", "hpa", "php-apache", "--watch", "--no-headers")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert process.stdout is not None
    try:
        yield Lines(process, process.stdout.fileno())
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def load_generator(cluster: DockerCluster) -> Iterator[Lines]:
    """The tutorial's ``kubectl run -i --tty load-generator --rm ...`` on a pseudo-terminal."""
    argv, env = _argv(cluster, "run", "-i", "--tty", "load-generator", "--rm", "--image=kubelab/busybox:1.35",
                      "--restart=Never", "--", "/bin/sh", "-c", LOAD)
    master, terminal = pty.openpty()
    process = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env,
                               start_new_session=True)
    os.close(terminal)
    output = Lines(process, master)
    try:
        yield output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        output.reader.join(timeout=30)  # it ends when the terminal's other side is closed
        os.close(master)
        cluster.kubectl("delete", "pod", "load-generator", "--ignore-not-found", "--grace-period=1", check=False)


def replicas(line: str) -> int:
    """REPLICAS of a ``get hpa`` row: NAME REFERENCE cpu: NOW/TARGET MINPODS MAXPODS REPLICAS AGE."""
    return int(line.split()[-2])


def utilization(line: str) -> int:
    """The current CPU utilization of a ``get hpa`` row (-1 while ``<unknown>``)."""
    now = line.split()[3].split("/")[0].rstrip("%")
    return int(now) if now.isdigit() else -1


def busiest_pod_millicores(cluster: DockerCluster) -> int:
    """The highest CPU of ``kubectl top pods -l run=php-apache`` (0 while metrics are not available)."""
    rows = cluster.kubectl("top", "pods", "-l", "run=php-apache", "--no-headers", check=False).stdout.splitlines()
    cpus = [row.split()[1] for row in rows if row.startswith("php-apache-")]
    return max((int(cpu.rstrip("m")) for cpu in cpus if cpu.endswith("m")), default=0)


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)


def test_walkthrough(cluster: DockerCluster) -> None:
    k = cluster.kubectl
    # 1. Run and expose the php-apache server; create the HorizontalPodAutoscaler (lab window: 30 s).
    k("apply", "-f", str(LAB / "php-apache.yaml"))
    k("rollout", "status", "deployment/php-apache", "--timeout=120s", timeout=130)
    autoscaled = k("autoscale", "deployment", "php-apache", "--cpu-percent=50", "--min=1", "--max=10").stdout
    assert autoscaled.strip() == "horizontalpodautoscaler.autoscaling/php-apache autoscaled"
    k("patch", "hpa", "php-apache", "--type=merge", "-p", WINDOW)
    assert cluster.json("get", "hpa", "php-apache")["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    server = cluster.containers(**{"io.kubernetes.container.name": "php-apache"})
    assert [c.attrs["HostConfig"]["NanoCpus"] for c in server] == [500_000_000], "limits.cpu 500m reaches Docker"

    with watching_hpa(cluster) as hpa:
        idle = hpa.until("a measured utilization", lambda line: utilization(line) >= 0, timeout=180)
        assert idle.split()[:3] == ["php-apache", "Deployment/php-apache", "cpu:"], idle
        assert replicas(idle) == 1 and utilization(idle) < 50, idle

        # 2. Increase the load and watch the HPA scale the Deployment up.
        with machine_to_myself(), load_generator(cluster) as load:
            load.until("the first answer", lambda line: line.endswith("OK!"), timeout=180)
            busy = hpa.until("a scale-up", lambda line: replicas(line) > 1, timeout=300)
            assert max(utilization(line) for line in hpa.seen) > 50, hpa.seen  # what made it scale
            described = k("describe", "hpa", "php-apache").stdout
            assert "cpu resource utilization (percentage of request) above target" in described, described
            assert cluster.json("get", "deployment", "php-apache")["spec"]["replicas"] >= replicas(busy)
            wait_for("kubectl top to show a busy pod", lambda: busiest_pod_millicores(cluster) >= 20, timeout=120)

            # 3. Stop the load with Ctrl-C: kubectl deletes its pod (--rm).
            os.write(load.fd, b"\x03")
            load.until("the pod's deletion", lambda line: 'pod "load-generator" deleted' in line, timeout=120)
            load.process.wait(timeout=60)

        hpa.until("the scale-down", lambda line: replicas(line) == 1, timeout=300)
    described = k("describe", "hpa", "php-apache").stdout
    assert "New size: 1; reason: All metrics below target" in described, described
    k("delete", "hpa", "php-apache")
    k("delete", "-f", str(LAB / "php-apache.yaml"))
