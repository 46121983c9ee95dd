"""Real etcd for tests: one member (:class:`EtcdServer`) or a cluster of three (:class:`EtcdCluster`).

``EtcdServer(data_dir).start()`` ... ``stop()`` is used by the storage conformance suite and the
apiserver e2e tests. It runs Debian's ``/usr/bin/etcd`` bound to 127.0.0.1 on free ephemeral
client and peer ports with its data in a temporary directory, waits until ``/health`` answers
true, and kills the process on ``stop``. Its log goes to ``data_dir/etcd.log`` (quoted in the
error when it fails to start).

``EtcdCluster(data_dir).start()`` runs three such members joined by ``--initial-cluster`` (all
on loopback) for the failover tests: :meth:`EtcdCluster.kill` SIGKILLs one member,
:meth:`EtcdCluster.restart` starts it again on its data dir, :meth:`EtcdCluster.leader` names
the current raft leader (from each member's status through etcd's JSON gateway), and
:meth:`EtcdCluster.wait_leader` waits until the survivors elected one.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ETCD_BINARY = "/usr/bin/etcd"


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the kernel's ephemeral pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdError(RuntimeError):
    """etcd is missing or did not become healthy."""


class EtcdServer:
    """One etcd process; ``client_url`` is valid after ``start()``."""

    def __init__(self, data_dir: Path, *, binary: str = ETCD_BINARY, name: str = "kubelab-test") -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.name = name
        self.client_port = 0
        self.peer_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        if not self.client_port:
            raise EtcdError("etcd is not started")
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "etcd.log"

    @staticmethod
    def available(binary: str = ETCD_BINARY) -> bool:
        return Path(binary).is_file() or shutil.which(binary) is not None

    def start(self, timeout: float = 30.0) -> None:
        """Start etcd and wait until healthy; retries a couple of times on a port race."""
        if not self.available(self.binary):
            raise EtcdError(f"etcd binary {self.binary} not found (apt-get install etcd-server)")
        last = ""
        for _ in range(3):
            try:
                self._start_once(timeout)
                return
            except EtcdError as exc:
                last = str(exc)
                self.stop()
        raise EtcdError(last)

    def _start_once(self, timeout: float) -> None:
        self.client_port, self.peer_port = free_port(), free_port()
        member_dir = self.data_dir / f"member-{self.client_port}"
        member_dir.mkdir(parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            f"--name={self.name}",
            f"--data-dir={member_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            "--initial-cluster-state=new",
            "--log-level=warn",
        ]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            self._proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EtcdError(f"etcd exited with {self._proc.returncode}: {self._log_tail()}")
            if self._healthy():
                return
            time.sleep(0.1)
        raise EtcdError(f"etcd not healthy after {timeout}s: {self._log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=1) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EtcdMember:
    """One member of an :class:`EtcdCluster` (ports are chosen by the cluster)."""

    def __init__(self, name: str, data_dir: Path, client_port: int, peer_port: int) -> None:
        self.name = name
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise EtcdError(f"member {self.name} is not running")
        return self.proc.pid

    def status(self, timeout: float = 2.0) -> dict[str, object]:
        """The member's ``Maintenance.Status`` through the JSON gateway (``header``, ``leader`` …)."""
        req = urllib.request.Request(f"{self.client_url}/v3/maintenance/status", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer: dict[str, object] = json.loads(resp.read())
            return answer

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=1) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"


class EtcdCluster:
    """Three (``size``) etcd members on loopback forming one raft cluster.

    ``client_urls`` lists every member, as ``--etcd-servers`` takes them. Members are started
    together (a lone member cannot form quorum) and the cluster counts as up once every member
    answers ``/health`` true, which needs an elected leader.
    """

    def __init__(self, data_dir: Path, *, size: int = 3, binary: str = ETCD_BINARY) -> None:
        self.data_dir = Path(data_dir)
        self.size = size
        self.binary = binary
        self.members: list[EtcdMember] = []
        self.token = f"kubelab-{time.monotonic_ns()}"

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 60.0) -> None:
        """Start every member and wait until all are healthy; retries on a port race."""
        if not EtcdServer.available(self.binary):
            raise EtcdError(f"etcd binary {self.binary} not found (apt-get install etcd-server)")
        last = ""
        for attempt in range(3):
            try:
                self._start_once(attempt, timeout)
                return
            except EtcdError as exc:
                last = str(exc)
                self.stop()
        raise EtcdError(last)

    def _start_once(self, attempt: int, timeout: float) -> None:
        ports = _distinct_free_ports(2 * self.size)
        root = self.data_dir / f"cluster-{attempt}"
        root.mkdir(parents=True, exist_ok=True)
        self.members = [
            EtcdMember(f"m{i}", root, ports[2 * i], ports[2 * i + 1]) for i in range(self.size)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            self._spawn(member, initial)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [m for m in self.members if not m.alive]
            if dead:
                raise EtcdError(f"etcd member {dead[0].name} exited: {dead[0].log_tail()}")
            if all(m.healthy() for m in self.members):
                return
            time.sleep(0.1)
        raise EtcdError(f"etcd cluster not healthy after {timeout}s: {self.members[0].log_tail()}")

    def _spawn(self, member: EtcdMember, initial_cluster: str) -> None:
        args = [
            self.binary,
            f"--name={member.name}",
            f"--data-dir={member.data_dir / member.name}",
            f"--listen-client-urls={member.client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-token={self.token}",
            "--initial-cluster-state=new",
            "--log-level=warn",
        ]
        with member.log_path.open("ab") as logf:
            member.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)

    def member_of_port(self, port: int) -> EtcdMember:
        for member in self.members:
            if member.client_port == port:
                return member
        raise EtcdError(f"no member listens on client port {port}")

    def leader(self) -> EtcdMember | None:
        """The member every living member names as leader, or None (an election is going on)."""
        ids: dict[str, EtcdMember] = {}
        leaders: set[str] = set()
        for member in self.members:
            if not member.alive:
                continue
            try:
                status = member.status()
            except (OSError, ValueError):
                return None
            header = status.get("header")
            if isinstance(header, dict):
                ids[str(header.get("member_id"))] = member
            leaders.add(str(status.get("leader")))
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    def wait_leader(self, timeout: float = 30.0) -> EtcdMember:
        """Wait until the living members agree on a leader; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.leader()
            if found is not None:
                return found
            time.sleep(0.1)
        raise EtcdError(f"no etcd leader after {timeout}s")

    def restart(self, member: EtcdMember, timeout: float = 30.0) -> None:
        """Start a killed member again on its ports and data dir; wait until it is healthy."""
        if member.alive:
            return
        self._spawn(member, ",".join(f"{m.name}={m.peer_url}" for m in self.members))
        deadline = time.monotonic() + timeout
        while not member.healthy():
            if not member.alive:
                raise EtcdError(f"etcd member {member.name} exited on restart: {member.log_tail()}")
            if time.monotonic() > deadline:
                raise EtcdError(f"etcd member {member.name} not healthy {timeout}s after restart")
            time.sleep(0.1)

    def kill(self, member: EtcdMember) -> None:
        """SIGKILL one member (no shutdown code runs) and reap it."""
        proc = member.proc
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for member in self.members:
            proc, member.proc = member.proc, None
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _distinct_free_ports(count: int) -> Sequence[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
