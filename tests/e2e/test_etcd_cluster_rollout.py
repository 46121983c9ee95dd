"""A rolling update on hollow nodes completes while members of a 3-member etcd cluster die.

``kubelab up --store etcd --etcd-servers <3 members> --hollow-nodes 3`` runs the whole control
plane over one etcd cluster on loopback. During a rolling update of a 10-replica Deployment a
follower is SIGKILLed, started again once the rollout has moved on, and then the leader is
SIGKILLed. Each time the API must accept a write again within 5 s, and the rollout must finish
as if nothing had happened: every pod on the new template, one ReplicaSet with replicas, the
Deployment complete at its current generation, no duplicate pod.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.testing import kubectl
from machinery.client import ApiClient
from machinery.errors import ApiError
from machinery.resources import CONFIGMAPS
from tests.e2e.chaos_harness import wait_until
from tests.etcd_server import EtcdCluster, EtcdError, EtcdMember

pytestmark = [pytest.mark.etcd, pytest.mark.kubectl, pytest.mark.slow]

RECOVERY_LIMIT = 5.0
REPLICAS = 10


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd")
    try:
        cluster.start()
    except EtcdError as exc:
        pytest.fail(f"cannot start a 3-member etcd: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def state_dir(tmp_path: Path, etcd_cluster: EtcdCluster) -> Iterator[Path]:
    state = tmp_path / "state"
    up = [sys.executable, "-m", "kubelab", "up", "--state-dir", str(state), "--port", "0", "--store", "etcd",
          "--etcd-servers", ",".join(etcd_cluster.client_urls), "--hollow-nodes", "3"]
    try:
        done = subprocess.run(up, capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, f"kubelab up failed: {done.stderr}{done.stdout}"
        yield state
    finally:
        subprocess.run([sys.executable, "-m", "kubelab", "down", "--state-dir", str(state)],
                       capture_output=True, timeout=120, check=False)


def deployment(image: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, labels: {{app: web}}}}
spec:
  replicas: {REPLICAS}
  strategy: {{rollingUpdate: {{maxSurge: 2, maxUnavailable: 1}}}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - {{name: web, image: {image}, resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}
"""


async def first_write_after(api: ApiClient, namespace: str, killed: float) -> float:
    """Seconds from ``killed`` until a ConfigMap create is accepted (tried without pause)."""
    while True:
        try:
            await api.create(CONFIGMAPS, {"metadata": {"generateName": "probe-"}}, namespace=namespace)
            return round(time.monotonic() - killed, 3)
        except ApiError:
            if time.monotonic() - killed > 60:
                raise
            await asyncio.sleep(0.02)


async def kill(cluster: EtcdCluster, member: EtcdMember, api: ApiClient, namespace: str) -> float:
    await asyncio.to_thread(cluster.kill, member)
    return await first_write_after(api, namespace, time.monotonic())


async def test_a_rollout_completes_while_etcd_members_die(state_dir: Path, etcd_cluster: EtcdCluster) -> None:
    kubeconfig = state_dir / "kubeconfig"

    def run(*args: str, timeout: float = 120) -> str:
        return kubectl(*args, kubeconfig=kubeconfig, timeout=timeout).stdout

    def get(*args: str) -> Any:
        return json.loads(run("get", *args, "-o", "json"))

    ns = "rollout"
    await asyncio.to_thread(run, "create", "namespace", ns)
    await asyncio.to_thread(kubectl, "apply", "-n", ns, "-f", "-", kubeconfig=kubeconfig,
                            input=deployment("kubelab/nginx:1.22"))
    await asyncio.to_thread(run, "rollout", "status", "-n", ns, "deploy/web", timeout=180)

    api = ApiClient.from_kubeconfig(kubeconfig, timeout=30)
    try:
        await asyncio.to_thread(run, "set", "image", "-n", ns, "deploy/web", "web=kubelab/nginx:1.23")
        leader = await asyncio.to_thread(etcd_cluster.wait_leader)
        follower = next(m for m in etcd_cluster.members if m is not leader)
        recovered = {"follower": await kill(etcd_cluster, follower, api, ns)}

        def moved_on() -> bool:
            status = get("deploy", "-n", ns, "web").get("status") or {}
            return int(status.get("updatedReplicas") or 0) >= REPLICAS // 2

        await wait_until(moved_on, timeout=120, what="half of the rollout", interval=0.5)
        await asyncio.to_thread(etcd_cluster.restart, follower)
        leader = await asyncio.to_thread(etcd_cluster.wait_leader)
        recovered["leader"] = await kill(etcd_cluster, leader, api, ns)
        print(f"API recovery during the rollout (s): {recovered}")
        assert all(seconds < RECOVERY_LIMIT for seconds in recovered.values()), recovered

        assert "successfully rolled out" in await asyncio.to_thread(
            run, "rollout", "status", "-n", ns, "deploy/web", "--timeout=180s", timeout=200)
    finally:
        await api.close()

    d = get("deploy", "-n", ns, "web")
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    assert any(c["type"] == "Progressing" and c["reason"] == "NewReplicaSetAvailable"
               for c in d["status"]["conditions"])
    replica_sets = get("rs", "-n", ns, "-l", "app=web")["items"]
    assert [rs["spec"]["template"]["spec"]["containers"][0]["image"]
            for rs in replica_sets if rs["spec"]["replicas"] > 0] == ["kubelab/nginx:1.23"]

    def settled() -> bool:
        live = [p for p in get("pods", "-n", ns, "-l", "app=web")["items"]
                if not p["metadata"].get("deletionTimestamp")]
        return len(live) == REPLICAS and {p["spec"]["containers"][0]["image"] for p in live} == {"kubelab/nginx:1.23"}

    await wait_until(settled, timeout=120, what=f"{REPLICAS} pods on the new template only", interval=0.5)
