"""A Docker engine for tests: :func:`ensure_docker` and the session fixture ``docker_client``.

Used by every ``@pytest.mark.docker`` test (kubelet runtime, images, mesh). If ``/var/run/docker.sock``
does not answer a ping and Debian's ``dockerd`` is installed, it starts one detached (its own session,
log in ``/tmp/kubelab-dockerd.log``, no arguments: the host's normal daemon, never a second one with
``--bridge=none``) and waits until it answers. A socket or pid file left behind by a daemon that is
gone (a rebooted machine) counts as "not answering". The daemon is left running for later sessions.
A missing ``dockerd`` fails the test: CI installs docker.io through scripts/setup.

Register the fixture with ``pytest_plugins = ["tests.docker_daemon"]`` in the root conftest.py
(or ``from tests.docker_daemon import docker_client`` in a package's conftest.py).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests.exceptions

__all__ = ["DOCKERD", "DOCKERD_LOG", "DOCKER_PIDFILE", "DOCKER_SOCKET", "TEST_LABEL", "docker_client", "ensure_docker"]

DOCKER_SOCKET = Path("/var/run/docker.sock")
DOCKER_PIDFILE = Path("/var/run/docker.pid")
DOCKERD_LOG = Path("/tmp/kubelab-dockerd.log")
START_LOCK = Path("/tmp/kubelab-dockerd.lock")
DOCKERD = Path("/usr/sbin/dockerd")
"""Debian's dockerd (used when ``dockerd`` is not on PATH, e.g. PATH without sbin)."""
TEST_LABEL = "kubelab.dev/test"
"""Label on every Docker object a test creates, so a crashed run's leftovers can be found."""


def _ping(timeout: float = 2.0) -> docker.DockerClient | None:
    if not DOCKER_SOCKET.exists():
        return None
    try:
        # The constructor already asks the daemon for its API version: a socket file left behind by a
        # daemon that is gone (a rebooted machine) refuses the connection right here.
        client = docker.DockerClient(base_url=f"unix://{DOCKER_SOCKET}", timeout=timeout)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return None
    try:
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return None
    finally:
        client.close()
    # The probe used a short timeout; builds and imports need a long one.
    return docker.DockerClient(base_url=f"unix://{DOCKER_SOCKET}", timeout=300)


def _remove_stale_pidfile() -> None:
    """Delete ``/var/run/docker.pid`` when the process it names is not a running dockerd.

    dockerd refuses to start while its pid file names any live process, and after a reboot that pid
    may belong to something else.
    """
    try:
        pid = int(DOCKER_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        command = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        command = ""
    if command != "dockerd":
        DOCKER_PIDFILE.unlink(missing_ok=True)


def _start_dockerd(dockerd: str) -> subprocess.Popen[bytes]:
    _remove_stale_pidfile()
    with DOCKERD_LOG.open("ab") as log:
        return subprocess.Popen(
            [dockerd], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _log_tail(lines: int = 15) -> str:
    try:
        return "\n".join(DOCKERD_LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_docker(timeout: float = 30) -> docker.DockerClient:
    """A client of a Docker engine that answers ping, starting ``dockerd`` if none does (see module doc).

    Test processes running side by side (``scripts/test``'s lanes) take turns here: the first starts the
    engine, the others find it answering."""
    client = _ping()
    if client is not None:
        return client
    with open(START_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start_and_ping(timeout)


def _start_and_ping(timeout: float) -> docker.DockerClient:
    client = _ping()
    if client is not None:
        return client
    dockerd = shutil.which("dockerd") or (str(DOCKERD) if DOCKERD.is_file() else None)
    if dockerd is None:
        pytest.fail("docker.io is not installed: run scripts/setup", pytrace=False)
    process = _start_dockerd(dockerd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = _ping()
        if client is not None:
            return client
        if process.poll() is not None:
            # Another test process may have won the race to start it: give that daemon a moment.
            time.sleep(0.5)
            client = _ping()
            if client is not None:
                return client
            pytest.fail(f"dockerd exited with {process.returncode}; {DOCKERD_LOG}:\n{_log_tail()}", pytrace=False)
        time.sleep(0.1)
    pytest.fail(f"dockerd did not answer on {DOCKER_SOCKET} within {timeout:g}s; {DOCKERD_LOG}:\n{_log_tail()}",
                pytrace=False)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """One client of the (possibly just started) Docker engine for the whole session."""
    client = ensure_docker()
    yield client
    client.close()
