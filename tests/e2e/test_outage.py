"""A five-minute apiserver outage in the middle of a rollout, on a whole cluster of hollow nodes.

``kubelab up --hollow-nodes 4``; a 200-replica Deployment rolls to a new image; while it is half
done, the apiserver is stopped on purpose (so no supervisor brings it back) and stays down for
five minutes, longer than any client's retry budget or backoff cap. ``kubelab up`` then starts
it again, and from the moment it answers ``/readyz`` the cluster must reach the exact converged
state within 30 s: the Deployment Complete with a current observedGeneration, one ReplicaSet
with replicas, every pod on the newest template, no orphan, no duplicate.

Slow (about six minutes, most of it the outage itself: the test process is idle then), so
``scripts/test`` runs it beside the other tests; the apiserver's return and the convergence are timed
with the machine to itself (:func:`tests.quiet.machine_to_myself`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from machinery.resources import DEPLOYMENTS, NAMESPACES
from tests.e2e.chaos_harness import Cluster, deployment, outage_round, wait_converged

pytestmark = [pytest.mark.slow, pytest.mark.background]

REPLICAS = 200
OUTAGE = 300.0
"""Seconds the apiserver stays down."""
CONVERGE_WITHIN = 30.0
"""Seconds from the apiserver's return to the converged state."""
NAMESPACE = "outage"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "cluster", hollow_nodes=4)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


async def test_cluster_converges_within_30s_after_a_5_minute_apiserver_outage_mid_rollout(cluster: Cluster) -> None:
    api = cluster.api()
    try:
        await api.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
        # minReadySeconds makes the rollout take several steps of at least 1 s: a middle to stop in.
        await api.create(DEPLOYMENTS, deployment("web", REPLICAS, "kubelab/nginx:1.0", min_ready_seconds=1),
                         namespace=NAMESPACE)
        await wait_converged(api, NAMESPACE, "web", timeout=300)
        outage = await outage_round(cluster, api, NAMESPACE, "web", image="kubelab/nginx:2.0", seconds=OUTAGE,
                                    converge_timeout=CONVERGE_WITHIN)
        print(f"apiserver stopped with {outage.updated_at_stop}/{REPLICAS} replicas updated, down "
              f"{outage.down:.1f} s; converged {outage.converge:.1f} s after it returned")
        assert outage.down >= OUTAGE
    finally:
        await api.close()
