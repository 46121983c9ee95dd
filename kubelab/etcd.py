"""A local single-member etcd for ``kubelab up --store etcd`` when no ``--etcd-servers`` are given.

Called by ``kubelab up`` (:mod:`kubelab.cluster_up`). The member runs as the process ``etcd`` (pid
file and log as :mod:`kubelab.launcher` keeps them; ``kubelab up`` passes a ``start`` that hands it to the
cluster's supervisor, :mod:`kubelab.supervisor`, which restarts it if it dies). It keeps its data
in ``state_dir/etcd`` and listens on 127.0.0.1 only: client port 2379 and peer port 2380 when
free, otherwise free ephemeral ports. The chosen URLs are remembered in ``state_dir/etcd.json``
so later ``up`` calls (and a restarted member) reuse them.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubelab import launcher

__all__ = ["ETCD_BINARY", "EtcdNotInstalledError", "LocalEtcd", "StartProcess", "ensure_local_etcd"]

ETCD_BINARY = Path("/usr/bin/etcd")
PROCESS_NAME = "etcd"


class EtcdNotInstalledError(RuntimeError):
    """There is no etcd binary where we look for it."""


@dataclass(frozen=True)
class LocalEtcd:
    """A running local etcd member."""

    pid: int
    client_url: str
    peer_url: str
    started: bool
    """False when an already running member was reused."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _choose_ports(state_dir: Path) -> tuple[int, int]:
    """Recorded ports if still free, else 2379/2380 if free, else ephemeral ones."""
    try:
        recorded = json.loads((state_dir / "etcd.json").read_text())
        candidates = [(int(recorded["client_port"]), int(recorded["peer_port"]))]
    except (OSError, ValueError, KeyError, TypeError):
        candidates = []
    candidates.append((2379, 2380))
    for client, peer in candidates:
        if _port_free(client) and _port_free(peer):
            return client, peer
    client = _free_port()
    peer = _free_port()
    while peer == client:
        peer = _free_port()
    return client, peer


def etcd_healthy(client_url: str, *, timeout: float = 2.0) -> bool:
    """True if ``GET <client_url>/health`` says ``{"health": "true"}``."""
    host_port = client_url.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    try:
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            body = json.loads(response.read() or b"{}")
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return response.status == 200 and body.get("health") == "true"


def _command(binary: Path, data_dir: Path, client_url: str, peer_url: str) -> list[str]:
    return [
        str(binary),
        "--name=kubelab",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=kubelab={peer_url}",
        "--initial-cluster-state=new",  # ignored once the data dir holds a member
    ]


StartProcess = Callable[[str, Sequence[str]], launcher.ManagedProcess]
"""``start(name, argv)``: run the member; for a member that already runs, return it untouched."""


def _start_detached(state_dir: Path) -> StartProcess:
    def start(name: str, argv: Sequence[str]) -> launcher.ManagedProcess:
        running = launcher.read_process(state_dir, name)
        return running if running is not None and running.alive else launcher.start_process(state_dir, name, argv)

    return start


def ensure_local_etcd(
    state_dir: Path, *, binary: Path | None = None, timeout: float = 30.0, start: StartProcess | None = None
) -> LocalEtcd:
    """Start (or reuse) the state dir's etcd member and wait until it is healthy.

    ``binary`` defaults to :data:`ETCD_BINARY`; ``start`` to a detached, unsupervised process. A
    healthy running member is passed to ``start`` too (so a supervisor learns of it). Raises
    EtcdNotInstalledError if the binary is missing, RuntimeError if etcd is not healthy within
    ``timeout`` seconds (the member is stopped then).
    """
    start = start or _start_detached(state_dir)
    binary = binary or ETCD_BINARY
    data_dir = state_dir / "etcd"
    record_path = state_dir / "etcd.json"
    running = launcher.read_process(state_dir, PROCESS_NAME)
    if running is not None and running.alive:
        try:
            record = json.loads(record_path.read_text())
            client_url, peer_url = str(record["client_url"]), str(record["peer_url"])
        except (OSError, ValueError, KeyError, TypeError):
            client_url = peer_url = ""
        if client_url and etcd_healthy(client_url):
            start(PROCESS_NAME, _command(binary, data_dir, client_url, peer_url))
            return LocalEtcd(pid=running.pid, client_url=client_url, peer_url=peer_url, started=False)
        launcher.stop_process(state_dir, PROCESS_NAME)
    if not binary.exists():
        raise EtcdNotInstalledError("etcd is not installed: apt-get install etcd-server")

    client_port, peer_port = _choose_ports(state_dir)
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    record_path.write_text(
        json.dumps(
            {
                "client_url": client_url,
                "peer_url": peer_url,
                "client_port": client_port,
                "peer_port": peer_port,
            }
        )
    )
    process = start(PROCESS_NAME, _command(binary, data_dir, client_url, peer_url))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if etcd_healthy(client_url):
            return LocalEtcd(pid=process.pid, client_url=client_url, peer_url=peer_url, started=True)
        if not launcher.is_alive(process.pid, process.start_time):
            break
        time.sleep(0.2)
    launcher.stop_process(state_dir, PROCESS_NAME)
    tail = "\n".join(launcher.log_tail(state_dir, PROCESS_NAME))
    raise RuntimeError(f"etcd did not become healthy at {client_url}:\n{tail}")
