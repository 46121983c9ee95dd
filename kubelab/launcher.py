"""Starting, watching and stopping the cluster's background processes.

Used by ``kubelab up/down/status`` and by the test harness (:mod:`kubelab.testing`). Each
process has a name (``apiserver``, ``etcd``, later ``scheduler``, ``kubelet-node1`` ...):

* its pid file is ``state_dir/run/<name>.pid`` (first line the pid, second line the process
  start time from ``/proc``, so a pid reused by an unrelated process is recognised as stale);
* its output goes to ``state_dir/logs/<name>.log`` (appended; :func:`rotate_log` caps it);
* it runs detached in its own session (``start_new_session``), so it survives the CLI that
  started it and can be stopped as a whole process group;
* stopping removes the pid file (which tells the supervisor, :mod:`kubelab.supervisor`, that
  the exit is deliberate), sends SIGTERM to the group, waits a grace period, then SIGKILLs it.

Also here: the command lines that start ``kubelab apiserver`` (one place, so tests can swap
it for a stand-in), ``kubelab scheduler``, ``kubelab controller-manager`` and ``kubelab
kubelet``; the per-component kubeconfigs (client certificates from the cluster CA); the
``/readyz`` probe used to decide that a started apiserver is up and the node list used to
decide that started kubelets are Ready.
"""

from __future__ import annotations

import enum
import http.client
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import kubelab
from machinery.kubeconfig import KubeconfigError, load_kubeconfig, write_kubeconfig
from machinery.pki import ensure_cluster_pki

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
    "wait_nodes_ready",
]


def pid_path(state_dir: Path, name: str) -> Path:
    return state_dir / "run" / f"{name}.pid"


def log_path(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


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


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python: ours, with kubelab's source root on PYTHONPATH.

    That makes ``python -m kubelab`` work from any working directory, installed or not.
    """
    env = dict(os.environ)
    source_root = str(Path(kubelab.__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if source_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([source_root, *paths])
    env.update(extra or {})
    return env


def kubelab_command() -> list[str]:
    """How to run the ``kubelab`` CLI in a child process (tests replace this with a stand-in)."""
    return [sys.executable, "-m", "kubelab"]


def apiserver_command(
    *,
    state_dir: Path,
    store: str = "sqlite",
    etcd_servers: Sequence[str] = (),
    etcd_prefix: str = "",
    port: int = 6443,
    bind_address: str = "127.0.0.1",
    verbose: int = 0,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv of ``kubelab apiserver`` for these settings (``extra_args`` appended as given)."""
    argv = [
        *kubelab_command(),
        "apiserver",
        "--state-dir",
        str(state_dir),
        "--store",
        store,
        "--bind-address",
        bind_address,
        "--port",
        str(port),
    ]
    if etcd_servers:
        argv += ["--etcd-servers", ",".join(etcd_servers)]
    if etcd_prefix:
        argv += ["--etcd-prefix", etcd_prefix]
    argv += ["-v"] * verbose
    argv += list(extra_args)
    return argv


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
    start_time = _start_time(process.pid)
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
    return ManagedProcess(name=name, pid=process.pid, start_time=_start_time(process.pid), alive=True)


def started_at(pid: int) -> float | None:
    """Wall-clock time (epoch seconds) at which ``pid`` started, from /proc, or None."""
    ticks = _start_time(pid)
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return None if ticks is None else boot + int(ticks) / os.sysconf("SC_CLK_TCK")


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


def probe_readyz(url: str, context: ssl.SSLContext, *, timeout: float = 2.0) -> tuple[int | None, str]:
    """GET ``<url>/readyz``: (HTTP status, body) or (None, why the request failed)."""
    without_scheme = url.split("://", 1)[-1].rstrip("/")
    host, _, port_text = without_scheme.rpartition(":")
    try:
        connection = http.client.HTTPSConnection(host, int(port_text), context=context, timeout=timeout)
        try:
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace").strip()
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return None, str(exc) or type(exc).__name__


class NotReadyError(RuntimeError):
    """A started apiserver exited or did not answer ``/readyz`` 200 in time."""


def apiserver_url(state_dir: Path) -> str | None:
    """``https://127.0.0.1:<port>`` from ``state_dir/apiserver.port``, or None before it is written."""
    try:
        port = int((state_dir / "apiserver.port").read_text().strip())
    except (OSError, ValueError):
        return None
    return f"https://127.0.0.1:{port}"


def apiserver_ssl_context(state_dir: Path) -> ssl.SSLContext | None:
    """The admin TLS context from ``state_dir/kubeconfig``, or None if it cannot be read yet."""
    try:
        return load_kubeconfig(state_dir / "kubeconfig").ssl_context()
    except (KubeconfigError, ssl.SSLError, OSError):
        return None


def wait_apiserver_ready(
    state_dir: Path,
    *,
    pid: int,
    start_time: str | None = None,
    timeout: float = 60.0,
    progress: Callable[[float, str], None] | None = None,
) -> str:
    """Wait until the apiserver ``pid`` of ``state_dir`` answers ``/readyz`` 200; return its URL.

    The URL comes from ``apiserver.port`` and the credentials from the admin kubeconfig, both
    written by the apiserver once it listens (delete a stale ``apiserver.port`` before starting).
    ``progress(elapsed, last_result)`` is called about every 0.2 s. Raises NotReadyError.
    """
    started = time.monotonic()
    last = "apiserver.port not written yet"
    while True:
        elapsed = time.monotonic() - started
        if not is_alive(pid, start_time):
            raise NotReadyError(f"the apiserver (pid {pid}) exited; last check: {last}")
        url = apiserver_url(state_dir)
        if url is not None:
            context = apiserver_ssl_context(state_dir)
            if context is None:
                last = "kubeconfig not readable yet"
            else:
                status, body = probe_readyz(url, context)
                if status == 200:
                    return url
                last = f"readyz: {status} {body}" if status is not None else f"readyz: {body}"
        if elapsed >= timeout:
            raise NotReadyError(f"the apiserver (pid {pid}) was not ready after {timeout:.0f}s; {last}")
        if progress is not None:
            progress(elapsed, last)
        time.sleep(0.2)


# -- control-plane components and kubelets ------------------------------------------------------


def component_kubeconfig(state_dir: Path, name: str, *, user: str, groups: Sequence[str] = ()) -> Path:
    """Write ``state_dir/kubeconfigs/<name>.kubeconfig`` for ``user`` in ``groups`` (a fresh client
    certificate from the cluster CA) pointing at the running apiserver; return its path."""
    url = apiserver_url(state_dir)
    if url is None:
        raise NotReadyError("the apiserver has not written apiserver.port yet")
    pki = ensure_cluster_pki(state_dir / "pki")
    cert_pem, key_pem = pki.issue_client_certificate(user, list(groups))
    path = state_dir / "kubeconfigs" / f"{name}.kubeconfig"
    write_kubeconfig(path, server=url, ca_pem=pki.ca_pem, client_cert_pem=cert_pem, client_key_pem=key_pem,
                     user=user)
    return path


def component_command(component: str, *, kubeconfig: Path, extra_args: Sequence[str] = ()) -> list[str]:
    """The argv of ``kubelab scheduler`` or ``kubelab controller-manager``."""
    return [*kubelab_command(), component, "--kubeconfig", str(kubeconfig), *extra_args]


def kubelet_command(
    *, kubeconfig: Path, node_name: str, hollow: bool = False, count: int = 1, extra_args: Sequence[str] = ()
) -> list[str]:
    """The argv of ``kubelab kubelet``."""
    argv = [*kubelab_command(), "kubelet", "--kubeconfig", str(kubeconfig), "--node-name", node_name]
    if hollow:
        argv += ["--hollow", "--count", str(count)]
    return [*argv, *extra_args]


def get_json(url: str, path: str, context: ssl.SSLContext, *, timeout: float = 5.0) -> tuple[int | None, Any]:
    """GET ``<url><path>``: (HTTP status, decoded JSON body) or (None, why the request failed)."""
    without_scheme = url.split("://", 1)[-1].rstrip("/")
    host, _, port_text = without_scheme.rpartition(":")
    try:
        connection = http.client.HTTPSConnection(host, int(port_text), context=context, timeout=timeout)
        try:
            connection.request("GET", path, headers={"Accept": "application/json"})
            response = connection.getresponse()
            return response.status, orjson.loads(response.read())
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException, orjson.JSONDecodeError) as exc:
        return None, str(exc) or type(exc).__name__


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_rows(nodes: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(NAME, STATUS, VERSION) per node, as ``kubectl get nodes`` shows them."""
    rows = []
    for node in sorted(nodes, key=lambda n: str((n.get("metadata") or {}).get("name", ""))):
        status = "Ready" if _ready(node) else "NotReady"
        if (node.get("spec") or {}).get("unschedulable"):
            status += ",SchedulingDisabled"
        version = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
        rows.append((str((node.get("metadata") or {}).get("name", "")), status, str(version)))
    return rows


def wait_nodes_ready(
    state_dir: Path,
    *,
    count: int,
    timeout: float = 60.0,
    watch: Sequence[ManagedProcess] = (),
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Wait until at least ``count`` nodes are Ready (GET /api/v1/nodes as admin); return the nodes.

    Raises NotReadyError when the time runs out or a process of ``watch`` exits.
    """
    started = time.monotonic()
    last = "no answer yet"
    while True:
        elapsed = time.monotonic() - started
        for process in watch:
            if not is_alive(process.pid, process.start_time):
                raise NotReadyError(f"{process.name} (pid {process.pid}) exited; last check: {last}")
        url, context = apiserver_url(state_dir), apiserver_ssl_context(state_dir)
        if url is not None and context is not None:
            status, body = get_json(url, "/api/v1/nodes", context)
            if status == 200 and isinstance(body, dict):
                items: list[dict[str, Any]] = list(body.get("items") or [])
                ready = sum(1 for node in items if _ready(node))
                if ready >= count:
                    return items
                last = f"{ready}/{count} nodes Ready"
            else:
                last = f"GET /api/v1/nodes: {status} {str(body)[:80]}"
        if elapsed >= timeout:
            raise NotReadyError(f"nodes were not Ready after {timeout:.0f}s; {last}")
        if progress is not None:
            progress(elapsed, last)
        time.sleep(0.25)
