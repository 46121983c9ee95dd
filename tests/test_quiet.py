"""tests.quiet: a background test's timed part, and an ``exclusive`` test of a lane, wait for the other
lane's running test and hold off the next one; without the environment variables nothing waits."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests import quiet

TEST_OF_THE_OTHER_LANE = """
import sys
from tests import quiet
with quiet.sharing():
    print("running", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def other_lane_test(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """A process standing for one test of the main lane; a line on its stdin ends the test."""
    proc = subprocess.Popen([sys.executable, "-c", TEST_OF_THE_OTHER_LANE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, quiet.ENV: str(directory)})
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def started(proc: subprocess.Popen[str], timeout: float) -> bool:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    return bool(readable) and proc.stdout.readline().strip() == "running"


def finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(30) == 0


def test_without_the_variable_nothing_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(quiet.ENV, raising=False)
    with quiet.machine_to_myself(), quiet.alone(), quiet.sharing():
        pass


def test_a_program_a_main_lane_test_starts_never_waits_for_the_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(quiet.ENV, str(tmp_path))
    monkeypatch.delenv(quiet.LANE_ENV, raising=False)
    with other_lane_test(tmp_path) as running:
        assert started(running, 30)
        with quiet.machine_to_myself(), quiet.alone():  # would wait forever for its own test if they acted
            pass
        finish(running)


@pytest.mark.parametrize(("lane", "hold"), [
    pytest.param("background", quiet.machine_to_myself, id="background-timed-part"),
    pytest.param("main", quiet.alone, id="exclusive-test"),
])
def test_the_timed_part_waits_for_the_running_test_and_holds_off_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lane: str,
        hold: Callable[[], AbstractContextManager[None]]) -> None:
    monkeypatch.setenv(quiet.ENV, str(tmp_path))
    monkeypatch.setenv(quiet.LANE_ENV, lane)
    alone = threading.Event()
    release = threading.Event()

    def timed_part() -> None:
        with hold():
            alone.set()
            release.wait(60)

    with other_lane_test(tmp_path) as running:
        assert started(running, 30)
        thread = threading.Thread(target=timed_part)
        thread.start()
        try:
            assert not alone.wait(0.5), "the timed part began while a test of the other lane ran"
            finish(running)
            assert alone.wait(30), "the timed part never began after the running test ended"
            with other_lane_test(tmp_path) as following:
                assert not started(following, 1.0), "a test of the other lane began during the timed part"
                release.set()
                thread.join(30)
                assert started(following, 30), "the next test never began after the timed part"
                finish(following)
        finally:
            release.set()
            thread.join(30)
