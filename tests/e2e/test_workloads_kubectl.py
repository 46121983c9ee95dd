"""Jobs, CronJobs, StatefulSets, DaemonSets and ReplicationControllers driven by the real kubectl
on a hollow-node cluster (``kubelab up --hollow-nodes 3``, RBAC on).

Hollow containers run no process: a Job's pods carry ``kubelab.dev/fake-complete-after`` so their
containers exit 0 after a second, as a short batch task would. The module runs under the network
audit like the other hollow-cluster suites.
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
from kubelab.testing import kubectl, kubectl_versions, start_apiserver
from machinery.client import ApiClient
from machinery.resources import PODS
from tests.netaudit import NetAudit

pytestmark = [pytest.mark.kubectl, pytest.mark.slow]

_names = itertools.count()
EXTRA = "wl-extra-1"
COMPLETE_AFTER = "kubelab.dev/fake-complete-after"


@dataclass
class Cluster:
    state_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def run(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=self.kubeconfig, check=check, timeout=timeout, input=input)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def namespace(self) -> str:
        name = f"wl-{next(_names)}"
        self.run("create", "namespace", name)
        return name


@pytest.fixture(autouse=True)
def _nothing_dialled_outside(netaudit_processes: NetAudit) -> Iterator[None]:
    yield
    netaudit_processes.check()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, netaudit_processes: NetAudit) -> Iterator[Cluster]:
    state_dir = tmp_path_factory.mktemp("workloads")
    subprocess.run([sys.executable, "-m", "kubelab", "up", "--port", "0", "--hollow-nodes", "3",
                    "--state-dir", str(state_dir)], capture_output=True, text=True, timeout=180, check=True)
    try:
        yield Cluster(state_dir)
    finally:
        subprocess.run([sys.executable, "-m", "kubelab", "down", "--state-dir", str(state_dir)],
                       capture_output=True, timeout=120, check=False)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


JOB = """\
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  completions: {completions}
  parallelism: {parallelism}
  template:
    metadata:
      annotations: {{kubelab.dev/fake-complete-after: "1"}}
    spec:
      restartPolicy: {restart}
      containers:
      - {{name: main, image: busybox, command: [echo, done]}}
"""


def test_job_completes_and_kubectl_wait_sees_it(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("apply", "-n", ns, "-f", "-", input=JOB.format(name="pi", completions=3, parallelism=2, restart="Never"))
    c.run("wait", "-n", ns, "--for=condition=complete", "job/pi", "--timeout=120s", timeout=150)
    rows = _table(c.run("get", "jobs", "-n", ns).stdout)
    assert rows[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows[1][:3] == ["pi", "Complete", "3/3"]
    job = c.json("get", "job", "pi", "-n", ns)
    assert job["status"]["succeeded"] == 3
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}
    pods = c.json("get", "pods", "-n", ns, "-l", "job-name=pi")["items"]
    assert len(pods) == 3 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert all("batch.kubernetes.io/job-tracking" not in (p["metadata"].get("finalizers") or []) for p in pods)


def test_kubectl_create_job_and_bad_jobs(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("create", "job", "hello", "-n", ns, "--image=busybox", "--", "echo", "hi")

    def running() -> bool:
        pods = c.json("get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=hello")["items"]
        return len(pods) == 1 and pods[0]["status"].get("phase") == "Running"
    wait_for(running, 60, "the job's pod running")
    bad = c.run("apply", "-n", ns, "-f", "-", check=False,
                input=JOB.format(name="bad", completions=1, parallelism=1, restart="Always"))
    assert bad.returncode != 0
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", ' \
           '"Never"' in bad.stderr
    # completions < parallelism is valid, as on Kubernetes: at most `completions` pods run.
    c.run("apply", "-n", ns, "-f", "-", input=JOB.format(name="few", completions=1, parallelism=3,
                                                        restart="OnFailure"))
    c.run("wait", "-n", ns, "--for=condition=complete", "job/few", "--timeout=120s", timeout=150)
    assert len(c.json("get", "pods", "-n", ns, "-l", "job-name=few")["items"]) == 1


def test_cronjob_and_a_job_from_it(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("create", "cronjob", "tick", "-n", ns, "--image=busybox", "--schedule=*/1 * * * *", "--", "date")
    rows = _table(c.run("get", "cronjobs", "-n", ns).stdout)
    assert rows[0] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert rows[1][:6] == ["tick", "*/1", "*", "*", "*", "*"]
    c.run("create", "job", "manual", "-n", ns, "--from=cronjob/tick")
    job = c.json("get", "job", "manual", "-n", ns)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    bad = c.run("create", "cronjob", "bad", "-n", ns, "--image=busybox", "--schedule=61 * * * *", check=False)
    assert bad.returncode != 0 and 'spec.schedule: Invalid value: "61 * * * *"' in bad.stderr
    tz = c.run("apply", "-n", ns, "-f", "-", check=False, input="""\
apiVersion: batch/v1
kind: CronJob
metadata: {name: tz}
spec:
  schedule: "@hourly"
  timeZone: Mars/Olympus
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}}
""")
    assert tz.returncode != 0 and 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone' in tz.stderr
    # The schedule fires within a minute (plus the controller's resync margin).

    def scheduled() -> bool:
        status = c.json("get", "cronjob", "tick", "-n", ns).get("status") or {}
        return bool(status.get("lastScheduleTime")) and bool(status.get("active"))
    wait_for(scheduled, 90, "the cronjob's first scheduled job")


STS = """\
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80, name: web}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: kubelab/nginx:1.22, ports: [{containerPort: 80, name: web}]}
"""


def _ready_since(pod: dict[str, Any]) -> str:
    return str(next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready"))


def test_statefulset_ordered_identity_dns_scale_and_rollout(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("apply", "-n", ns, "-f", "-", input=STS)
    c.run("rollout", "status", "-n", ns, "sts/web", "--timeout=120s", timeout=150)
    pods = {p["metadata"]["name"]: p for p in c.json("get", "pods", "-n", ns, "-l", "app=web")["items"]}
    assert set(pods) == {"web-0", "web-1", "web-2"}
    for i in (1, 2):
        # OrderedReady: each pod was created only once its predecessor was Ready.
        assert pods[f"web-{i}"]["metadata"]["creationTimestamp"] >= _ready_since(pods[f"web-{i - 1}"])
        assert pods[f"web-{i}"]["spec"]["hostname"] == f"web-{i}"
        assert pods[f"web-{i}"]["spec"]["subdomain"] == "nginx"

    def dns_names() -> bool:
        ep = c.json("get", "endpoints", "nginx", "-n", ns)
        names = {a.get("hostname") for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
        return names == {"web-0", "web-1", "web-2"}
    wait_for(dns_names, 60, "per-pod DNS names in the headless service's endpoints")
    rows = _table(c.run("get", "sts", "-n", ns).stdout)
    assert rows[0] == ["NAME", "READY", "AGE"] and rows[1][:2] == ["web", "3/3"]

    deleted = asyncio.run(_deletions_while(c, ns, "app=web", ["scale", "-n", ns, "sts/web", "--replicas=1"], 2))
    assert deleted == ["web-2", "web-1"]

    c.run("scale", "-n", ns, "sts/web", "--replicas=2")
    c.run("set", "image", "-n", ns, "sts/web", "nginx=kubelab/nginx:1.23")
    c.run("rollout", "status", "-n", ns, "sts/web", "--timeout=120s", timeout=150)
    images = {p["spec"]["containers"][0]["image"] for p in c.json("get", "pods", "-n", ns, "-l", "app=web")["items"]}
    assert images == {"kubelab/nginx:1.23"}
    history = c.run("rollout", "history", "-n", ns, "sts/web").stdout
    assert "REVISION" in history and "2" in history
    c.run("rollout", "undo", "-n", ns, "sts/web")
    c.run("rollout", "status", "-n", ns, "sts/web", "--timeout=120s", timeout=150)
    images = {p["spec"]["containers"][0]["image"] for p in c.json("get", "pods", "-n", ns, "-l", "app=web")["items"]}
    assert images == {"kubelab/nginx:1.22"}


async def _deletions_while(c: Cluster, ns: str, selector: str, command: list[str], count: int) -> list[str]:
    """Run ``kubectl command`` and return the pods deleted meanwhile, in the order the watch saw them."""
    client = ApiClient.from_kubeconfig(c.kubeconfig)
    deleted: list[str] = []
    try:
        rv = (await client.list(PODS, namespace=ns, label_selector=selector))["metadata"]["resourceVersion"]

        async def watch() -> None:
            async for event in client.watch(PODS, namespace=ns, label_selector=selector, resource_version=rv):
                if event.type == "DELETED":
                    deleted.append(event.object["metadata"]["name"])
                    if len(deleted) == count:
                        return
        task = asyncio.create_task(watch(), name="deletions")
        await asyncio.to_thread(c.run, *command)
        await asyncio.wait_for(task, 120)
    finally:
        await client.close()
    return deleted


DS = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox, command: [sleep, "3600"]}]
"""


def test_daemonset_one_pod_per_node_including_a_new_node(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("apply", "-n", ns, "-f", "-", input=DS)
    c.run("rollout", "status", "-n", ns, "ds/agent", "--timeout=120s", timeout=150)
    nodes = {n["metadata"]["name"] for n in c.json("get", "nodes")["items"]}
    pods = c.json("get", "pods", "-n", ns, "-l", "app=agent")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(nodes)
    rows = _table(c.run("get", "ds", "-n", ns).stdout)
    assert rows[0][:6] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE"]
    assert rows[1][:6] == ["agent", *[str(len(nodes))] * 5]
    kubeconfig = launcher.component_kubeconfig(c.state_dir, "kubelet-wl-extra", user="system:node:wl-extra",
                                               groups=["system:nodes"])
    launcher.start_process(c.state_dir, "kubelet-wl-extra", launcher.kubelet_command(
        kubeconfig=kubeconfig, node_name="wl-extra", hollow=True, count=1,
        extra_args=["--node-lease-renew-interval", "1", "--node-index-offset", "200"]))
    try:
        def on_new_node() -> bool:
            items = c.json("get", "pods", "-n", ns, "-l", "app=agent")["items"]
            return any(p["spec"].get("nodeName") == EXTRA and p["status"].get("phase") == "Running" for p in items)
        wait_for(on_new_node, 90, "the new node's daemon pod running")
        c.run("set", "image", "-n", ns, "ds/agent", "agent=busybox:1.36")
        c.run("rollout", "status", "-n", ns, "ds/agent", "--timeout=120s", timeout=150)
        images = {p["spec"]["containers"][0]["image"]
                  for p in c.json("get", "pods", "-n", ns, "-l", "app=agent")["items"]}
        assert images == {"busybox:1.36"}
    finally:
        launcher.stop_process(c.state_dir, "kubelet-wl-extra", grace=5)
        c.run("delete", "node", EXTRA, check=False)


RC = """\
apiVersion: v1
kind: ReplicationController
metadata: {name: old}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: old}}
    spec:
      containers: [{name: web, image: kubelab/nginx:1.22}]
"""


def test_replicationcontroller_scales_with_kubectl(cluster: Cluster) -> None:
    c, ns = cluster, cluster.namespace()
    c.run("apply", "-n", ns, "-f", "-", input=RC)

    def ready(n: int) -> Callable[[], bool]:
        def check() -> bool:
            rc = c.json("get", "rc", "old", "-n", ns)
            return (rc.get("status") or {}).get("readyReplicas") == n and \
                len(c.json("get", "pods", "-n", ns, "-l", "app=old")["items"]) == n
        return check
    wait_for(ready(2), 90, "2 ready replicas")
    c.run("scale", "-n", ns, "rc/old", "--replicas=4")
    wait_for(ready(4), 90, "4 ready replicas")
    rows = _table(c.run("get", "rc", "-n", ns).stdout)
    assert rows[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"] and rows[1][:4] == ["old", "4", "4", "4"]


# ---- every pinned kubectl version against an apiserver (no controllers needed) ----------------

@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("workloads-api")
    server = start_apiserver(state, store="sqlite")
    try:
        yield server.kubeconfig
    finally:
        server.stop()


@pytest.mark.parametrize("version", kubectl_versions() or [None])
def test_imperative_workload_commands_on_every_kubectl(apiserver: Path, version: str | None) -> None:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=apiserver, version=version, check=check, timeout=60)
    ns = f"v{(version or 'default').replace('.', '-')}"
    run("create", "namespace", ns)
    run("create", "job", "once", "-n", ns, "--image=busybox", "--", "echo", "hi")
    run("create", "cronjob", "tick", "-n", ns, "--image=busybox", "--schedule=@hourly", "--", "date")
    run("create", "job", "manual", "-n", ns, "--from=cronjob/tick")
    jobs = {j["metadata"]["name"]: j for j in json.loads(run("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]}
    assert set(jobs) == {"once", "manual"}
    assert jobs["manual"]["metadata"]["ownerReferences"][0]["name"] == "tick"
    assert jobs["once"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    rows = _table(run("get", "jobs", "-n", ns).stdout)
    assert rows[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert sorted(r[:3] for r in rows[1:]) == [["manual", "Running", "0/1"], ["once", "Running", "0/1"]]
    kubectl("apply", "-n", ns, "-f", "-", kubeconfig=apiserver, version=version, input=RC + "---\n" + STS)
    run("scale", "-n", ns, "rc/old", "--replicas=3")
    run("scale", "-n", ns, "sts/web", "--replicas=4")
    assert json.loads(run("get", "rc", "old", "-n", ns, "-o", "json").stdout)["spec"]["replicas"] == 3
    assert json.loads(run("get", "sts", "web", "-n", ns, "-o", "json").stdout)["spec"]["replicas"] == 4
    bad = run("create", "cronjob", "bad", "-n", ns, "--image=busybox", "--schedule=*/x * * * *", check=False)
    assert bad.returncode != 0
    assert 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax' in bad.stderr
