"""Test harness: real apiserver processes and the real kubectl, for integration tests.

Used by tests directly and through the fixtures of :mod:`kubelab.pytest_plugin`.

* :func:`start_apiserver` runs ``python -m kubelab apiserver --port 0`` as a background
  process of the state dir (pid file and log as ``kubelab up`` does, so ``kubelab down
  --state-dir`` also cleans up), waits for ``apiserver.port`` and ``/readyz`` 200, and returns
  a :class:`RunningApiServer` (also a context manager that stops it). The apiserver dials only
  loopback and its service CIDR unless ``allowed_networks`` names the test cluster's own
  networks (``--allowed-networks``, see ``machinery.netguard``). It is not supervised: tests
  stop, restart and compact it on purpose; a supervised cluster is ``kubelab up``
  (:mod:`kubelab.supervisor`).
* :func:`kubectl` runs ``/usr/bin/kubectl`` or a pinned version
  (``/usr/lib/google-cloud-sdk/bin/kubectl.1.<minor>``) against a kubeconfig, with a
  discovery cache private to the calling line, so cached discovery never leaks between runs.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kubelab import launcher
from machinery.kubeconfig import KubeconfigEntry, load_kubeconfig

__all__ = [
    "ApiServerStartError",
    "KubectlError",
    "RunningApiServer",
    "kubectl",
    "kubectl_binary",
    "kubectl_versions",
    "start_apiserver",
]

PROCESS_NAME = "apiserver"
KUBECTL = Path("/usr/bin/kubectl")
KUBECTL_VERSIONS_DIR = Path("/usr/lib/google-cloud-sdk/bin")


class ApiServerStartError(RuntimeError):
    """The apiserver exited or did not become ready; the message ends with its log tail."""


@dataclass
class RunningApiServer:
    """An apiserver process started by :func:`start_apiserver`."""

    state_dir: Path
    store: str
    etcd_servers: list[str]
    etcd_prefix: str
    timeout: float
    extra_args: list[str] = field(default_factory=list)
    allowed_networks: list[str] = field(default_factory=list)
    pid: int = 0
    url: str = ""
    _start_time: str | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def log_path(self) -> Path:
        return launcher.log_path(self.state_dir, PROCESS_NAME)

    def kubeconfig_entry(self) -> KubeconfigEntry:
        return load_kubeconfig(self.kubeconfig)

    def ssl_context(self) -> ssl.SSLContext:
        """Admin client TLS context (verifies the server, presents the admin certificate)."""
        return self.kubeconfig_entry().ssl_context()

    @property
    def alive(self) -> bool:
        return self.pid > 0 and launcher.is_alive(self.pid, self._start_time)

    def _launch(self, port: int) -> None:
        (self.state_dir / "apiserver.port").unlink(missing_ok=True)
        argv = launcher.apiserver_command(
            state_dir=self.state_dir,
            store=self.store,
            etcd_servers=self.etcd_servers,
            etcd_prefix=self.etcd_prefix,
            port=port,
            extra_args=[*self.extra_args, *(["--allowed-networks", ",".join(self.allowed_networks)]
                                            if self.allowed_networks else [])],
        )
        process = launcher.start_process(self.state_dir, PROCESS_NAME, argv)
        self.pid, self._start_time = process.pid, process.start_time
        try:
            self.url = launcher.wait_apiserver_ready(
                self.state_dir, pid=process.pid, start_time=process.start_time, timeout=self.timeout
            )
        except launcher.NotReadyError as exc:
            self.stop(grace=2.0)
            tail = "\n".join(launcher.log_tail(self.state_dir, PROCESS_NAME, lines=40))
            raise ApiServerStartError(f"{exc}\n--- {self.log_path} ---\n{tail}") from exc

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Safe to call twice."""
        if self.pid > 0:
            launcher.stop_process(self.state_dir, PROCESS_NAME, grace=grace)
            self.pid = 0

    def restart(self) -> None:
        """Stop and start again on the same port (a fresh one if that port is taken meanwhile)."""
        port = self.port if self.url else 0
        self.stop()
        try:
            self._launch(port)
        except ApiServerStartError:
            if port == 0:
                raise
            self._launch(0)

    def __enter__(self) -> RunningApiServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_apiserver(
    state_dir: Path,
    *,
    store: str = "sqlite",
    etcd_servers: list[str] | None = None,
    etcd_prefix: str = "",
    timeout: float = 30,
    extra_args: Sequence[str] = (),
    allowed_networks: Sequence[str] = (),
) -> RunningApiServer:
    """Start an apiserver on a free port for ``state_dir`` and wait until ``/readyz`` is 200.

    ``extra_args`` are appended to ``kubelab apiserver`` (e.g. ``["--watch-cache-events", "50"]``);
    ``allowed_networks`` (CIDRs) are the networks besides loopback the apiserver may dial (the test
    cluster's pod network, when its kubelets listen there).

    Raises ApiServerStartError (with the log tail) if it exits or is not ready in ``timeout``.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    server = RunningApiServer(
        state_dir=state_dir,
        store=store,
        etcd_servers=list(etcd_servers or []),
        etcd_prefix=etcd_prefix,
        timeout=timeout,
        extra_args=list(extra_args),
        allowed_networks=list(allowed_networks),
    )
    server._launch(0)
    return server


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}\nstdout: {self.stdout}"


def kubectl_versions() -> list[str]:
    """The pinned kubectl minor versions installed (``["1.27", ..., "1.33"]``)."""
    found = [path.name.removeprefix("kubectl.") for path in KUBECTL_VERSIONS_DIR.glob("kubectl.1.*")]
    return sorted(found, key=lambda version: tuple(int(part) for part in version.split(".")))


def kubectl_binary(version: str | None = None) -> Path:
    """``/usr/bin/kubectl``, or the pinned binary of ``version`` (``"1.29"``)."""
    if version is None:
        if KUBECTL.exists():
            return KUBECTL
        which = shutil.which("kubectl")
        if which is None:
            raise FileNotFoundError("kubectl is not installed")
        return Path(which)
    binary = KUBECTL_VERSIONS_DIR / f"kubectl.{version}"
    if not binary.exists():
        raise FileNotFoundError(f"no kubectl {version}: {binary} is missing (have {kubectl_versions()})")
    return binary


def _call_site_key(depth: int) -> str:
    frame = inspect.currentframe()
    for _ in range(depth + 1):
        frame = frame.f_back if frame is not None else None
    if frame is None:
        return "unknown"
    site = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    stem = Path(frame.f_code.co_filename).stem
    return f"{stem}-{frame.f_lineno}-{hashlib.sha256(site.encode()).hexdigest()[:8]}"


def kubectl(
    *args: str,
    kubeconfig: Path,
    version: str | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl with ``KUBECONFIG=kubeconfig``; raise KubectlError if ``check`` fails.

    The discovery cache lives in ``<kubeconfig dir>/kubectl-cache/<version>/<call site>``.
    """
    cache_dir = kubeconfig.parent / "kubectl-cache" / (version or "default") / _call_site_key(1)
    # After the verb (kubectl refuses flags before an unknown verb: plugin lookup), before "--".
    words = list(args)
    at = words.index("--") if "--" in words else len(words)
    words.insert(at, f"--cache-dir={cache_dir}")
    argv: Sequence[str] = [str(kubectl_binary(version)), *words]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), **(extra_env or {})}
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and result.returncode != 0:
        raise KubectlError(result.returncode, list(argv), output=result.stdout, stderr=result.stderr)
    return result
