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
* ``store_kind`` -- ``"sqlite"`` or ``"etcd"``: the store of the test's cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelab.testing import RunningApiServer, start_apiserver
from tests.etcd_server import EtcdError, EtcdServer

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("etcd", id="etcd", marks=pytest.mark.etcd),
]
"""The stores every e2e test runs on."""


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One real etcd shared by the session's e2e tests (each apiserver uses its own prefix)."""
    server = EtcdServer(tmp_path_factory.mktemp("e2e-etcd"))
    try:
        server.start()
    except EtcdError as exc:
        pytest.fail(f"cannot start a real etcd for the e2e etcd tests: {exc}", pytrace=False)
    yield server
    server.stop()


def start_cluster(request: pytest.FixtureRequest, store: str, state_dir: Path) -> RunningApiServer:
    """Start an apiserver on ``store`` in ``state_dir`` (a fresh etcd prefix for etcd)."""
    if store == "etcd":
        etcd: EtcdServer = request.getfixturevalue("etcd_server")
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
