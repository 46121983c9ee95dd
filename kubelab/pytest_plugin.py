"""pytest fixtures around :mod:`kubelab.testing`: a real apiserver process and kubectl against it.

Enable with ``pytest_plugins = ["kubelab.pytest_plugin"]`` in the root ``conftest.py``.

Fixtures:

* ``kubelab_apiserver`` -- a fresh apiserver per test (own state dir under ``tmp_path``);
* ``kubelab_session_apiserver`` -- one apiserver shared by the whole session;
* ``kubelab_kubectl`` -- ``kubectl(*args, version=None, input=None, check=True)`` bound to the
  per-test apiserver's kubeconfig.

Options: ``--kubelab-store sqlite|etcd|memory`` (default sqlite) and ``--kubelab-etcd-servers
URLS``; with etcd, every apiserver gets its own random ``--etcd-prefix``, so runs sharing one
etcd never see each other's keys.
"""

from __future__ import annotations

import functools
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from kubelab.testing import RunningApiServer, kubectl, start_apiserver

__all__ = ["BoundKubectl", "kubelab_apiserver", "kubelab_kubectl", "kubelab_session_apiserver"]


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


def _start(config: pytest.Config, state_dir: Path) -> RunningApiServer:
    store = str(config.getoption("--kubelab-store"))
    servers = [url for url in str(config.getoption("--kubelab-etcd-servers")).split(",") if url]
    return start_apiserver(
        state_dir,
        store=store,
        etcd_servers=servers if store == "etcd" else None,
        etcd_prefix=f"/kubelab-test-{uuid.uuid4().hex[:12]}" if store == "etcd" else "",
    )


@pytest.fixture
def kubelab_apiserver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningApiServer]:
    with _start(request.config, tmp_path / "kubelab") as server:
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
