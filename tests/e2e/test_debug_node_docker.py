"""``kubectl debug node/NAME`` on a real Docker node with the real kubectl.

kubectl creates ``node-debugger-NAME-xxxxx``: bound to the node, ``hostNetwork``, ``hostPID``,
``hostIPC``, the node's ``/`` as a hostPath volume at ``/host``, every taint tolerated. The pod
must run in the host's namespaces and see the host's files: ``cat /host/etc/hostname`` prints the
host's ``/etc/hostname`` (every pinned kubectl, 1.27 to 1.33), the pod reaches Succeeded and
reports the node's InternalIP as its IP. The namespace links inside the pod are the host's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from kubelab.testing import kubectl, kubectl_versions
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NODE = "node-1"
CREATED = re.compile(r"Creating debugging pod (node-debugger-[\w-]+) with container (\w+) on node ([\w-]+)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("docker-debug-node"), docker_client, "--nodes", "1",
                         "--no-mesh") as c:
        yield c


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def debug_node(cluster: DockerCluster, command: list[str], version: str | None = None) -> tuple[str, dict[str, Any]]:
    """Run ``kubectl debug node/NODE --image=BUSYBOX -- COMMAND``; the pod's name and its object once finished."""
    result = kubectl("debug", f"node/{NODE}", f"--image={BUSYBOX}", "--", *command, kubeconfig=cluster.kubeconfig,
                     version=version, check=False, timeout=120)
    assert result.returncode == 0 and "panic" not in result.stderr, result.stderr
    match = CREATED.search(result.stdout + result.stderr)
    assert match is not None, (result.stdout, result.stderr)
    assert match.group(3) == NODE
    name = match.group(1)

    def finished() -> dict[str, Any] | None:
        pod: dict[str, Any] = cluster.json("get", "pod", name)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    pod = wait_for(finished, 120, f"debug pod {name} to finish")
    return name, pod


@pytest.mark.parametrize("version", kubectl_versions() or [None])
def test_node_debug_pod_reads_the_host_root(cluster: DockerCluster, version: str | None) -> None:
    name, pod = debug_node(cluster, ["cat", "/host/etc/hostname"], version)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    spec = pod["spec"]
    assert spec["nodeName"] == NODE and spec["hostNetwork"] and spec["hostPID"] and spec["hostIPC"]
    assert cluster.kubectl("logs", name).stdout == Path("/etc/hostname").read_text()
    node = cluster.json("get", "node", NODE)
    [internal] = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert pod["status"]["podIP"] == internal == pod["status"]["hostIP"]
    cluster.kubectl("delete", "pod", name, "--wait=false")


def test_node_debug_pod_runs_in_the_host_namespaces(cluster: DockerCluster) -> None:
    script = "for ns in net pid ipc; do readlink /proc/self/ns/$ns; done"
    name, pod = debug_node(cluster, ["sh", "-c", script])
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    inside = cluster.kubectl("logs", name).stdout.split()
    # The engine runs on this machine: the host's namespaces are this process's.
    assert inside == [os.readlink(f"/proc/self/ns/{ns}") for ns in ("net", "pid", "ipc")]
    cluster.kubectl("delete", "pod", name, "--wait=false")


def test_ordinary_pod_keeps_its_own_namespaces(cluster: DockerCluster) -> None:
    """The host namespaces are the debug pod's only: a plain pod still gets its own."""
    script = "for ns in net pid ipc; do readlink /proc/self/ns/$ns; done"
    cluster.kubectl("run", "plain", f"--image={BUSYBOX}", "--restart=Never", "--", "sh", "-c", script)
    wait_for(lambda: cluster.json("get", "pod", "plain")["status"].get("phase") == "Succeeded", 120,
             "pod plain to succeed")
    inside = cluster.kubectl("logs", "plain").stdout.split()
    host = [os.readlink(f"/proc/self/ns/{ns}") for ns in ("net", "pid", "ipc")]
    assert len(inside) == 3 and all(a != b for a, b in zip(inside, host, strict=True)), (inside, host)
