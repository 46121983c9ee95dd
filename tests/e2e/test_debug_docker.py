"""``kubectl debug`` and image pull back-off on real Docker containers with the real kubectl.

``kubectl debug POD -i --image=... --target=CONTAINER -- sh`` (``-it`` at a terminal) adds an
ephemeral container through ``pods/ephemeralcontainers``, the kubelet starts it in the target's
PID namespace and kubectl attaches to it: ``ps`` there sees the target's process (every pinned kubectl, 1.27 to 1.33). A
pod whose image is absent shows ``ErrImagePull``, then ``ImagePullBackOff`` with Kubernetes'
events; nothing is pulled (no registry is contacted). ``kubectl debug node/NAME``: ``test_debug_node_docker.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from kubelab.testing import kubectl, kubectl_versions
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "debugging"
TARGET = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: target, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: app, image: {BUSYBOX}, command: ["sleep", "3601"]}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("docker-debug"), docker_client, "--nodes", "1") as c:
        c.kubectl("create", "namespace", NS)
        c.kubectl("apply", "-f", "-", input=TARGET)
        c.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/target", "--timeout=90s", timeout=100)
        yield c


def wait_for(check: Callable[[], Any], timeout: float = 90, what: str = "",
             extra: Callable[[], Any] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r}, {extra() if extra else ''})")


@pytest.mark.parametrize("version", kubectl_versions() or [None])
def test_kubectl_debug_target_sees_the_target_processes(cluster: DockerCluster, version: str | None) -> None:
    name = f"debugger-{(version or 'default').replace('.', '-')}"
    result = kubectl("-n", NS, "debug", "target", "-i", f"--image={BUSYBOX}", "--target=app", "-c", name,
                     "--", "sh", kubeconfig=cluster.kubeconfig, version=version, input="ps\nexit\n",
                     check=False, timeout=120)
    assert "panic" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert "sleep 3601" in result.stdout, (result.stdout, result.stderr)
    pod = cluster.json("-n", NS, "get", "pod", "target")
    [spec] = [c for c in pod["spec"]["ephemeralContainers"] if c["name"] == name]
    assert spec["targetContainerName"] == "app"
    [status] = [c for c in pod["status"].get("ephemeralContainerStatuses") or [] if c["name"] == name]
    assert status["containerID"].startswith("docker://")
    assert pod["status"]["phase"] == "Running"
    assert [c["name"] for c in pod["status"]["containerStatuses"]] == ["app"]


def test_debug_container_logs_and_invalid_target(cluster: DockerCluster) -> None:
    cluster.kubectl("-n", NS, "debug", "target", f"--image={BUSYBOX}", "--target=app", "-c", "once",
                    "--", "ps")

    def finished() -> bool:
        pod = cluster.json("-n", NS, "get", "pod", "target")
        return any(c["name"] == "once" and "terminated" in c["state"]
                   for c in pod["status"].get("ephemeralContainerStatuses") or [])

    wait_for(finished, what="the ephemeral container to finish")
    assert "sleep 3601" in cluster.kubectl("-n", NS, "logs", "target", "-c", "once").stdout
    bad = cluster.kubectl("-n", NS, "debug", "target", f"--image={BUSYBOX}", "--target=nope", "-c", "bad",
                          "--", "true", check=False)
    assert bad.returncode != 0
    assert 'spec.ephemeralContainers[' in bad.stderr and 'targetContainerName: Not found: "nope"' in bad.stderr


def test_missing_image_err_image_pull_then_image_pull_backoff(cluster: DockerCluster) -> None:
    image = "kubelab/absent-for-debug:1.0"
    cluster.kubectl("-n", NS, "run", "missing", f"--image={image}", "--restart=Never")

    def status_column() -> str:
        rows = cluster.kubectl("-n", NS, "get", "pod", "missing", "--no-headers").stdout.split()
        return rows[2] if len(rows) > 2 else ""

    seen: set[str] = set()

    def both_seen() -> set[str] | None:
        seen.add(status_column())
        return seen if {"ErrImagePull", "ImagePullBackOff"} <= seen else None

    wait_for(both_seen, timeout=120, what="ErrImagePull then ImagePullBackOff",
             extra=lambda: (seen, cluster.kubectl("-n", NS, "describe", "pod", "missing").stdout))
    waiting = wait_for(lambda: (cluster.json("-n", NS, "get", "pod", "missing")["status"]["containerStatuses"][0]
                                ["state"].get("waiting") or {}).get("reason") == "ImagePullBackOff"
                       and cluster.json("-n", NS, "get", "pod", "missing"), what="ImagePullBackOff")
    message = waiting["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert message == f'Back-off pulling image "{image}"'
    events = json.loads(cluster.kubectl("-n", NS, "get", "events", "--field-selector",
                                        "involvedObject.name=missing", "-o", "json").stdout)["items"]
    messages = {e["message"] for e in events}
    assert any(m.startswith(f'Failed to pull image "{image}": ') for m in messages), messages
    assert {"Error: ErrImagePull", f'Back-off pulling image "{image}"', "Error: ImagePullBackOff"} <= messages
    assert not cluster.docker.images.list(name="kubelab/absent-for-debug")
