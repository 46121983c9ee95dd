"""pytest fixtures around :mod:`kubelab.testing`: real apiservers, a whole cluster, a namespace per test.

Enable with ``pytest_plugins = ["kubelab.pytest_plugin"]`` in the root ``conftest.py``.

Fixtures:

* ``kubelab_apiserver`` -- a fresh apiserver per test (own state dir under ``tmp_path``; ready in
  about a second); no scheduler, controllers or nodes;
* ``kubelab_session_apiserver`` -- one apiserver shared by the whole session;
* ``kubelab_kubectl`` -- ``kubectl(*args, version=None, input=None, check=True)`` bound to the
  per-test apiserver's kubeconfig;
* ``kubelab_cluster`` -- one whole cluster for the session (``kubelab up``: apiserver, scheduler,
  controller-manager, nodes), a :class:`kubelab.testing_cluster.RunningCluster`: ``.kubeconfig``,
  ``.kubectl(*args)``, ``.api_client()`` (the official ``kubernetes`` package), ``.request()``;
* ``kubelab_namespace`` -- a fresh namespace on ``kubelab_cluster`` for one test (its name, a
  ``str``); after the test it is deleted and awaited until gone, content and finalizers included.

When a test that uses ``kubelab_namespace`` fails, its report gets a section ``kubelab namespace
<name>`` with the namespace's events, its pods (phase, conditions, container states) and the last
lines of the logs of its failed containers; a failed test that uses ``kubelab_apiserver`` gets the
tail of the apiserver's log.

Options:

* ``--kubelab-store sqlite|etcd|memory`` (default sqlite): the store of every apiserver the
  fixtures start. With etcd the apiservers use ``--kubelab-etcd-servers URLS`` (default
  ``http://127.0.0.1:2379``), each with its own random ``--etcd-prefix`` so runs sharing one etcd
  never see each other's keys; the cluster starts a private etcd in its state dir instead. The
  cluster runs on sqlite when ``memory`` is asked (its components restart, a memory store would
  forget everything).
* ``--kubelab-nodes hollow|docker`` (default hollow) and ``--kubelab-node-count N`` (default 2):
  the cluster's nodes. Hollow nodes simulate pods on loopback addresses (no Docker needed, ready
  in seconds); Docker nodes run real containers.
* ``--kubelab-kubeconfig PATH`` (or the environment variable ``KUBELAB_KUBECONFIG``): run
  ``kubelab_cluster`` and ``kubelab_namespace`` against a cluster that already runs instead of
  starting one, and leave it running. For fast local iteration: ``kubelab up --hollow-nodes 2``
  once, then ``KUBELAB_KUBECONFIG=~/.kubelab/kubeconfig pytest ...`` as often as needed.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from kubelab import launcher
from kubelab.testing import PROCESS_NAME, RunningApiServer, kubectl, start_apiserver
from kubelab.testing_cluster import RunningCluster, connect_cluster, start_cluster
from kubelab.testing_dump import namespace_state

__all__ = [
    "KUBECONFIG_ENV",
    "BoundKubectl",
    "kubelab_apiserver",
    "kubelab_cluster",
    "kubelab_kubectl",
    "kubelab_namespace",
    "kubelab_session_apiserver",
]

KUBECONFIG_ENV = "KUBELAB_KUBECONFIG"
"""Environment variable naming the kubeconfig of a running cluster to reuse (``--kubelab-kubeconfig``)."""

APISERVER_LOG_LINES = 40

_NAMESPACE = pytest.StashKey[tuple[RunningCluster, str]]()
_APISERVER = pytest.StashKey[RunningApiServer]()


class BoundKubectl(Protocol):
    """:func:`kubelab.testing.kubectl` with the kubeconfig filled in."""

    def __call__(
        self,
        *args: str,
        version: str | None = ...,
        input: str | None = ...,
        check: bool = ...,
        timeout: float = ...,
    ) -> subprocess.CompletedProcess[str]: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubelab")
    group.addoption(
        "--kubelab-store",
        choices=["sqlite", "etcd", "memory"],
        default="sqlite",
        help="store of the apiservers started by kubelab fixtures",
    )
    group.addoption(
        "--kubelab-etcd-servers",
        default="http://127.0.0.1:2379",
        help="comma-separated etcd URLs for --kubelab-store etcd",
    )
    group.addoption(
        "--kubelab-nodes",
        choices=["hollow", "docker"],
        default="hollow",
        help="nodes of the kubelab_cluster fixture: hollow (simulated, default) or docker",
    )
    group.addoption(
        "--kubelab-node-count", type=int, default=2, metavar="N", help="number of nodes of kubelab_cluster (2)"
    )
    group.addoption(
        "--kubelab-kubeconfig",
        default=None,
        metavar="PATH",
        help=f"reuse the running cluster of this kubeconfig for kubelab_cluster (env {KUBECONFIG_ENV})",
    )


def _start(config: pytest.Config, state_dir: Path) -> RunningApiServer:
    store = str(config.getoption("--kubelab-store"))
    servers = [url for url in str(config.getoption("--kubelab-etcd-servers")).split(",") if url]
    return start_apiserver(
        state_dir,
        store=store,
        etcd_servers=servers if store == "etcd" else None,
        etcd_prefix=f"/kubelab-test-{uuid.uuid4().hex[:12]}" if store == "etcd" else "",
    )


def reuse_kubeconfig(config: pytest.Config) -> Path | None:
    """The kubeconfig of a running cluster to reuse: ``--kubelab-kubeconfig``, else the env variable."""
    value = config.getoption("--kubelab-kubeconfig") or os.environ.get(KUBECONFIG_ENV)
    return Path(str(value)).expanduser() if value else None


@pytest.fixture
def kubelab_apiserver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningApiServer]:
    with _start(request.config, tmp_path / "kubelab") as server:
        request.node.stash[_APISERVER] = server
        yield server


@pytest.fixture(scope="session")
def kubelab_session_apiserver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApiServer]:
    with _start(request.config, tmp_path_factory.mktemp("kubelab-session")) as server:
        yield server


@pytest.fixture
def kubelab_kubectl(kubelab_apiserver: RunningApiServer) -> BoundKubectl:
    bound: BoundKubectl = functools.partial(kubectl, kubeconfig=kubelab_apiserver.kubeconfig)
    return bound


@pytest.fixture(scope="session")
def kubelab_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningCluster]:
    """A whole cluster for the session, or the running one of ``--kubelab-kubeconfig``."""
    config = request.config
    reused = reuse_kubeconfig(config)
    if reused is not None:
        yield connect_cluster(reused)
        return
    count = int(config.getoption("--kubelab-node-count"))
    docker = config.getoption("--kubelab-nodes") == "docker"
    store = "etcd" if config.getoption("--kubelab-store") == "etcd" else "sqlite"
    with start_cluster(tmp_path_factory.mktemp("kubelab-cluster"), store=store,
                       hollow_nodes=0 if docker else count, docker_nodes=count if docker else 0) as cluster:
        yield cluster


@pytest.fixture
def kubelab_namespace(request: pytest.FixtureRequest, kubelab_cluster: RunningCluster) -> Iterator[str]:
    """A namespace of this test alone; deleted after it, and awaited until it is gone."""
    name = kubelab_cluster.create_namespace(request.node.name)
    request.node.stash[_NAMESPACE] = (kubelab_cluster, name)
    yield name
    kubelab_cluster.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                           pytest.TestReport]:
    """Attach the state of the test's namespace (or its apiserver's log) to a failed test's report."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        namespace = item.stash.get(_NAMESPACE, None)
        if namespace is not None:
            cluster, name = namespace
            try:
                state = namespace_state(cluster, name)
            except Exception as exc:  # the dump must never replace the test's own failure
                state = f"(cannot read the namespace's state: {type(exc).__name__}: {exc})"
            report.sections.append((f"kubelab namespace {name}", state))
        server = item.stash.get(_APISERVER, None)
        if server is not None:
            tail = launcher.log_tail(server.state_dir, PROCESS_NAME, lines=APISERVER_LOG_LINES)
            report.sections.append((f"kubelab apiserver log ({server.log_path})", "\n".join(tail) or "(empty)"))
    return report
