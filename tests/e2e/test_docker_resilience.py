"""Real containers under change and failure: rolling updates that never drop a request, readiness
driving endpoints, killed containers restarting, and a kubelet killed with SIGKILL coming back
without duplicating anything (issue 4's acceptance, on ``kubelab up --nodes 2``).

Only this module's own cluster and its containers are touched (found by the cluster label).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import docker
import pytest

from kubelab import launcher
from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster as Cluster
from tests.e2e.docker_harness import running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "res"
GRACE = 5
WEB = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 3
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe:
          httpGet: {{path: /index.html, port: 8080}}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec: {{command: ["sleep", "2"]}}
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
"""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[Cluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("docker-res"), docker_client, "--nodes", "2",
                         "--node-monitor-grace-period", str(GRACE), "--pod-eviction-timeout", str(GRACE)) as c:
        c.kubectl("create", "namespace", NS)
        c.kubectl("apply", "-f", "-", input=WEB)
        c.kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=90s")
        c.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
        yield c


@pytest.mark.exclusive
def test_rolling_update_with_readiness_and_max_unavailable_0_drops_no_request(cluster: Cluster) -> None:
    loop = ("i=0; while [ $i -lt 120 ]; do i=$((i+1)); "
            "if wget -qO- http://web/index.html >/dev/null 2>&1; then echo ok; else echo FAIL; fi; "
            "sleep 0.1; done")
    client = subprocess.Popen(
        ["/usr/bin/kubectl", "-n", NS, "exec", "client", "--", "sh", "-c", loop,
         f"--cache-dir={cluster.state_dir / 'exec-cache'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.state_dir / "kubeconfig")})
    try:
        time.sleep(1)
        cluster.kubectl("-n", NS, "set", "env", "deployment/web", "ROLL=1")
        cluster.kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=90s")
    finally:
        out, err = client.communicate(timeout=120)
    results = out.split()
    assert len(results) == 120, err
    assert results.count("FAIL") == 0, f"{results.count('FAIL')} failed requests during the rollout"
    assert len(cluster.json("-n", NS, "get", "rs")["items"]) == 2


def test_failing_readiness_takes_the_pod_out_of_the_endpoints(cluster: Cluster) -> None:
    pod = cluster.json("-n", NS, "get", "pods", "-l", "app=web")["items"][0]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]

    def addresses(field: str) -> set[str]:
        ep = cluster.json("-n", NS, "get", "endpoints", "web")
        return {a["ip"] for subset in ep.get("subsets") or [] for a in subset.get(field) or []}

    assert ip in addresses("addresses")
    cluster.kubectl("-n", NS, "exec", name, "--", "rm", "/www/index.html")
    wait_for(lambda: ip in addresses("notReadyAddresses") and ip not in addresses("addresses"), 30,
             "the unready pod to leave the ready endpoints")
    cluster.kubectl("-n", NS, "exec", name, "--", "sh", "-c", "echo ok > /www/index.html")
    wait_for(lambda: ip in addresses("addresses"), 30, "the pod to be ready again")


def test_killed_container_is_restarted_and_counted(cluster: Cluster) -> None:
    pod = cluster.json("-n", NS, "get", "pods", "-l", "app=web")["items"][0]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    app = [c for c in cluster.containers(**{"io.kubernetes.pod.uid": uid, "io.kubernetes.container.name": "httpd"})
           if c.status == "running"]
    assert len(app) == 1
    app[0].kill()

    def restarted() -> bool:
        status = cluster.json("-n", NS, "get", "pod", name)["status"]
        cs = (status.get("containerStatuses") or [{}])[0]
        return cs.get("restartCount", 0) >= 1 and cs.get("ready") is True

    wait_for(restarted, 60, "the killed container to be restarted and ready")
    cs = cluster.json("-n", NS, "get", "pod", name)["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    previous = cluster.kubectl("-n", NS, "logs", name, "--previous", check=False)
    assert previous.returncode == 0, previous.stderr


def test_kubelet_killed_and_restarted_keeps_pods_without_duplicates(cluster: Cluster) -> None:
    before = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["containerID"]
              for p in cluster.json("-n", NS, "get", "pods", "-l", "app=web")["items"]}
    count_before = len([c for c in cluster.containers() if c.status == "running"])
    for node in ("node-1", "node-2"):
        process = launcher.read_process(cluster.state_dir, f"kubelet-{node}")
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
    time.sleep(1)
    result = cluster.up()
    assert result.returncode == 0, result.stderr
    time.sleep(5)  # let both kubelets resync their pods
    after = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["containerID"]
             for p in cluster.json("-n", NS, "get", "pods", "-l", "app=web")["items"]}
    assert after == before  # same pods, same containers
    assert len([c for c in cluster.containers() if c.status == "running"]) == count_before
    for uid in after:
        apps = [c for c in cluster.containers(**{"io.kubernetes.pod.uid": uid}) if c.status == "running"]
        assert len(apps) == 2  # pause + httpd, nothing duplicated


def test_exec_with_a_tty_on_a_real_container(cluster: Cluster) -> None:
    command = (f"/usr/bin/kubectl --cache-dir={cluster.state_dir / 'tty-cache'} -n {NS} exec -it client -- "
               "sh -c 'tty; exit 4'")
    result = subprocess.run(["script", "-qec", command, "/dev/null"], input="", capture_output=True, text=True,
                            timeout=60, env={**os.environ, "KUBECONFIG": str(cluster.state_dir / "kubeconfig")})
    assert result.returncode == 4, result.stdout + result.stderr
    assert "/dev/pts/" in result.stdout


# Last in the module: it stops node-2 (pods there, the client among them, are evicted).
def test_node_stopped_for_good_has_its_pods_rescheduled_and_cleaned_up_when_it_returns(cluster: Cluster) -> None:
    pods = cluster.json("-n", NS, "get", "pods", "-l", "app=web")["items"]
    on_node2 = {p["metadata"]["uid"] for p in pods if p["spec"]["nodeName"] == "node-2"}
    if not on_node2:  # make sure node-2 runs some of them
        cluster.kubectl("cordon", "node-1")
        cluster.kubectl("-n", NS, "rollout", "restart", "deployment/web")
        cluster.kubectl("-n", NS, "rollout", "status", "deployment/web", "--timeout=90s")
        cluster.kubectl("uncordon", "node-1")
        pods = cluster.json("-n", NS, "get", "pods", "-l", "app=web")["items"]
        on_node2 = {p["metadata"]["uid"] for p in pods if p["spec"]["nodeName"] == "node-2"}
    assert on_node2
    launcher.stop_process(cluster.state_dir, "kubelet-node-2", grace=5)

    def rescheduled() -> bool:
        live = [p for p in cluster.json("-n", NS, "get", "pods", "-l", "app=web")["items"]
                if not p["metadata"].get("deletionTimestamp") and p["spec"].get("nodeName") == "node-1"
                and (p["status"].get("containerStatuses") or [{}])[0].get("ready")]
        return len(live) == 3

    wait_for(rescheduled, 90, "the stopped node's pods to run on node-1")
    assert any(c.status == "running" for uid in on_node2
               for c in cluster.containers(**{"io.kubernetes.pod.uid": uid}))  # node-2's containers linger
    assert cluster.up().returncode == 0  # node-2 returns
    wait_for(lambda: not any(c.status == "running" for uid in on_node2
                             for c in cluster.containers(**{"io.kubernetes.pod.uid": uid})),
             60, "the returned node to clean up its evicted pods' containers")

