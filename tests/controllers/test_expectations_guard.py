"""A sync that runs before the informer caches have caught up must not repeat its writes.

The shape of client-go's ``replica_set_test.go`` (``TestSyncReplicaSetDormancy``,
``TestExpectationsOnRecreate``): the controller is built over an embedded apiserver, but its
informers are never started; the test fills their stores and calls the event handlers itself, so
it decides exactly what the cache has seen when ``sync(key)`` runs. Writes go to the real API, which
is where a duplicate would show.

- ReplicaSet: after creating N pods the controller waits (expectations) until its cache has seen
  them; a sync in between creates nothing, however stale the cache. Expectations expire, so a lost
  watch event cannot wedge the ReplicaSet forever.
- Deployment: Kubernetes' Deployment controller keeps no expectations; its new ReplicaSet has a
  deterministic name (``<deployment>-<pod-template-hash>``), so a sync from a stale cache meets
  AlreadyExists and takes the existing ReplicaSet instead of creating a second one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers.deployment import DeploymentController
from controllers.expectations import EXPECTATIONS_TIMEOUT, ControllerExpectations
from controllers.replicaset import ReplicaSetController
from controllers.settings import ControllerManagerSettings
from machinery.client import ApiClient, InformerFactory
from machinery.meta import object_key
from machinery.resources import DEPLOYMENTS, PODS, REPLICASETS
from tests.controllers.helpers import cluster, pods, template

Obj = dict[str, Any]
KEY = "default/web"


def _rs(replicas: int) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": template({"app": "web"})}}


class _Clock:
    """A monotonic clock the test moves by hand (for the expectations' timeout)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def _replicaset_controller(tmp_path: Path, replicas: int) -> AsyncIterator[
        tuple[ApiClient, ReplicaSetController, _Clock]]:
    """A ReplicaSet in the API and in the controller's cache; the pod cache starts empty."""
    async with cluster(tmp_path) as client:
        ctl = ReplicaSetController(client, InformerFactory(client), ControllerManagerSettings())
        clock = _Clock()
        ctl.expectations = ControllerExpectations(clock=clock)
        rs = await client.create(REPLICASETS, _rs(replicas), namespace="default")
        ctl.rs_informer.store.upsert(rs)
        ctl._rs_added(rs)
        yield client, ctl, clock


async def _sync(client: ApiClient, ctl: ReplicaSetController) -> None:
    """One sync; then the ReplicaSet cache catches up with the status it wrote (the pod cache does not)."""
    await ctl.sync(KEY)
    ctl.rs_informer.store.upsert(await client.get(REPLICASETS, "web", namespace="default"))


def _observe_created(ctl: ReplicaSetController, pod: Obj) -> None:
    """What the pod informer does when its watch delivers ADDED."""
    ctl.pod_informer.store.upsert(pod)
    ctl._pod_added(pod)


def _observe_deleted(ctl: ReplicaSetController, pod: Obj) -> None:
    """What the pod informer does when its watch delivers DELETED."""
    ctl.pod_informer.store.delete(object_key(pod))
    ctl._pod_deleted(pod)


@pytest.mark.parametrize("seen", [pytest.param(0, id="cache-saw-none"), pytest.param(2, id="cache-saw-some")])
async def test_replicaset_sync_before_the_cache_catches_up_creates_nothing(tmp_path: Path, seen: int) -> None:
    async with _replicaset_controller(tmp_path, 3) as (client, ctl, _clock):
        await _sync(client, ctl)
        created = await pods(client, "app=web")
        assert len(created) == 3
        for pod in created[:seen]:
            _observe_created(ctl, pod)

        # The cache still lacks some of the pods: without expectations this sync would create them again.
        await _sync(client, ctl)
        await _sync(client, ctl)

        assert len(await pods(client, "app=web", active=False)) == 3
        assert ctl.expectations.pending(KEY) == (3 - seen, 0)


async def test_replicaset_acts_again_once_its_creations_are_observed(tmp_path: Path) -> None:
    async with _replicaset_controller(tmp_path, 3) as (client, ctl, _clock):
        await _sync(client, ctl)
        created = await pods(client, "app=web")
        for pod in created:
            _observe_created(ctl, pod)
        assert ctl.expectations.satisfied(KEY)

        # A pod goes away and the cache sees it: the next sync replaces exactly that one.
        gone = created[0]
        await client.delete(PODS, gone["metadata"]["name"], namespace="default")
        _observe_deleted(ctl, gone)
        await _sync(client, ctl)

        names = {p["metadata"]["name"] for p in await pods(client, "app=web")}
        assert len(names) == 3 and gone["metadata"]["name"] not in names


async def test_replicaset_waits_for_its_deletions_before_acting_again(tmp_path: Path) -> None:
    async with _replicaset_controller(tmp_path, 3) as (client, ctl, _clock):
        await _sync(client, ctl)
        before = await pods(client, "app=web")
        for pod in before:
            _observe_created(ctl, pod)

        # Scale down to 1: two deletions are issued and expected.
        rs = await client.patch(REPLICASETS, "web", {"spec": {"replicas": 1}}, namespace="default")
        ctl.rs_informer.store.upsert(rs)
        await _sync(client, ctl)
        assert len(await pods(client, "app=web")) == 1
        assert ctl.expectations.pending(KEY) == (0, 2)

        # Scaled up to 4 before the cache has seen the deletions: the cache still counts three pods.
        rs = await client.patch(REPLICASETS, "web", {"spec": {"replicas": 4}}, namespace="default")
        ctl.rs_informer.store.upsert(rs)
        await _sync(client, ctl)
        assert len(await pods(client, "app=web")) == 1, "acted on a cache that had not seen its deletions"

        left = {p["metadata"]["name"] for p in await pods(client, "app=web")}
        for pod in before:
            if pod["metadata"]["name"] not in left:
                _observe_deleted(ctl, pod)
        await _sync(client, ctl)
        assert len(await pods(client, "app=web", active=False)) == 4


async def test_replicaset_expectations_expire_so_a_lost_event_cannot_wedge_it(tmp_path: Path) -> None:
    async with _replicaset_controller(tmp_path, 2) as (client, ctl, clock):
        await _sync(client, ctl)
        assert len(await pods(client, "app=web")) == 2
        # The watch events for these pods are lost; the cache never sees them.
        clock.now += EXPECTATIONS_TIMEOUT - 1
        await _sync(client, ctl)
        assert len(await pods(client, "app=web")) == 2

        clock.now += 2
        await _sync(client, ctl)
        # Expired: the controller acts on its (stale) cache again, as Kubernetes does.
        assert len(await pods(client, "app=web")) == 4


def _deployment() -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": template({"app": "web"})}}


async def test_deployment_sync_from_a_stale_cache_does_not_create_a_second_replicaset(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        ctl = DeploymentController(client, InformerFactory(client), ControllerManagerSettings())
        d = await client.create(DEPLOYMENTS, _deployment(), namespace="default")
        ctl.d_informer.store.upsert(d)

        async def sync() -> None:
            # The Deployment cache catches up with the status each sync writes; the ReplicaSet cache does not.
            await ctl.sync(KEY)
            ctl.d_informer.store.upsert(await client.get(DEPLOYMENTS, "web", namespace="default"))

        await sync()
        first = (await client.list(REPLICASETS, namespace="default"))["items"]
        assert len(first) == 1
        # The ReplicaSet informer has not seen the new ReplicaSet yet.
        await sync()
        await sync()

        rss = (await client.list(REPLICASETS, namespace="default"))["items"]
        assert [rs["metadata"]["uid"] for rs in rss] == [first[0]["metadata"]["uid"]]
        status = (await client.get(DEPLOYMENTS, "web", namespace="default")).get("status") or {}
        assert not status.get("collisionCount"), "a second sync took its own ReplicaSet for a hash collision"
