"""Tests of the cluster supervisor (:mod:`kubelab.supervisor`, :mod:`kubelab.supervision`).

The restart policy runs against fake processes and a fake clock; the process handling
(children, adoption after a supervisor restart, deliberate stops, ``kubelab down``) against a
real ``kubelab supervise`` process and real sleeping processes killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubelab import cli, launcher, supervision
from kubelab.output import human_duration
from kubelab.supervision import State, SupervisorStatus
from kubelab.supervisor import UNKNOWN_EXIT, RestartBackoff, Supervisor, SupervisorSettings, describe_exit

# --- the restart policy -----------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_and_resets_after_a_minute_of_running() -> None:
    backoff = RestartBackoff(base=1.0, cap=30.0, reset_after=60.0)
    quick = [backoff.next_delay(ran_for=0.5) for _ in range(7)]
    assert quick == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next_delay(ran_for=59.9) == 30.0
    assert backoff.next_delay(ran_for=60.0) == 1.0
    assert backoff.next_delay(ran_for=1.0) == 2.0


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        pytest.param(0, "exit code 0", id="clean"),
        pytest.param(3, "exit code 3", id="failure"),
        pytest.param(-signal.SIGKILL, "killed by SIGKILL", id="sigkill"),
        pytest.param(-signal.SIGSEGV, "killed by SIGSEGV", id="sigsegv"),
    ],
)
def test_describe_exit(returncode: int, expected: str) -> None:
    assert describe_exit(returncode) == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProcess:
    pid: int
    child: bool = True
    start_time: str | None = "1"
    ended: str | None = None

    def poll(self) -> str | None:
        return self.ended

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        pass


@dataclass
class FakeRunner:
    """Processes that are pid files only; the test ends them by setting ``ended``."""

    state_dir: Path
    started: list[FakeProcess] = field(default_factory=list)
    running: dict[str, FakeProcess] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str]) -> FakeProcess:
        process = FakeProcess(pid=100 + len(self.started))
        self.started.append(process)
        launcher.pid_path(self.state_dir, name).write_text(f"{process.pid}\n1\n")
        return process

    def adopt(self, name: str) -> FakeProcess | None:
        return self.running.get(name)


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Supervisor, FakeRunner, FakeClock]:
    (tmp_path / "run").mkdir()
    clock = FakeClock()
    runner = FakeRunner(tmp_path)
    settings = SupervisorSettings(state_dir=tmp_path, log_check_interval=3600)
    return Supervisor(settings, runner, clock=clock, wall=clock), runner, clock


def _status(supervisor: Supervisor, name: str = "web") -> supervision.ComponentStatus:
    status = supervision.read_status(supervisor.settings.state_dir)
    assert status is not None and status.pid == supervisor.pid
    return status.components[name]


def test_a_crashing_component_restarts_with_backoff(fake: tuple[Supervisor, FakeRunner, FakeClock]) -> None:
    supervisor, runner, clock = fake
    supervision.register(supervisor.settings.state_dir, "web", ["web"])
    supervisor.start()
    supervisor.step()
    assert _status(supervisor).state is State.RUNNING and len(runner.started) == 1

    delays = []
    for expected_state in (State.RESTARTING, State.BACKOFF, State.BACKOFF, State.BACKOFF):
        runner.started[-1].ended = "killed by SIGKILL"
        clock.now += 0.5
        delay = supervisor.step()
        status = _status(supervisor)
        assert (status.state, status.last_exit) == (expected_state, "killed by SIGKILL")
        assert status.restart_at == pytest.approx(clock.now + delay)
        clock.now += delay - 0.01
        supervisor.step()
        assert _status(supervisor).state is expected_state, "restarted before its delay"
        clock.now += 0.01
        supervisor.step()
        assert _status(supervisor).state is State.RUNNING
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert _status(supervisor).restarts == 4 and len(runner.started) == 5

    clock.now += 60  # a minute of running resets the backoff
    runner.started[-1].ended = "exit code 1"
    assert supervisor.step() == pytest.approx(1.0)
    assert _status(supervisor).state is State.RESTARTING


def test_a_component_stopped_on_purpose_stays_stopped_until_registered_again(
    fake: tuple[Supervisor, FakeRunner, FakeClock],
) -> None:
    supervisor, runner, clock = fake
    state_dir = supervisor.settings.state_dir
    supervision.register(state_dir, "web", ["web"])
    supervisor.start()
    launcher.pid_path(state_dir, "web").unlink()  # what launcher.stop_process does first
    runner.started[-1].ended = "killed by SIGTERM"
    supervisor.step()
    clock.now += 100
    supervisor.step()
    assert (_status(supervisor).state, len(runner.started)) == (State.STOPPED, 1)

    supervision.register(state_dir, "web", ["web", "--again"])
    supervisor.step()
    status = _status(supervisor)
    assert (status.state, status.pid, status.restarts) == (State.RUNNING, runner.started[-1].pid, 0)


def test_a_pid_file_removed_during_the_backoff_cancels_the_restart(
    fake: tuple[Supervisor, FakeRunner, FakeClock],
) -> None:
    supervisor, runner, clock = fake
    supervision.register(supervisor.settings.state_dir, "web", ["web"])
    supervisor.start()
    runner.started[-1].ended = "exit code 2"
    supervisor.step()
    assert _status(supervisor).state is State.RESTARTING
    launcher.stop_process(supervisor.settings.state_dir, "web")  # a stale pid file: removed
    clock.now += 5
    supervisor.step()
    assert (_status(supervisor).state, len(runner.started)) == (State.STOPPED, 1)


def test_a_restarted_supervisor_adopts_and_keeps_the_counts(
    fake: tuple[Supervisor, FakeRunner, FakeClock],
) -> None:
    supervisor, runner, clock = fake
    state_dir = supervisor.settings.state_dir
    supervision.register(state_dir, "web", ["web"])
    supervisor.start()
    runner.started[-1].ended = "exit code 1"
    supervisor.step()
    clock.now += 1
    supervisor.step()
    survivor = runner.started[-1]
    assert _status(supervisor).restarts == 1

    runner.running["web"] = FakeProcess(pid=survivor.pid, child=False)
    second = Supervisor(supervisor.settings, runner, clock=clock, wall=clock, pid=supervisor.pid + 1)
    second.start()
    second.step()
    status = _status(second)
    assert (status.state, status.pid, status.restarts, status.child) == (State.RUNNING, survivor.pid, 1, False)
    assert len(runner.started) == 2, "an adopted component is not started again"

    runner.running["web"].ended = UNKNOWN_EXIT
    second.step()
    assert (_status(second).state, _status(second).last_exit) == (State.RESTARTING, UNKNOWN_EXIT)


def test_a_component_that_ended_while_no_supervisor_ran_is_started(
    fake: tuple[Supervisor, FakeRunner, FakeClock],
) -> None:
    supervisor, runner, _ = fake
    state_dir = supervisor.settings.state_dir
    supervision.register(state_dir, "web", ["web"])
    supervisor.start()
    supervisor.step()
    # The supervisor is gone; so is "web", whose pid file stayed (a crash, not a stop).
    second = Supervisor(supervisor.settings, runner, clock=supervisor.clock, wall=supervisor.wall, pid=1)
    second.start()
    second.step()
    status = _status(second)
    assert (status.state, status.restarts, status.last_exit) == (State.RUNNING, 1, UNKNOWN_EXIT)
    assert len(runner.started) == 2


# --- files and output -------------------------------------------------------------------------


def test_register_bumps_the_generation_and_keeps_the_others(tmp_path: Path) -> None:
    assert supervision.read_components(tmp_path) == (0, {})
    assert supervision.register(tmp_path, "a", ["x", "1"]) == 1
    assert supervision.register(tmp_path, "b", ["y"]) == 2
    assert supervision.register(tmp_path, "a", ["x", "2"]) == 3
    assert supervision.read_components(tmp_path) == (3, {"a": ["x", "2"], "b": ["y"]})
    assert supervision.forget(tmp_path, "a") == 4
    assert supervision.read_components(tmp_path) == (4, {"b": ["y"]})


def test_status_file_round_trip(tmp_path: Path) -> None:
    status = SupervisorStatus(pid=7, generation=3, updated_at=5.0, components={
        "web": supervision.ComponentStatus(state=State.BACKOFF, pid=9, restarts=2, last_exit="exit code 1",
                                           last_exit_at=4.0, restart_at=9.0)})
    supervision.write_status(tmp_path, status)
    assert supervision.read_status(tmp_path) == status
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["supervisor-status.json"]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(-1, "0s", id="skew"),
        pytest.param(59, "59s", id="seconds"),
        pytest.param(119, "119s", id="under-two-minutes"),
        pytest.param(185, "3m5s", id="minutes-seconds"),
        pytest.param(300, "5m", id="whole-minutes"),
        pytest.param(1500, "25m", id="minutes"),
        pytest.param(5 * 3600 + 180, "5h3m", id="hours-minutes"),
        pytest.param(20 * 3600 + 59, "20h", id="hours"),
        pytest.param(3 * 86400 + 4 * 3600, "3d4h", id="days-hours"),
        pytest.param(90 * 86400, "90d", id="days"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_rotate_log_keeps_one_old_file(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    with open(log, "ab") as writer:  # a writer in append mode, as components hold their log
        writer.write(b"a" * 100)
        writer.flush()
        assert not launcher.rotate_log(log, max_bytes=100)
        writer.write(b"b")
        writer.flush()
        assert launcher.rotate_log(log, max_bytes=100)
        writer.write(b"after")
        writer.flush()
    assert (tmp_path / "web.log.1").read_bytes() == b"a" * 100 + b"b"
    assert log.read_bytes() == b"after"


def test_rows_without_a_supervisor(tmp_path: Path) -> None:
    supervision.write_status(tmp_path, SupervisorStatus(pid=_dead_pid(), components={
        "web": supervision.ComponentStatus(state=State.RUNNING, pid=_dead_pid(), restarts=3,
                                           last_exit="killed by SIGKILL", last_exit_at=940.0)}))
    rows = supervision.component_rows(tmp_path, now=1000.0)
    assert rows == [
        ("COMPONENT", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"),
        ("supervisor", "stopped", "-", "-", "-", "-"),
        ("web", "stopped", "-", "-", "3 (60s ago)", "killed by SIGKILL"),
    ]


def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- a real supervisor process ------------------------------------------------------------------

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "state"
    directory.mkdir()
    yield directory
    cli.main(["down", "--state-dir", str(directory)])


def _component(state_dir: Path, name: str) -> supervision.ComponentStatus:
    status = supervision.read_status(state_dir)
    assert status is not None
    return status.components[name]


def _back(state_dir: Path, name: str, restarts: int, last_exit: str) -> supervision.ComponentStatus:
    """Wait until ``name`` runs again after its ``restarts``-th restart; check its pid file."""

    def restarted(status: SupervisorStatus) -> bool:
        component = status.components[name]
        return component.restarts == restarts and component.state is State.RUNNING

    component = supervision.wait_for(state_dir, restarted, timeout=30, what=f"{name} back").components[name]
    assert component.last_exit == last_exit
    recorded = launcher.read_process(state_dir, name)
    assert recorded is not None and recorded.alive and recorded.pid == component.pid
    return component


def test_killed_components_come_back_and_a_restored_supervisor_adopts_them(state_dir: Path) -> None:
    supervisor, started = supervision.ensure_supervisor(state_dir)
    assert started
    first = {name: supervision.ensure_component(state_dir, name, SLEEPER) for name in ("a", "b")}
    assert all(started and process.alive for process, started in first.values())

    for name, (process, _) in first.items():  # kill -9 each in turn: a child, real exit status
        os.kill(process.pid, signal.SIGKILL)
        component = _back(state_dir, name, 1, "killed by SIGKILL")
        assert component.pid != process.pid and component.child

    pids: dict[str, int] = {}
    for name in first:
        pid = _component(state_dir, name).pid
        assert pid is not None
        pids[name] = pid
    os.kill(supervisor.pid, signal.SIGKILL)
    _wait_gone(supervisor.pid)
    restored, started = supervision.ensure_supervisor(state_dir)
    assert started and restored.pid != supervisor.pid
    for name, pid in pids.items():
        component = _component(state_dir, name)
        assert (component.pid, component.state, component.restarts, component.child) == (pid, State.RUNNING, 1, False)
        assert launcher.is_alive(pid)

    os.kill(pids["a"], signal.SIGKILL)  # adopted: not a child, so the exit status is unknown
    _back(state_dir, "a", 2, UNKNOWN_EXIT)

    launcher.stop_process(state_dir, "b", grace=5)  # on purpose: stays stopped
    supervision.wait_for(state_dir, lambda s: s.components["b"].state is State.STOPPED, timeout=30, what="b stopped")
    assert launcher.read_process(state_dir, "b") is None and not launcher.is_alive(pids["b"])

    survivors = [p.pid for p in launcher.list_processes(state_dir)]
    assert cli.main(["down", "--state-dir", str(state_dir)]) == 0
    assert launcher.list_processes(state_dir) == []
    assert not any(launcher.is_alive(pid) for pid in survivors)
    assert not supervision.components_path(state_dir).exists()


def test_logs_are_appended_across_restarts_and_rotated(state_dir: Path) -> None:
    supervision.ensure_supervisor(state_dir, extra_args=["--log-max-bytes", "4000"])
    chatty = [sys.executable, "-c", "import time; print('x' * 3000, flush=True); time.sleep(600)"]
    process, _ = supervision.ensure_component(state_dir, "chatty", chatty)
    log = launcher.log_path(state_dir, "chatty")
    supervision.wait_for(state_dir, lambda _: "x" * 3000 in log.read_text(), timeout=30, what="the first output")
    os.kill(process.pid, signal.SIGKILL)
    _back(state_dir, "chatty", 1, "killed by SIGKILL")
    rotated = log.with_name("chatty.log.1")
    supervision.wait_for(state_dir, lambda _: rotated.exists(), timeout=30, what="the log rotation")
    assert rotated.read_text().count("x" * 3000) == 2  # both runs' output, appended
    assert log.stat().st_size < 4000


def _wait_gone(pid: int) -> None:
    import time

    deadline = time.monotonic() + 10
    while launcher.is_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.02)
