"""The per-cluster supervisor: keeps every component of one state dir running.

``kubelab up`` starts it as the detached process ``kubelab supervise --state-dir DIR`` (pid file
``run/supervisor.pid``, log ``logs/supervisor.log``) and registers the components to run (the
apiserver, the scheduler, the controller-manager, kubelets, a local etcd) in
``run/components.json``; the files and the client side are in :mod:`kubelab.supervision`.
Adding a component is one :func:`kubelab.supervision.register` call. Like systemd's
``Restart=always``:

* a component the supervisor starts is its child, leader of its own session (it outlives the
  supervisor and is stopped as a process group), with its output appended to
  ``logs/<name>.log``; ``waitpid`` gives its real exit status (``exit code 1``, ``killed by
  SIGKILL``);
* a component already running when the supervisor starts (a killed supervisor restored by
  ``kubelab up``) is adopted from its pid file and left running; it is not a child, so its end is
  seen through a pidfd and its exit status is unknown;
* a component that ends while its pid file still names it crashed: it is started again after a
  delay of 1 s, doubling up to 30 s while it keeps crashing, back to 1 s once it ran for a
  minute (:class:`RestartBackoff`). One that ends after its pid file was removed was stopped on
  purpose (:func:`kubelab.launcher.stop_process`): it stays stopped until ``kubelab up``
  registers components again;
* logs past :attr:`SupervisorSettings.log_max_bytes` are rotated to ``<name>.log.1``;
* the status file is rewritten atomically on every change; SIGTERM ends the supervisor alone
  (``kubelab down`` stops it first, so nothing is restarted while the cluster stops).

The loop is event driven: SIGCHLD (a child ended), SIGHUP (components registered) and pidfds of
adopted processes wake it; otherwise it sleeps until the next backoff deadline or log check.
:class:`Supervisor` takes its processes (:class:`Runner`) and clocks as parameters, so the
restart policy is tested without real processes or real time.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kubelab import launcher
from kubelab.supervision import (
    SUPERVISOR,
    ComponentStatus,
    State,
    SupervisorStatus,
    components_path,
    read_components,
    read_status,
    write_status,
)

__all__ = ["ProcessRunner", "RestartBackoff", "Supervisor", "SupervisorSettings", "run"]

log = logging.getLogger(__name__)

UNKNOWN_EXIT = "exited (not a child: exit status unknown)"


@dataclass
class SupervisorSettings:
    state_dir: Path
    """The cluster's state dir: desired components, pid files, logs and the status file."""

    backoff_base: float = 1.0
    """Seconds before restarting a component that crashed after a healthy run."""

    backoff_max: float = 30.0
    """The longest delay between restarts of a crash-looping component."""

    backoff_reset_after: float = 60.0
    """A component that ran this many seconds restarts after ``backoff_base`` again."""

    log_max_bytes: int = 10 * 1024 * 1024
    """A component log past this size is rotated to ``<name>.log.1`` (one old file kept)."""

    log_check_interval: float = 5.0
    """Seconds between log size checks."""

    poll_interval: float = 0.5
    """Liveness poll of adopted processes when the kernel offers no pidfd."""


class RestartBackoff:
    """The delays before restarts: ``base``, doubling per quick crash up to ``cap``; a run of at
    least ``reset_after`` seconds starts over at ``base``."""

    def __init__(self, base: float, cap: float, reset_after: float) -> None:
        self.base, self.cap, self.reset_after = base, cap, reset_after
        self._next = base

    def next_delay(self, ran_for: float) -> float:
        """The delay before the restart of a process that ended after ``ran_for`` seconds."""
        if ran_for >= self.reset_after:
            self._next = self.base
        delay = self._next
        self._next = min(self.cap, delay * 2)
        return delay


class Handle(Protocol):
    """One started or adopted process."""

    pid: int
    start_time: str | None
    child: bool

    def poll(self) -> str | None:
        """None while it runs; how it ended once it has."""

    def fileno(self) -> int | None:
        """A descriptor readable once it ended (a pidfd), or None: poll it."""

    def close(self) -> None: ...


class ProcessRunner(Protocol):
    """Starts components and finds running ones (the seam for tests)."""

    def spawn(self, name: str, argv: list[str]) -> Handle: ...

    def adopt(self, name: str) -> Handle | None: ...


def describe_exit(returncode: int) -> str:
    """``exit code N`` or ``killed by SIGNAME`` from a Popen return code."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


class _Child:
    def __init__(self, state_dir: Path, name: str, argv: list[str]) -> None:
        self._process = launcher.spawn(state_dir, name, argv)
        # Never launcher.read_process/is_alive on a child: they reap it and lose its exit status.
        self.pid, self.child = self._process.pid, True
        self.start_time = launcher.process_start_time(self.pid)

    def poll(self) -> str | None:
        returncode = self._process.poll()
        return None if returncode is None else describe_exit(returncode)

    def fileno(self) -> int | None:
        return None  # SIGCHLD wakes the loop

    def close(self) -> None:
        pass


class _Adopted:
    def __init__(self, process: launcher.ManagedProcess) -> None:
        self.pid, self.start_time, self.child = process.pid, process.start_time, False
        self._pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(process.pid)

    def poll(self) -> str | None:
        return None if launcher.is_alive(self.pid, self.start_time) else UNKNOWN_EXIT

    def fileno(self) -> int | None:
        return self._pidfd

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


class LocalRunner:
    """Real processes of ``state_dir`` (pid files and logs as :mod:`kubelab.launcher` keeps them)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def spawn(self, name: str, argv: list[str]) -> Handle:
        return _Child(self.state_dir, name, argv)

    def adopt(self, name: str) -> Handle | None:
        process = launcher.read_process(self.state_dir, name)
        return _Adopted(process) if process is not None and process.alive else None


@dataclass
class _Component:
    name: str
    argv: list[str]
    backoff: RestartBackoff
    status: ComponentStatus
    handle: Handle | None = None
    started: float = 0.0
    """Monotonic time of the latest start."""
    restart_due: float | None = None
    """Monotonic time of the next start."""
    crashed_pid: int | None = None
    """The ended process whose pid file must still be there when the restart is due."""


def _pid_file_pid(state_dir: Path, name: str) -> int | None:
    try:
        return int(launcher.pid_path(state_dir, name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Supervisor:
    """The restart policy over the components of ``components.json``; :meth:`step` is one pass."""

    settings: SupervisorSettings
    runner: ProcessRunner
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    pid: int = field(default_factory=os.getpid)
    components: dict[str, _Component] = field(default_factory=dict)
    generation: int = -1
    _dirty: bool = True
    _next_log_check: float = 0.0

    def _new(self, name: str, argv: list[str], previous: ComponentStatus | None) -> _Component:
        s = self.settings
        status = ComponentStatus(state=State.STOPPED)
        if previous is not None:
            status.restarts, status.last_exit, status.last_exit_at = (
                previous.restarts, previous.last_exit, previous.last_exit_at)
        return _Component(name, argv, RestartBackoff(s.backoff_base, s.backoff_max, s.backoff_reset_after), status)

    def start(self) -> None:
        """First pass of a (re)started supervisor: adopt what runs, start what should run."""
        s = self.settings
        previous = read_status(s.state_dir)
        self.generation, desired = read_components(s.state_dir)
        for name, argv in desired.items():
            old = previous.components.get(name) if previous is not None else None
            component = self.components[name] = self._new(name, argv, old)
            handle = self.runner.adopt(name)
            if handle is not None:
                component.handle = handle
                component.started = self.clock()
                started_at = old.started_at if old is not None and old.pid == handle.pid else None
                self._running(component, started_at or launcher.started_at(handle.pid) or self.wall())
                log.info("adopted %s (pid %d)", name, handle.pid)
            elif old is not None and old.state is State.STOPPED and _pid_file_pid(s.state_dir, name) is None:
                log.info("%s stays stopped", name)
            else:
                if _pid_file_pid(self.settings.state_dir, name) is not None:  # ended while unsupervised
                    component.status.last_exit, component.status.last_exit_at = UNKNOWN_EXIT, self.wall()
                    component.status.restarts += old is not None
                self._spawn(component)
        self._dirty = True

    def _running(self, component: _Component, started_at: float) -> None:
        assert component.handle is not None
        component.status.state, component.status.child = State.RUNNING, component.handle.child
        component.status.pid, component.status.start_time = component.handle.pid, component.handle.start_time
        component.status.started_at, component.status.restart_at = started_at, None
        component.restart_due = None

    def _spawn(self, component: _Component) -> None:
        component.started = self.clock()
        try:
            component.handle = self.runner.spawn(component.name, component.argv)
        except OSError as exc:
            log.error("cannot start %s: %s", component.name, exc)
            self._ended(component, f"failed to start: {exc}")
            return
        log.info("started %s (pid %d)", component.name, component.handle.pid)
        self._running(component, self.wall())

    def _ended(self, component: _Component, reason: str) -> None:
        """Record an end; schedule a restart unless it was stopped on purpose."""
        now = self.clock()
        status = component.status
        status.last_exit, status.last_exit_at = reason, self.wall()
        component.crashed_pid = None
        if component.handle is not None:
            component.handle.close()
            component.crashed_pid = component.handle.pid
            deliberate = _pid_file_pid(self.settings.state_dir, component.name) != component.handle.pid
            component.handle = None
            if deliberate:
                log.info("%s (pid %s) was stopped: %s", component.name, status.pid, reason)
                status.state, status.restart_at, component.restart_due = State.STOPPED, None, None
                return
        delay = component.backoff.next_delay(now - component.started)
        status.state = State.RESTARTING if delay <= self.settings.backoff_base else State.BACKOFF
        component.restart_due, status.restart_at = now + delay, self.wall() + delay
        log.warning("%s (pid %s) ended: %s; restarting in %gs", component.name, status.pid, reason, delay)

    def _reload(self) -> None:
        generation, desired = read_components(self.settings.state_dir)
        if generation == self.generation:
            return
        self.generation, self._dirty = generation, True
        for name in set(self.components) - set(desired):
            component = self.components.pop(name)
            if component.handle is not None:
                component.handle.close()
            log.info("no longer supervising %s", name)
        for name, argv in desired.items():
            existing = self.components.get(name)
            if existing is None:
                component = self.components[name] = self._new(name, argv, None)
                handle = self.runner.adopt(name)
                if handle is not None:
                    component.handle, component.started = handle, self.clock()
                    self._running(component, launcher.started_at(handle.pid) or self.wall())
                    continue
            else:
                component = existing
            component.argv = argv
            if component.handle is None:  # new, stopped or waiting: a registration means "run it now"
                component.status.restarts += component.status.state is not State.STOPPED
                self._spawn(component)

    def step(self) -> float:
        """One pass: apply registrations, notice ends, restart what is due, rotate logs, report.

        Returns the seconds until the next pass is needed (signals and pidfds may come sooner).
        """
        self._reload()
        now = self.clock()
        for component in self.components.values():
            if component.handle is not None:
                reason = component.handle.poll()
                if reason is not None:
                    self._ended(component, reason)
                    self._dirty = True
        for component in self.components.values():
            if component.handle is None and component.restart_due is not None and component.restart_due <= now:
                component.restart_due = None
                crashed = component.crashed_pid
                if crashed is not None and _pid_file_pid(self.settings.state_dir, component.name) != crashed:
                    component.status.state, component.status.restart_at = State.STOPPED, None  # stopped meanwhile
                else:
                    component.status.restarts += 1
                    self._spawn(component)
                self._dirty = True
        if now >= self._next_log_check:
            self._rotate_logs()
            self._next_log_check = now + self.settings.log_check_interval
        if self._dirty:
            write_status(self.settings.state_dir, SupervisorStatus(
                pid=self.pid, generation=self.generation, updated_at=self.wall(),
                components={name: c.status for name, c in self.components.items()}))
            self._dirty = False
        return self._timeout(now)

    def _timeout(self, now: float) -> float:
        waits = [self._next_log_check - now]
        waits += [c.restart_due - now for c in self.components.values() if c.restart_due is not None]
        if any(c.handle is not None and not c.handle.child and c.handle.fileno() is None
               for c in self.components.values()):
            waits.append(self.settings.poll_interval)
        return max(0.0, min(waits))

    def _rotate_logs(self) -> None:
        for name in [SUPERVISOR, *self.components]:
            path = launcher.log_path(self.settings.state_dir, name)
            if launcher.rotate_log(path, self.settings.log_max_bytes):
                log.info("rotated %s", path)

    def wait_handles(self) -> list[int]:
        """The pidfds of the adopted processes, for the caller's selector."""
        return [fd for c in self.components.values() if c.handle is not None and (fd := c.handle.fileno()) is not None]


def run(settings: SupervisorSettings) -> int:
    """Supervise ``settings.state_dir`` until SIGTERM or SIGINT; 1 if another supervisor holds it."""
    run_dir = settings.state_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / ".supervisor.lock", "a")  # noqa: SIM115 -- held for the process lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another supervisor runs for %s", settings.state_dir)
        return 1
    reader, writer = os.pipe()
    os.set_blocking(reader, False)
    os.set_blocking(writer, False)
    stopping: list[int] = []
    signal.set_wakeup_fd(writer)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    supervisor = Supervisor(settings, LocalRunner(settings.state_dir))
    log.info("supervising %s (components in %s)", settings.state_dir, components_path(settings.state_dir))
    supervisor.start()
    with selectors.DefaultSelector() as selector:
        selector.register(reader, selectors.EVENT_READ)
        while not stopping:
            try:
                timeout = supervisor.step()
            except Exception:  # a supervisor that dies restarts nothing: log, retry shortly
                log.exception("supervisor pass failed")
                timeout = 1.0
            if stopping:
                break
            # Registered afresh each pass: a closed pidfd's number may already name a new one.
            pidfds = supervisor.wait_handles()
            for fd in pidfds:
                selector.register(fd, selectors.EVENT_READ)
            selector.select(timeout)
            for fd in pidfds:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    selector.unregister(fd)
            with contextlib.suppress(BlockingIOError):
                while os.read(reader, 512):
                    pass
    log.info("supervisor stopping (signal %d); components keep running", stopping[0])
    return 0
