"""Root test configuration: the kubelab pytest plugin, Hypothesis profiles, one real etcd.

``etcd_server`` starts Debian's etcd on free loopback ports the first time a test needs it;
every user keeps to its own key prefix. A missing etcd fails the test (CI installs it).

Hypothesis runs under the ``kubelab`` profile: no per-example deadline and no ``too_slow``
health check, because test machines are shared and loaded (a slow example is not a defect; a
badly filtered strategy is, so ``filter_too_much`` stays on). With ``CI=true`` the ``ci`` profile
also derandomizes (the same examples on every run) and keeps no example database.
``HYPOTHESIS_PROFILE`` picks a profile explicitly.

When ``scripts/test`` runs its lanes side by side, every test but the ``background`` ones runs
inside :func:`tests.quiet.sharing` (so that a background test can time its critical part alone),
or inside :func:`tests.quiet.alone` when it is marked ``exclusive``.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests import quiet
from tests.etcd_server import EtcdError, EtcdServer

pytest_plugins = ["kubelab.pytest_plugin", "tests.docker_daemon", "pytester"]

settings.register_profile("kubelab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("kubelab"), derandomize=True, database=None,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI", "").lower() == "true" else "kubelab"))


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """Share the machine with the other lanes, or take it for an ``exclusive`` test (no-ops when
    no other lane runs)."""
    if item.get_closest_marker("background"):
        yield
        return
    with quiet.alone() if item.get_closest_marker("exclusive") else quiet.sharing():
        yield
