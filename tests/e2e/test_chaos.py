"""Chaos: rolling updates of a 200-replica Deployment while random components die of SIGKILL.

``kubelab up --hollow-nodes 4`` (on SQLite, and on a local etcd that ``up`` starts itself);
ten rounds, each starting a rolling update to a new image and, a few seconds later, killing one
randomly chosen component (apiserver, scheduler, controller-manager, the hollow kubelet, etcd).
The test restarts nothing: the cluster's supervisor does. Every victim must come back, and then
the cluster must reach exactly the state the last update asked for: the Deployment Complete
with a current observedGeneration, one ReplicaSet with replicas > 0, 200 pods on the newest
template, no duplicate or orphan pod.

The random choices come from a seed printed in the output; ``KUBELAB_CHAOS_SEED=<seed>``
replays them (the timing of a busy machine still differs). Slow: a few minutes per store.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from machinery.resources import DEPLOYMENTS, NAMESPACES
from tests.e2e.chaos_harness import (
    SUPERVISOR,
    Chaos,
    Cluster,
    deployment,
    seed_from_env,
    wait_converged,
)

pytestmark = pytest.mark.slow

ROUNDS = 10
REPLICAS = 200
NAMESPACE = "chaos"
CONVERGE_TIMEOUT = 300.0
"""Bound on the convergence after the last kill (restarts in backoff included)."""


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("etcd", id="etcd", marks=pytest.mark.etcd)])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "cluster", store=str(request.param), hollow_nodes=4)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


async def test_rolling_updates_converge_exactly_while_random_components_are_killed(cluster: Cluster) -> None:
    assert SUPERVISOR in cluster.processes(), "kubelab up started no supervisor"
    expected = {"apiserver", "scheduler", "controller-manager", "kubelet-hollow"} | (
        {"etcd"} if cluster.store == "etcd" else set())
    assert expected <= set(cluster.components()), cluster.components()
    api = cluster.api()
    try:
        await api.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
        await api.create(DEPLOYMENTS, deployment("web", REPLICAS, "kubelab/nginx:0.0"), namespace=NAMESPACE)
        await wait_converged(api, NAMESPACE, "web", timeout=180)
        chaos = Chaos(cluster, api, NAMESPACE, "web", random.Random(seed_from_env()))
        kills, restarts = [], []
        for number in range(1, ROUNDS + 1):
            kill = await chaos.round(number)
            kills.append(kill)
            restarts.append(asyncio.create_task(chaos.restarted(kill), name=f"restart-{number}"))
        try:
            await asyncio.gather(*restarts)
            await chaos.converged(kills[-1], timeout=CONVERGE_TIMEOUT)
        finally:
            for kill in kills:
                print(kill.row())
        final = await api.get(DEPLOYMENTS, "web", namespace=NAMESPACE)
        assert final["spec"]["template"]["spec"]["containers"][0]["image"] == kills[-1].image
    finally:
        await api.close()
