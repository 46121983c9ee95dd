"""A real, single-member etcd for tests: ``EtcdServer(data_dir).start()`` ... ``stop()``.

Used by the storage conformance suite and the apiserver e2e tests. It runs Debian's
``/usr/bin/etcd`` bound to 127.0.0.1 on free ephemeral client and peer ports with its data in
a temporary directory, waits until ``/health`` answers true, and kills the process on ``stop``.
Its log goes to ``data_dir/etcd.log`` (quoted in the error when it fails to start).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
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
