"""Rolling updates that drop no request: the first lab's own manifest, ten rollouts in a row.

``examples/first-lab/web.yaml`` (nginx, readiness probe, ``preStop`` sleep) runs on ``kubelab up
--nodes 2``. A client pod sends requests back to back to the Service's ClusterIP, through the node's
service proxy, while the Deployment is rolled ten times; every one of them must succeed. The
``preStop`` pause is what makes this hold: without it a terminating nginx stops listening while the
proxy still sends it new connections (the lab's README, part 4, tells the story).

The nginx containers stop with the image's STOPSIGNAL, SIGQUIT (nginx's graceful shutdown).

Only this module's own cluster and its containers are touched.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

WEB = Path(__file__).resolve().parents[2] / "examples" / "first-lab" / "web.yaml"
ROLLOUTS = 10


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox", "nginx"])
    with running_cluster(tmp_path_factory.mktemp("zero-downtime"), docker_client, "--nodes", "2") as c:
        c.kubectl("apply", "-f", str(WEB))
        c.kubectl("run", "client", "--image", BUSYBOX, "--", "sleep", "3600")
        c.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
        c.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=90s")
        yield c


def _settled(cluster: DockerCluster) -> bool:
    """Three web pods, none of them terminating."""
    pods = cluster.json("get", "pods", "-l", "app=web")["items"]
    return len(pods) == 3 and not any(p["metadata"].get("deletionTimestamp") for p in pods)


@pytest.mark.exclusive
def test_ten_rolling_updates_under_load_drop_no_request(cluster: DockerCluster) -> None:
    ip = cluster.json("get", "service", "web")["spec"]["clusterIP"]
    # Back-to-back requests until /tmp/stop appears; silent until then, then a summary and each error seen.
    # Each request is bounded (a request that hangs counts as failed, so the summary always arrives).
    loop = (f"ok=0; fail=0; while [ ! -f /tmp/stop ]; do "
            f"if timeout 10 wget -q -O /dev/null http://{ip}/ 2>/tmp/err; then ok=$((ok+1)); "
            "else fail=$((fail+1)); cat /tmp/err >> /tmp/failures; fi; done; "
            "echo \"ok=$ok fail=$fail\"; cat /tmp/failures 2>/dev/null")
    client = subprocess.Popen(
        ["/usr/bin/kubectl", f"--cache-dir={cluster.state_dir / 'exec-cache'}", "exec", "client", "--",
         "sh", "-c", loop],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
    try:
        started = time.monotonic()
        for round_ in range(1, ROLLOUTS + 1):
            cluster.kubectl("set", "env", "deployment/web", f"ROLLOUT={round_}")
            cluster.kubectl("rollout", "status", "deployment/web", "--timeout=180s", timeout=200)
        # The last old pods are still in their preStop pause: the test covers their whole exit.
        wait_for(lambda: _settled(cluster), 120, "the old pods to finish terminating")
        rolled = time.monotonic() - started
    finally:
        cluster.kubectl("exec", "client", "--", "touch", "/tmp/stop", check=False)
        out, err = client.communicate(timeout=180)
    summary = re.search(r"ok=(\d+) fail=(\d+)", out)
    assert summary, f"no summary from the request loop: {out!r} {err!r}"
    ok, failed = int(summary[1]), int(summary[2])
    print(f"{ROLLOUTS} rollouts in {rolled:.0f}s: {ok + failed} requests, {failed} failed")
    assert failed == 0, f"{failed} of {ok + failed} requests failed during {ROLLOUTS} rollouts:\n{out}"
    assert ok >= 100, f"the request loop barely ran ({ok} requests): {err}"
    deployment = cluster.json("get", "deployment", "web")
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == str(ROLLOUTS + 1)
    assert deployment["status"].get("updatedReplicas") == deployment["status"].get("readyReplicas") == 3


def test_nginx_is_stopped_with_its_graceful_signal(cluster: DockerCluster) -> None:
    """The image's STOPSIGNAL (SIGQUIT: finish the requests in flight) reaches the pod's container."""
    containers = cluster.containers(**{"io.kubernetes.container.name": "nginx"})
    assert containers
    signals = {c.attrs["Config"].get("StopSignal") for c in containers}
    assert signals == {"SIGQUIT"}, f"{signals}: rebuild the image (kubelab image build --force nginx)"
