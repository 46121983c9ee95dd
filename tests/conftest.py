"""Root test configuration: the kubelab pytest plugin and one real etcd for the whole session.

``etcd_server`` starts Debian's etcd on free loopback ports the first time a test needs it;
every user keeps to its own key prefix. A missing etcd fails the test (CI installs it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.etcd_server import EtcdError, EtcdServer

pytest_plugins = ["kubelab.pytest_plugin", "tests.docker_daemon"]


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One real etcd shared by the session (each apiserver or store test uses its own prefix)."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    try:
        server.start()
    except EtcdError as exc:
        pytest.fail(f"cannot start a real etcd: {exc}", pytrace=False)
    yield server
    server.stop()
