"""Process records of a cluster's state dir: pid files and whether the process they name still runs.

Each background process of a cluster has a name (``apiserver``, ``etcd``, ``scheduler``,
``kubelet-node-1`` ...) and a pid file ``state_dir/run/<name>.pid``: first line the pid, second
line the process start time from ``/proc``, so a pid reused by an unrelated process is recognised
as stale. :mod:`kubelab.launcher` writes and removes these files; the supervisor
(:mod:`kubelab.supervisor`), ``kubelab status`` and the readiness waits
(:mod:`kubelab.readiness`) read them through :func:`read_process` and :func:`is_alive`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ManagedProcess",
    "is_alive",
    "list_processes",
    "pid_path",
    "process_start_time",
    "read_process",
    "started_at",
]


def pid_path(state_dir: Path, name: str) -> Path:
    return state_dir / "run" / f"{name}.pid"


def _start_time(pid: int) -> str | None:
    """Clock ticks since boot at which ``pid`` started (field 22 of /proc/<pid>/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` as pid files record it (clock ticks since boot), or None."""
    return _start_time(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith("Z")


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def is_alive(pid: int, start_time: str | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when given, started at ``start_time``."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _is_zombie(pid):
        return False
    return start_time is None or _start_time(pid) in (None, start_time)


@dataclass(frozen=True)
class ManagedProcess:
    """What a pid file says about one named process, and whether it still runs."""

    name: str
    pid: int
    start_time: str | None
    alive: bool

    @property
    def stale(self) -> bool:
        """The pid file outlived its process (crash, reboot, SIGKILL from elsewhere)."""
        return not self.alive


def read_process(state_dir: Path, name: str) -> ManagedProcess | None:
    """The process recorded under ``name``, or None if there is no (readable) pid file."""
    try:
        lines = pid_path(state_dir, name).read_text().split()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    start_time = lines[1] if len(lines) > 1 else None
    return ManagedProcess(name=name, pid=pid, start_time=start_time, alive=is_alive(pid, start_time))


def list_processes(state_dir: Path) -> list[ManagedProcess]:
    """Every process with a pid file in ``state_dir/run``, by name."""
    run_dir = state_dir / "run"
    if not run_dir.is_dir():
        return []
    found = (read_process(state_dir, path.stem) for path in sorted(run_dir.glob("*.pid")))
    return [process for process in found if process is not None]


def started_at(pid: int) -> float | None:
    """Wall-clock time (epoch seconds) at which ``pid`` started, from /proc, or None."""
    ticks = _start_time(pid)
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return None if ticks is None else boot + int(ticks) / os.sysconf("SC_CLK_TCK")
