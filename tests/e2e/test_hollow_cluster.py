"""A whole cluster on hollow nodes, driven by the real kubectl.

One ``kubelab up --hollow-nodes 5`` per module (lab-shortened node timeouts: 5 s grace, 5 s
toleration); each test works in its own namespace. Rollouts are checked the way
``kubectl rollout status`` checks them, and surge/unavailability bounds from a watch history.

The whole module runs under the network audit (``tests.netaudit``): the test process and every
kubelab process it starts (``kubelab up``, the apiserver, the scheduler, the controller-manager,
the hollow kubelets) refuse and record any connect outside 127.0.0.0/8, and a test fails if one
was attempted while it ran. ``kubectl logs`` / ``exec`` on hollow pods reach the hollow kubelet
endpoints on their loopback addresses.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubelab import launcher
from kubelab.testing import kubectl, start_apiserver
from machinery.client import ApiClient
from machinery.resources import NODES, PODS, REPLICASETS
from tests.netaudit import NetAudit

pytestmark = [pytest.mark.kubectl, pytest.mark.slow]

GRACE = 5
EXTRA = "extra-1"  # the node of the one-node hollow kubelet the eviction test starts and stops
_names = itertools.count()


@dataclass
class Cluster:
    state_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def run(self, *args: str, check: bool = True, timeout: float = 90, input: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=self.kubeconfig, check=check, timeout=timeout, input=input)

    def kubelab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelab", *args, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=120, check=True)

    def up(self) -> None:
        """``kubelab up`` (again): starts whatever is not running, with the lab-shortened timeouts."""
        self.kubelab("up", "--port", "0", "--hollow-nodes", "5", "--node-monitor-grace-period", str(GRACE),
                     "--pod-eviction-timeout", str(GRACE))

    def namespace(self) -> str:
        name = f"e2e-{next(_names)}"
        self.run("create", "namespace", name)
        return name

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture(autouse=True)
def _nothing_dialled_outside(netaudit_processes: NetAudit) -> Iterator[None]:
    """Fail the test if any process attempted a connect outside loopback while it ran."""
    yield
    netaudit_processes.check()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, netaudit_processes: NetAudit) -> Iterator[Cluster]:
    state_dir = tmp_path_factory.mktemp("hollow")
    c = Cluster(state_dir)
    c.up()
    try:
        yield c
    finally:
        subprocess.run([sys.executable, "-m", "kubelab", "down", "--state-dir", str(state_dir)],
                       capture_output=True, timeout=120, check=False)


def deployment_yaml(name: str, replicas: int, image: str = "kubelab/nginx:1.22", *, surge: str = "1",
                    unavailable: str = "1", extra_spec: str = "") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: {replicas}
  strategy:
    rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
{extra_spec}      containers:
      - name: web
        image: {image}
        resources:
          requests: {{cpu: 10m, memory: 16Mi}}
"""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def pods(c: Cluster, ns: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.json("get", "pods", "-n", ns, "-l", selector)["items"]
    return items


def test_rollout_update_history_undo_restart_pause_resume(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("apply", "-n", ns, "-f", "-", input=deployment_yaml("web", 4))
    assert "successfully rolled out" in c.run("rollout", "status", "-n", ns, "deploy/web", timeout=90).stdout
    c.run("set", "image", "-n", ns, "deploy/web", "web=kubelab/nginx:1.23")
    c.run("rollout", "status", "-n", ns, "deploy/web", timeout=90)
    rss = c.json("get", "rs", "-n", ns, "-l", "app=web")["items"]
    assert len(rss) == 2
    history = c.run("rollout", "history", "-n", ns, "deploy/web").stdout.split()
    assert history[history.index("CHANGE-CAUSE") + 1:] == ["1", "<none>", "2", "<none>"]
    assert "rolled back" in c.run("rollout", "undo", "-n", ns, "deploy/web").stdout
    c.run("rollout", "status", "-n", ns, "deploy/web", timeout=90)
    images = {p["spec"]["containers"][0]["image"] for p in pods(c, ns, "app=web")
              if not p["metadata"].get("deletionTimestamp")}
    assert images == {"kubelab/nginx:1.22"}
    assert len(c.json("get", "rs", "-n", ns, "-l", "app=web")["items"]) == 2  # the old RS was reused
    c.run("rollout", "undo", "-n", ns, "deploy/web", "--to-revision=2")
    c.run("rollout", "status", "-n", ns, "deploy/web", timeout=90)
    d = c.json("get", "deploy", "-n", ns, "web")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "kubelab/nginx:1.23"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    c.run("rollout", "restart", "-n", ns, "deploy/web")
    c.run("rollout", "status", "-n", ns, "deploy/web", timeout=90)
    assert len(c.json("get", "rs", "-n", ns, "-l", "app=web")["items"]) == 3
    c.run("rollout", "pause", "-n", ns, "deploy/web")
    c.run("set", "image", "-n", ns, "deploy/web", "web=kubelab/nginx:1.24")
    time.sleep(2)
    assert all(p["spec"]["containers"][0]["image"] != "kubelab/nginx:1.24" for p in pods(c, ns, "app=web"))
    c.run("rollout", "resume", "-n", ns, "deploy/web")
    c.run("rollout", "status", "-n", ns, "deploy/web", timeout=90)
    live = [p for p in pods(c, ns, "app=web") if not p["metadata"].get("deletionTimestamp")]
    assert {p["spec"]["containers"][0]["image"] for p in live} == {"kubelab/nginx:1.24"} and len(live) == 4


def _ready(pod: dict[str, Any]) -> bool:
    return any(cond.get("type") == "Ready" and cond.get("status") == "True"
               for cond in (pod.get("status") or {}).get("conditions") or [])


async def _record_rollout(kubeconfig: Path, ns: str, stop: asyncio.Event) -> list[tuple[int, int]]:
    """(sum of the ReplicaSets' desired replicas, ready pods) after every event, until ``stop``.

    maxSurge bounds the ReplicaSets' replicas (as in Kubernetes: a scaled-down ReplicaSet's pod
    may outlive the scale-up of the new one by a moment); maxUnavailable bounds ready pods.
    """
    samples: list[tuple[int, int]] = []
    pods_by_name: dict[str, dict[str, Any]] = {}
    replicas_by_rs: dict[str, int] = {}

    def sample() -> None:
        ready = sum(1 for p in pods_by_name.values() if not p["metadata"].get("deletionTimestamp") and _ready(p))
        samples.append((sum(replicas_by_rs.values()), ready))

    async with ApiClient.from_kubeconfig(kubeconfig) as client:
        async def follow(resource: Any, apply: Callable[[str, dict[str, Any]], None]) -> None:
            listed = await client.list(resource, namespace=ns)
            for obj in listed["items"]:
                apply("ADDED", obj)
            async for ev in client.watch(resource, namespace=ns, timeout_seconds=120,
                                         resource_version=listed["metadata"]["resourceVersion"]):
                if ev.type != "BOOKMARK":
                    apply(ev.type, ev.object)
                    sample()

        def on_pod(kind: str, pod: dict[str, Any]) -> None:
            if kind == "DELETED":
                pods_by_name.pop(pod["metadata"]["name"], None)
            else:
                pods_by_name[pod["metadata"]["name"]] = pod

        def on_rs(kind: str, rs: dict[str, Any]) -> None:
            name = rs["metadata"]["name"]
            replicas_by_rs[name] = 0 if kind == "DELETED" else int(rs["spec"].get("replicas", 0))

        tasks = [asyncio.create_task(follow(PODS, on_pod)), asyncio.create_task(follow(REPLICASETS, on_rs))]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return samples


def test_rolling_update_respects_surge_and_unavailable(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    replicas, surge, unavailable = 6, 2, 1
    c.run("apply", "-n", ns, "-f", "-", input=deployment_yaml("roll", replicas, surge=str(surge),
                                                                unavailable=str(unavailable)))
    c.run("rollout", "status", "-n", ns, "deploy/roll", timeout=90)

    async def scenario() -> list[tuple[int, int]]:
        stop = asyncio.Event()
        recorder = asyncio.create_task(_record_rollout(c.kubeconfig, ns, stop))
        await asyncio.sleep(1)
        await asyncio.to_thread(c.run, "set", "image", "-n", ns, "deploy/roll", "web=kubelab/nginx:1.23")
        await asyncio.to_thread(c.run, "rollout", "status", "-n", ns, "deploy/roll", timeout=90)
        await asyncio.sleep(1)
        stop.set()
        return await recorder

    samples = asyncio.run(scenario())
    assert samples, "the watch saw no pod events"
    assert max(desired for desired, _ in samples) <= replicas + surge
    assert min(ready for _, ready in samples) >= replicas - unavailable
    assert len(c.json("get", "rs", "-n", ns)["items"]) == 2


def test_scale_delete_cascade_and_orphan(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("apply", "-n", ns, "-f", "-", input=deployment_yaml("sc", 2))
    c.run("rollout", "status", "-n", ns, "deploy/sc", timeout=90)
    c.run("scale", "-n", ns, "deploy/sc", "--replicas=5")
    c.run("rollout", "status", "-n", ns, "deploy/sc", timeout=90)
    assert len(pods(c, ns, "app=sc")) == 5
    c.run("scale", "-n", ns, "deploy/sc", "--replicas=1")
    wait_for(lambda: len(pods(c, ns, "app=sc")) == 1, 60, "scale down to 1")
    c.run("delete", "-n", ns, "deploy/sc", timeout=90)
    wait_for(lambda: not pods(c, ns, "app=sc") and not c.json("get", "rs", "-n", ns)["items"], 60,
             "cascading delete")
    c.run("apply", "-n", ns, "-f", "-", input=deployment_yaml("orph", 2))
    c.run("rollout", "status", "-n", ns, "deploy/orph", timeout=90)
    c.run("delete", "-n", ns, "deploy/orph", "--cascade=orphan", timeout=90)
    time.sleep(3)
    rss = c.json("get", "rs", "-n", ns)["items"]
    assert len(rss) == 1 and not rss[0]["metadata"].get("ownerReferences")
    assert len(pods(c, ns, "app=orph")) == 2


def test_cordon_drain_uncordon(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("apply", "-n", ns, "-f", "-", input=deployment_yaml("dr", 5))
    c.run("rollout", "status", "-n", ns, "deploy/dr", timeout=90)
    node = pods(c, ns, "app=dr")[0]["spec"]["nodeName"]
    c.run("cordon", node)
    out = c.run("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", timeout=120).stdout
    assert f"node/{node} drained" in out
    c.run("rollout", "status", "-n", ns, "deploy/dr", timeout=90)
    live = [p for p in pods(c, ns, "app=dr") if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 5 and all(p["spec"]["nodeName"] != node for p in live)
    assert c.json("get", "node", node)["spec"].get("unschedulable") is True
    c.run("uncordon", node)
    assert not c.json("get", "node", node)["spec"].get("unschedulable")


def test_describe_pod_shows_scheduling_reasons_and_unschedulable_pod_waits(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("run", "small", "-n", ns, "--image=kubelab/busybox:1.35")
    wait_for(lambda: c.json("get", "pod", "-n", ns, "small")["status"].get("phase") == "Running", 30, "small running")
    described = c.run("describe", "pod", "-n", ns, "small").stdout
    assert "Successfully assigned" in described and "score" in described and "runners-up" in described
    big = json.dumps({"spec": {"containers": [{"name": "big", "image": "kubelab/busybox:1.35",
                                               "resources": {"requests": {"cpu": "100"}}}]}})
    c.run("run", "big", "-n", ns, "--image=kubelab/busybox:1.35", f"--overrides={big}")

    def failed_scheduling() -> bool:
        return "FailedScheduling" in c.run("describe", "pod", "-n", ns, "big").stdout

    wait_for(failed_scheduling, 30, "a FailedScheduling event")
    described = c.run("describe", "pod", "-n", ns, "big").stdout
    assert "0/5 nodes are available: 5 Insufficient cpu." in described
    assert c.json("get", "pod", "-n", ns, "big")["status"]["phase"] == "Pending"


def test_scheduler_stopped_leaves_pods_pending_until_it_returns(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    launcher.stop_process(c.state_dir, "scheduler", grace=5)
    try:
        c.run("run", "waiting", "-n", ns, "--image=kubelab/busybox:1.35")
        time.sleep(3)
        pod = c.json("get", "pod", "-n", ns, "waiting")
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    finally:
        c.up()  # restarts what is missing
    wait_for(lambda: bool(c.json("get", "pod", "-n", ns, "waiting")["spec"].get("nodeName")), 30,
             "the restarted scheduler to bind the pod")


def test_controller_manager_killed_mid_rollout_finishes_exactly(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("apply", "-n", ns, "-f", "-", input=deployment_yaml("cm", 6))
    c.run("rollout", "status", "-n", ns, "deploy/cm", timeout=90)
    c.run("set", "image", "-n", ns, "deploy/cm", "web=kubelab/nginx:1.23")
    time.sleep(0.5)
    process = launcher.read_process(c.state_dir, "controller-manager")
    assert process is not None
    launcher.stop_pid(process.pid, start_time=process.start_time, grace=0.1)  # SIGTERM then SIGKILL
    time.sleep(1)
    c.up()
    c.run("rollout", "status", "-n", ns, "deploy/cm", timeout=120)
    wait_for(lambda: len(pods(c, ns, "app=cm")) == 6, 60, "exactly 6 pods")
    live = pods(c, ns, "app=cm")
    assert {p["spec"]["containers"][0]["image"] for p in live} == {"kubelab/nginx:1.23"}
    assert all(p["metadata"].get("ownerReferences") for p in live)


def test_stopped_node_has_its_pods_evicted_to_the_others(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    kubeconfig = launcher.component_kubeconfig(c.state_dir, "kubelet-extra", user="system:node:extra",
                                               groups=["system:nodes"])
    # One more hollow node, in its own process so that it can be stopped alone: "extra-1".
    launcher.start_process(c.state_dir, "kubelet-extra", launcher.kubelet_command(
        kubeconfig=kubeconfig, node_name="extra", hollow=True, count=1,
        extra_args=["--node-lease-renew-interval", "1", "--node-index-offset", "100"]))
    try:
        def extra_ready() -> bool:
            got = c.run("get", "node", EXTRA, "-o", "json", check=False)
            return got.returncode == 0 and any(
                cond["type"] == "Ready" and cond["status"] == "True"
                for cond in (json.loads(got.stdout).get("status") or {}).get("conditions", []))

        wait_for(extra_ready, 30, "node extra Ready")
        others = [n["metadata"]["name"] for n in c.json("get", "nodes")["items"] if n["metadata"]["name"] != EXTRA]
        for node in others:
            c.run("cordon", node)
        c.run("apply", "-n", ns, "-f", "-", input=deployment_yaml("ev", 3))
        c.run("rollout", "status", "-n", ns, "deploy/ev", timeout=90)
        assert {p["spec"]["nodeName"] for p in pods(c, ns, "app=ev")} == {EXTRA}
        for node in others:
            c.run("uncordon", node)
    finally:
        launcher.stop_process(c.state_dir, "kubelet-extra", grace=5)

    def replaced() -> bool:
        live = [p for p in pods(c, ns, "app=ev") if not p["metadata"].get("deletionTimestamp")
                and p["spec"].get("nodeName") not in (None, EXTRA) and _ready(p)]
        return len(live) == 3

    wait_for(replaced, 60, "pods of the stopped node to be evicted and replaced elsewhere")
    node = c.json("get", "node", EXTRA)
    taints = {t["key"] for t in node["spec"].get("taints", [])}
    assert "node.kubernetes.io/unreachable" in taints


def test_hollow_nodes_and_pods_live_on_loopback(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    nodes = c.json("get", "nodes")["items"]
    addresses = [a["address"] for n in nodes for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
    assert len(set(addresses)) == len(nodes) and all(a.startswith("127.200.0.") for a in addresses)
    assert all(n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0 for n in nodes)
    c.run("run", "lo", "-n", ns, "--image=kubelab/busybox:1.35")
    wait_for(lambda: c.json("get", "pod", "-n", ns, "lo")["status"].get("phase") == "Running", 30, "pod lo running")
    status = c.json("get", "pod", "-n", ns, "lo")["status"]
    assert status["podIP"].startswith("127.") and status["hostIP"].startswith("127.200.0.")


def test_kubectl_logs_and_exec_on_a_hollow_pod(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("run", "talker", "-n", ns, "--image=kubelab/busybox:1.35")
    wait_for(lambda: c.json("get", "pod", "-n", ns, "talker")["status"].get("phase") == "Running", 30,
             "pod talker running")
    logs = c.run("logs", "-n", ns, "talker").stdout
    assert logs.startswith("hollow container talker started: image kubelab/busybox:1.35")
    assert "(simulated: no process runs)" in logs
    stamped = c.run("logs", "-n", ns, "talker", "--tail=1", "--timestamps").stdout
    assert stamped.split(" ", 1)[1] == logs.splitlines()[-1] + "\n"
    for verb in (["exec", "-n", ns, "talker", "--", "sh", "-c", "echo hi"], ["attach", "-n", ns, "talker"],
                 ["port-forward", "-n", ns, "pod/talker", ":80"]):
        refused = c.run(*verb, check=False, timeout=60)
        assert refused.returncode != 0
        assert "pods of hollow node" in refused.stderr and "run no processes" in refused.stderr, refused.stderr


def test_the_apiserver_refuses_kubelets_outside_its_networks(tmp_path: Path) -> None:
    """``--allowed-networks`` reaches the apiserver process; a node elsewhere is refused, not dialled."""

    async def far_pod(kubeconfig: Path) -> None:
        async with ApiClient.from_kubeconfig(kubeconfig) as client:
            node = await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "far"}})
            node["status"] = {"addresses": [{"type": "InternalIP", "address": "10.200.0.1"}],
                              "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
            await client.update(NODES, node, subresource="status")
            await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "p", "namespace": "default"},
                                       "spec": {"nodeName": "far", "containers": [{"name": "c", "image": "x"}]}})

    with start_apiserver(tmp_path / "state", allowed_networks=["10.244.0.0/16"]) as server:
        asyncio.run(far_pod(server.kubeconfig))
        result = kubectl("logs", "p", kubeconfig=server.kubeconfig, check=False)
    assert result.returncode != 0
    assert "refusing to connect to the kubelet of node far at 10.200.0.1" in result.stderr
    assert "allowed: 127.0.0.0/8, ::1/128, 10.96.0.0/12, 10.244.0.0/16" in result.stderr
