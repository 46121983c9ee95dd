"""The contract between ``kubelab up/status/down`` and the cluster's supervisor, and its client side.

The supervisor (:mod:`kubelab.supervisor`, the process ``kubelab supervise``) keeps running the
components named in one file and reports on them in another, both in ``state_dir/run``:

* ``components.json`` -- the desired components: ``{"generation": N, "components": {name:
  {"argv": [...]}}}``. Written by :func:`register` (``kubelab up``) under a lock, atomically;
  every write bumps the generation and wakes the supervisor with SIGHUP. A new generation also
  starts again whatever is stopped or waiting in backoff: ``up`` means "run all of this now".
* ``supervisor-status.json`` -- what the supervisor last saw: per component its state
  (:class:`State`), pid, start time, restart count and last exit reason, and the generation it
  has applied. Written atomically (temporary file + rename) by the supervisor only.

Because both live in the state dir, the supervisor holds no state of its own: a restarted
supervisor reads the desired set, adopts the components whose pid files name live processes and
carries over their restart counts.

Used by ``kubelab up`` and ``status`` (:func:`ensure_supervisor`, :func:`ensure_component`,
:func:`component_rows`) and by tests that kill components and wait for them to come back
(:func:`read_status`, :func:`wait_for`).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kubelab import component_commands, launcher
from kubelab.output import human_duration

__all__ = [
    "SUPERVISOR",
    "ComponentStatus",
    "State",
    "SupervisorError",
    "SupervisorStatus",
    "component_rows",
    "components_path",
    "ensure_component",
    "ensure_supervisor",
    "forget",
    "read_components",
    "read_status",
    "register",
    "status_path",
    "wait_for",
    "write_status",
]

SUPERVISOR = "supervisor"
"""The supervisor's process name: pid file ``run/supervisor.pid``, log ``logs/supervisor.log``."""


class SupervisorError(RuntimeError):
    """The supervisor is not running or did not act on a request in time."""


class State(enum.StrEnum):
    """A supervised component's state, as ``kubelab status`` shows it."""

    RUNNING = "running"
    RESTARTING = "restarting"
    """Exited after a healthy run; starts again after the shortest delay."""
    BACKOFF = "backoff"
    """Exited again soon after a restart; waits a doubling delay (crash loop)."""
    STOPPED = "stopped"
    """Stopped on purpose (its pid file was removed) or not running while no supervisor runs."""


@dataclass
class ComponentStatus:
    """One component as the supervisor last saw it."""

    state: State
    pid: int | None = None
    """The pid of its latest process (kept after it exited)."""
    start_time: str | None = None
    """That process's start time in /proc (tells it from a later process with the same pid)."""
    started_at: float | None = None
    """Wall-clock time that process started."""
    restarts: int = 0
    """Starts after an exit, across supervisor restarts."""
    last_exit: str = ""
    """How the previous process ended: ``exit code 1``, ``killed by SIGKILL``, ..."""
    last_exit_at: float | None = None
    restart_at: float | None = None
    """Wall-clock time of the next start, while restarting or in backoff."""
    child: bool = True
    """False for a process adopted from a pid file: its exit status cannot be known."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ComponentStatus:
        return cls(**{**data, "state": State(data["state"])})


@dataclass
class SupervisorStatus:
    """The supervisor's status file."""

    pid: int
    generation: int = 0
    """The generation of ``components.json`` the supervisor has applied."""
    updated_at: float = 0.0
    components: dict[str, ComponentStatus] = field(default_factory=dict)


def components_path(state_dir: Path) -> Path:
    return state_dir / "run" / "components.json"


def status_path(state_dir: Path) -> Path:
    return state_dir / "run" / "supervisor-status.json"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_components(state_dir: Path) -> tuple[int, dict[str, list[str]]]:
    """(generation, {name: argv}) of the desired components; (0, {}) if none were registered."""
    try:
        data = orjson.loads(components_path(state_dir).read_bytes())
        return int(data["generation"]), {name: list(c["argv"]) for name, c in data["components"].items()}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0, {}


@contextlib.contextmanager
def _components_lock(state_dir: Path) -> Iterator[None]:
    lock = state_dir / "run" / ".components.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _update_components(state_dir: Path, change: Callable[[dict[str, list[str]]], None]) -> int:
    with _components_lock(state_dir):
        generation, components = read_components(state_dir)
        change(components)
        document = {"generation": generation + 1, "components": {n: {"argv": a} for n, a in components.items()}}
        _write_atomically(components_path(state_dir), orjson.dumps(document, option=orjson.OPT_INDENT_2))
    _wake(state_dir)
    return generation + 1


def register(state_dir: Path, name: str, argv: Sequence[str]) -> int:
    """Desire component ``name`` running ``argv``; return the new generation.

    A running component keeps its process: a changed ``argv`` applies from its next start.
    """
    return _update_components(state_dir, lambda components: components.__setitem__(name, list(argv)))


def forget(state_dir: Path, name: str) -> int:
    """Stop supervising ``name`` (its process, if any, is left alone); return the new generation."""
    def remove(components: dict[str, list[str]]) -> None:
        components.pop(name, None)

    return _update_components(state_dir, remove)


def _wake(state_dir: Path) -> None:
    process = launcher.read_process(state_dir, SUPERVISOR)
    if process is not None and process.alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGHUP)


def read_status(state_dir: Path) -> SupervisorStatus | None:
    """The supervisor's last status file, or None if there is none (yet)."""
    try:
        data = orjson.loads(status_path(state_dir).read_bytes())
        components = {name: ComponentStatus.from_json(c) for name, c in data.pop("components").items()}
        return SupervisorStatus(**data, components=components)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def write_status(state_dir: Path, status: SupervisorStatus) -> None:
    """Replace the status file atomically (readers never see half a file)."""
    _write_atomically(status_path(state_dir), orjson.dumps(asdict(status)))


def wait_for(
    state_dir: Path, condition: Callable[[SupervisorStatus], bool], *, timeout: float, what: str = "the supervisor"
) -> SupervisorStatus:
    """Poll the status file until ``condition(status)`` holds; return that status.

    Raises SupervisorError when ``timeout`` seconds pass or the supervisor is not running.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = read_status(state_dir)
        if status is not None and condition(status):
            return status
        supervisor = launcher.read_process(state_dir, SUPERVISOR)
        if supervisor is None or not supervisor.alive:
            tail = "\n".join(launcher.log_tail(state_dir, SUPERVISOR))
            raise SupervisorError(f"the supervisor is not running (waiting for {what}); its log:\n{tail}")
        if time.monotonic() >= deadline:
            raise SupervisorError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def ensure_supervisor(
    state_dir: Path, *, extra_args: Sequence[str] = (), timeout: float = 30.0
) -> tuple[launcher.ManagedProcess, bool]:
    """Start ``kubelab supervise`` for ``state_dir`` unless it runs; return (process, started).

    A started supervisor adopts the components already running; this returns once it has
    written its first status.
    """
    running = launcher.read_process(state_dir, SUPERVISOR)
    if running is not None and running.alive:
        return running, False
    argv = [*component_commands.kubelab_command(), "supervise", "--state-dir", str(state_dir), *extra_args]
    process = launcher.start_process(state_dir, SUPERVISOR, argv)
    wait_for(state_dir, lambda status: status.pid == process.pid, timeout=timeout, what="its first status")
    return process, True


def ensure_component(
    state_dir: Path, name: str, argv: Sequence[str], *, timeout: float = 30.0
) -> tuple[launcher.ManagedProcess, bool]:
    """Have the supervisor run ``name`` (``argv``); return (its process, whether it was started now).

    A component already running is left as it is. Otherwise this returns once the supervisor has
    started it; the process may have exited again already (check ``alive`` or wait on it).
    """
    before = launcher.read_process(state_dir, name)
    generation = register(state_dir, name, argv)
    if before is not None and before.alive:
        return before, False

    def started(status: SupervisorStatus) -> bool:
        component = status.components.get(name)
        return status.generation >= generation and component is not None and component.pid is not None

    component = wait_for(state_dir, started, timeout=timeout, what=f"{name} to start").components[name]
    assert component.pid is not None
    alive = launcher.is_alive(component.pid, component.start_time)
    return launcher.ManagedProcess(name, component.pid, component.start_time, alive), True


def component_rows(state_dir: Path, *, now: float | None = None) -> list[tuple[str, ...]]:
    """``kubelab status``'s table: the supervisor, then every supervised or recorded process.

    Without a live supervisor a component's state comes from its pid file alone (running or
    stopped); its restart count and last exit stay those the supervisor last recorded.
    """
    now = time.time() if now is None else now
    rows: list[tuple[str, ...]] = [("COMPONENT", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT")]
    supervisor = launcher.read_process(state_dir, SUPERVISOR)
    supervising = supervisor is not None and supervisor.alive
    status = read_status(state_dir)
    if supervisor is not None and supervising:
        began = launcher.started_at(supervisor.pid)
        rows.append((SUPERVISOR, State.RUNNING, str(supervisor.pid),
                     human_duration(now - began) if began else "-", "-", "-"))
    else:
        rows.append((SUPERVISOR, State.STOPPED, "-", "-", "-", "-"))
    recorded = {p.name: p for p in launcher.list_processes(state_dir) if p.name != SUPERVISOR}
    supervised = dict(status.components) if status is not None else {}
    for name in sorted(set(recorded) | set(supervised)):
        process, component = recorded.get(name), supervised.get(name)
        state = component.state if component is not None and supervising else None
        if state is None or (state is State.RUNNING and (process is None or not process.alive)):
            state = State.RUNNING if process is not None and process.alive else State.STOPPED
        pid = str(process.pid) if process is not None and process.alive else "-"
        since = component.started_at if component is not None and process is not None \
            and component.pid == process.pid else (launcher.started_at(process.pid) if process else None)
        uptime = human_duration(now - since) if state is State.RUNNING and since else "-"
        restarts, last_exit = "-", "-"
        if component is not None:
            restarts = str(component.restarts)
            if component.restarts and component.last_exit_at is not None:
                restarts += f" ({human_duration(now - component.last_exit_at)} ago)"
            last_exit = component.last_exit or "-"
        rows.append((name, str(state), pid, uptime, restarts, last_exit))
    return rows
