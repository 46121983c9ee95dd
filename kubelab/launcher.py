"""Starting and stopping the cluster's background processes, and their logs.

Used by ``kubelab up/down/status``, the supervisor (:mod:`kubelab.supervisor`) and the test
harness (:mod:`kubelab.testing`). Each process has a name (``apiserver``, ``etcd``,
``scheduler``, ``kubelet-node-1`` ...):

* its pid file is ``state_dir/run/<name>.pid`` (:mod:`kubelab.pidfiles`: the pid and the
  process start time, so a reused pid is recognised as stale);
* its output goes to ``state_dir/logs/<name>.log`` (appended; :func:`rotate_log` caps it);
* it runs detached in its own session (``start_new_session``), so it survives the CLI that
  started it and can be stopped as a whole process group;
* stopping removes the pid file (which tells the supervisor that the exit is deliberate),
  sends SIGTERM to the group, waits a grace period, then SIGKILLs it.

The names of its neighbours are exported here too, so callers need one import: the process
records (:mod:`kubelab.pidfiles`), the command lines and kubeconfigs of the components
(:mod:`kubelab.component_commands`) and the readiness probes (:mod:`kubelab.readiness`).
"""

from __future__ import annotations

import enum
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kubelab.component_commands import (
    apiserver_command,
    component_command,
    component_kubeconfig,
    kubelab_command,
    kubelet_command,
    python_env,
)
from kubelab.pidfiles import (
    ManagedProcess,
    is_alive,
    list_processes,
    pid_path,
    process_start_time,
    read_process,
    started_at,
)
from kubelab.readiness import (
    NotReadyError,
    apiserver_ssl_context,
    apiserver_url,
    get_json,
    node_rows,
    probe_readyz,
    wait_apiserver_ready,
    wait_meshd_ready,
    wait_nodes_ready,
)

__all__ = [
    "ManagedProcess",
    "NotReadyError",
    "StopOutcome",
    "apiserver_command",
    "apiserver_ssl_context",
    "apiserver_url",
    "component_command",
    "component_kubeconfig",
    "get_json",
    "is_alive",
    "kubelab_command",
    "kubelet_command",
    "list_processes",
    "log_path",
    "log_tail",
    "node_rows",
    "pid_path",
    "probe_readyz",
    "process_start_time",
    "python_env",
    "read_process",
    "rotate_log",
    "spawn",
    "start_process",
    "started_at",
    "stop_pid",
    "stop_process",
    "wait_apiserver_ready",
    "wait_meshd_ready",
    "wait_nodes_ready",
]


def log_path(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


def spawn(
    state_dir: Path, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as process ``name`` of ``state_dir``, leader of its own session; write its pid
    file; append its output to its log. Return the child (the caller may wait for it).

    Raises OSError if ``argv`` cannot be executed.
    """
    pid_file, log_file = pid_path(state_dir, name), log_path(state_dir, name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else python_env(),
            start_new_session=True,
            close_fds=True,
        )
    start_time = process_start_time(process.pid)
    tmp = pid_file.with_name(f".{pid_file.name}.tmp")
    tmp.write_text(f"{process.pid}\n{start_time or ''}\n")
    os.replace(tmp, pid_file)
    return process


def start_process(
    state_dir: Path, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Start ``argv`` detached as process ``name``; write its pid file; append output to its log.

    Raises RuntimeError if a process of that name is already running. A stale pid file is
    simply replaced.
    """
    existing = read_process(state_dir, name)
    if existing is not None and existing.alive:
        raise RuntimeError(f"{name} is already running (pid {existing.pid})")
    process = spawn(state_dir, name, argv, env=env)
    return ManagedProcess(name=name, pid=process.pid, start_time=process_start_time(process.pid), alive=True)


def rotate_log(path: Path, max_bytes: int) -> bool:
    """Keep ``path`` under ``max_bytes``: copy it to ``<path>.1`` and truncate it in place.

    Copy-and-truncate (logrotate's ``copytruncate``) because the writers hold the file open in
    append mode and cannot be told to reopen it: after the truncation their next write lands at
    the new end. Lines written between the copy and the truncation are lost. True if rotated.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
        os.truncate(path, 0)
    except OSError:
        return False
    return True


class StopOutcome(enum.Enum):
    """How :func:`stop_process` ended a process."""

    NOT_RECORDED = "not running"
    STALE = "stale pid file removed"
    TERMINATED = "stopped"
    KILLED = "killed"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid`` (our processes lead their own session)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pid: int, start_time: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not is_alive(pid, start_time):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop_pid(pid: int, *, start_time: str | None = None, grace: float = 10.0) -> StopOutcome:
    """SIGTERM the process group of ``pid``; SIGKILL it if still alive after ``grace`` seconds."""
    if not is_alive(pid, start_time):
        return StopOutcome.STALE
    _signal_group(pid, signal.SIGTERM)
    if _wait_gone(pid, start_time, grace):
        outcome = StopOutcome.TERMINATED
    else:
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, start_time, 5.0)
        outcome = StopOutcome.KILLED
    # Children of the group may outlive a leader that exited on SIGTERM: finish them too.
    _signal_group(pid, signal.SIGKILL)
    return outcome


def stop_process(state_dir: Path, name: str, *, grace: float = 10.0) -> tuple[StopOutcome, int | None]:
    """Stop process ``name`` and remove its pid file: (what happened, its pid if one was recorded)."""
    process = read_process(state_dir, name)
    pid_file = pid_path(state_dir, name)
    if process is None:
        pid_file.unlink(missing_ok=True)
        return StopOutcome.NOT_RECORDED, None
    # The pid file goes first: a supervisor that sees the process end without its pid file
    # takes the exit as deliberate and does not restart it.
    pid_file.unlink(missing_ok=True)
    outcome = stop_pid(process.pid, start_time=process.start_time, grace=grace) if process.alive else StopOutcome.STALE
    return outcome, process.pid


def log_tail(state_dir: Path, name: str, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of process ``name``'s log (empty if there is none)."""
    try:
        with open(log_path(state_dir, name), "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
