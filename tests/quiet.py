"""The machine to oneself: how a mostly idle test shares the machine with a lane of other tests.

``scripts/test`` runs the ``background`` tests (minutes of waiting, such as a five-minute apiserver
outage) in their own pytest process beside the main lane, and points both at one directory through
``KUBELAB_TEST_QUIET_DIR``. A background test waits for free; only the part it *times* must not
compete with the other lane for two cores. That part runs inside :func:`machine_to_myself`, and every
test of the other lane runs inside :func:`sharing` (a hook in ``tests/conftest.py``):

* ``intent.lock`` -- held exclusively by a background test from the moment it wants the machine;
  a test of the other lane takes it shared for an instant before it starts, so no new test starts
  while a background test is waiting or timing;
* ``machine.lock`` -- held shared by the running test of the other lane, exclusively by the timing
  background test: the background test waits for the running test (and its fixtures) to finish.

The same locks let the two lanes of ``scripts/test`` that run side by side (the Docker and slow
tests; the quick tests that need no Docker) protect a test whose assertions are about time: one
marked ``exclusive`` runs inside :func:`alone` (taken by the hook in ``tests/conftest.py`` instead
of :func:`sharing`), so no test of another lane runs meanwhile.

Both are ``flock`` locks: a process that dies releases them. Without ``KUBELAB_TEST_QUIET_DIR``
(a plain ``pytest`` run, one process) both context managers do nothing, and
:func:`machine_to_myself` acts only in the background lane's own process (``KUBELAB_TEST_LANE=
background``): a program a main-lane test starts (a benchmark sharing the harness) inherits the
directory but must never wait for the machine its own test holds.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ENV = "KUBELAB_TEST_QUIET_DIR"
LANE_ENV = "KUBELAB_TEST_LANE"


def _directory() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


@contextmanager
def _locked(path: Path, operation: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases its lock


@contextmanager
def _the_machine(directory: Path) -> Iterator[None]:
    """Both locks exclusively: no test of another lane runs or starts meanwhile."""
    with _locked(directory / "intent.lock", fcntl.LOCK_EX), _locked(directory / "machine.lock", fcntl.LOCK_EX):
        yield


@contextmanager
def sharing() -> Iterator[None]:
    """Run one test of the main lane: wait while a background test wants the machine, then hold it
    shared until the test (setup, call, teardown) is over."""
    directory = _directory()
    if directory is None:
        yield
        return
    with ExitStack() as held:
        with _locked(directory / "intent.lock", fcntl.LOCK_SH):
            held.enter_context(_locked(directory / "machine.lock", fcntl.LOCK_SH))
        yield


@contextmanager
def machine_to_myself() -> Iterator[None]:
    """Time something without the other lane: no new test of it starts, the running one ends first."""
    directory = _directory()
    if directory is None or os.environ.get(LANE_ENV) != "background":
        yield
        return
    with _the_machine(directory):
        yield


@contextmanager
def alone() -> Iterator[None]:
    """Run one ``exclusive`` test of a lane: the other lanes' running tests end first and none
    starts until it is over (a no-op outside ``scripts/test``'s lanes)."""
    directory = _directory()
    if directory is None or not os.environ.get(LANE_ENV):
        yield
        return
    with _the_machine(directory):
        yield
