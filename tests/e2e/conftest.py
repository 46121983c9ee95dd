"""Fixtures for the end-to-end suites: real apiserver processes on both real stores.

Used by every ``tests/e2e/test_*.py`` (the official Python client, restart/persistence, kubectl).

* ``etcd_server`` (session) -- one real etcd (:class:`tests.etcd_server.EtcdServer`) on loopback
  ephemeral ports; a missing etcd binary fails the etcd tests loudly, as in the storage suite.
* ``cluster`` -- a fresh ``kubelab apiserver`` process per test, started with
  :func:`kubelab.testing.start_apiserver` in ``tmp_path``; parametrised over the stores
  ``sqlite`` and ``etcd`` (test ids ``[sqlite]`` / ``[etcd]``; the etcd one carries
  ``pytest.mark.etcd``). With etcd every apiserver gets its own ``--etcd-prefix``, so tests never
  see each other's keys. Yields the :class:`~kubelab.testing.RunningApiServer` (``.url``,
  ``.kubeconfig``, ``.pid``, ``.restart()``, ``.stop()``) and stops it afterwards.
* ``module_cluster`` -- the same, one apiserver per test module and store, for tests that only
  read and write objects of their own (unique names): starting a process costs ~0.7 s.
* ``compactable_cluster`` -- like ``cluster``, but with etcd it gets a private etcd process:
  etcd compaction is etcd-wide, and compacting the shared etcd would shrink the watch history
  of every later test.
* ``compact`` -- ``compact(server) -> revision``: stop ``server`` and compact its store at the
  current revision (``server.restart()`` starts it again).
* ``store_kind`` -- ``"sqlite"`` or ``"etcd"``: the store of the test's cluster.
* ``netaudit`` / ``netaudit_processes`` -- the network audit of :mod:`tests.netaudit`: a test (or
  a module and every kubelab process it starts) fails on any connect outside 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apiserver.settings import ApiServerSettings
from apiserver.storage import open_storage
from kubelab.testing import RunningApiServer, start_apiserver
from tests.etcd_server import EtcdServer
from tests.netaudit import netaudit, netaudit_processes

__all__ = ["netaudit", "netaudit_processes"]  # fixtures for the e2e suites

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("etcd", id="etcd", marks=pytest.mark.etcd),
]
"""The stores every e2e test runs on."""



def start_cluster(
    request: pytest.FixtureRequest, store: str, state_dir: Path, *, etcd: EtcdServer | None = None
) -> RunningApiServer:
    """Start an apiserver on ``store`` in ``state_dir`` (a fresh etcd prefix for etcd; the
    session's etcd unless ``etcd`` is given)."""
    if store == "etcd":
        if etcd is None:
            etcd = request.getfixturevalue("etcd_server")
        return start_apiserver(
            state_dir,
            store="etcd",
            etcd_servers=[etcd.client_url],
            etcd_prefix=f"/kubelab-e2e-{uuid.uuid4().hex[:12]}",
        )
    return start_apiserver(state_dir, store=store)


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store under test: ``sqlite`` or ``etcd``."""
    kind: str = request.param
    return kind


@pytest.fixture
def cluster(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> Iterator[RunningApiServer]:
    """A fresh apiserver process for this test, on each store in turn; stopped afterwards."""
    with start_cluster(request, store_kind, tmp_path / "cluster") as server:
        yield server


@pytest.fixture(scope="module", params=STORES)
def module_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApiServer]:
    """One apiserver per module and store, for tests that touch only objects they name uniquely."""
    with start_cluster(request, str(request.param), tmp_path_factory.mktemp("module-cluster")) as server:
        yield server


@pytest.fixture
def compactable_cluster(
    request: pytest.FixtureRequest, store_kind: str, tmp_path: Path
) -> Iterator[RunningApiServer]:
    """A fresh apiserver whose store a test may compact (a private etcd for the etcd store)."""
    if store_kind != "etcd":
        with start_cluster(request, store_kind, tmp_path / "cluster") as server:
            yield server
        return
    with (
        EtcdServer(tmp_path / "etcd") as etcd,
        start_cluster(request, "etcd", tmp_path / "cluster", etcd=etcd) as server,
    ):
        yield server


async def _compact_store(server: RunningApiServer) -> int:
    storage = open_storage(
        server.store,
        sqlite_path=ApiServerSettings(state_dir=server.state_dir).sqlite_path,
        etcd_servers=server.etcd_servers,
        etcd_prefix=server.etcd_prefix,
    )
    await storage.start()
    try:
        revision = await storage.current_revision()
        await storage.compact(revision)
        return revision
    finally:
        await storage.close()


def stop_and_compact(server: RunningApiServer) -> int:
    """Stop ``server``, compact its store at the current revision and return that revision."""
    server.stop()
    return asyncio.run(_compact_store(server))


@pytest.fixture
def compact() -> Callable[[RunningApiServer], int]:
    """``compact(server)``: stop the server and compact its store; restart it yourself."""
    return stop_and_compact
