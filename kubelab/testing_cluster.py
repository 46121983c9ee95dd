"""Test harness: a whole cluster (control plane and nodes) and namespaces that live for one test.

Used by the ``kubelab_cluster`` and ``kubelab_namespace`` fixtures of :mod:`kubelab.pytest_plugin`
and by tests directly; :mod:`kubelab.testing` holds the single-apiserver harness and kubectl.

* :func:`start_cluster` runs ``kubelab up --port 0 --no-mesh`` in a state dir of its own, with
  hollow nodes (the default: simulated pods, no Docker, ready in seconds) or Docker nodes, and
  waits, as ``up`` does, for the apiserver and Ready nodes. The returned :class:`RunningCluster`
  stops everything with ``kubelab down`` (it is a context manager too).
* :func:`connect_cluster` wraps a cluster that already runs (any kubeconfig, e.g. one
  ``kubelab up`` left in ``~/.kubelab``): the same API, but :meth:`RunningCluster.stop` leaves it
  running. Tests iterate against it without paying for a start.
* :meth:`RunningCluster.create_namespace` makes a uniquely named namespace,
  :meth:`RunningCluster.delete_namespace` deletes one and waits until it is gone: the namespace
  controller deletes its content and then the ``kubernetes`` finalizer, as on Kubernetes.

Requests go through a blocking ``http.client`` connection with a timeout and the kubeconfig's
credentials (:meth:`RunningCluster.request`): the harness runs in test code that has no event loop.
"""

from __future__ import annotations

import http.client
import re
import secrets
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson

from kubelab.testing import kubectl
from machinery.kubeconfig import KubeconfigEntry, load_kubeconfig

if TYPE_CHECKING:
    from kubernetes.client import ApiClient as OfficialApiClient

__all__ = [
    "ClusterStartError",
    "NamespaceNotDeletedError",
    "RunningCluster",
    "connect_cluster",
    "namespace_name",
    "start_cluster",
]

NAMESPACE_PREFIX = "kt"
"""First word of the namespaces :meth:`RunningCluster.create_namespace` makes."""


class ClusterStartError(RuntimeError):
    """``kubelab up`` failed; the message ends with what it printed."""


class NamespaceNotDeletedError(RuntimeError):
    """A deleted namespace still existed when the wait ran out (its status says why)."""


def namespace_name(hint: str, *, prefix: str = NAMESPACE_PREFIX) -> str:
    """A fresh DNS-1123 label ``<prefix>-<hint as a slug>-<6 random hex>``, at most 63 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")
    suffix = secrets.token_hex(3)
    room = 63 - len(prefix) - len(suffix) - 2
    slug = slug[:room].rstrip("-")
    return f"{prefix}-{slug}-{suffix}" if slug else f"{prefix}-{suffix}"


@dataclass
class RunningCluster:
    """A cluster the harness started (``state_dir`` set) or connected to (``state_dir`` None)."""

    kubeconfig: Path
    state_dir: Path | None = None
    nodes: list[str] = field(default_factory=list)
    """Names of the nodes the harness started (empty for a connected cluster)."""
    request_timeout: float = 10.0

    @property
    def owned(self) -> bool:
        """Whether :meth:`stop` stops the cluster (only one the harness started)."""
        return self.state_dir is not None

    @cached_property
    def _entry(self) -> KubeconfigEntry:
        return load_kubeconfig(self.kubeconfig)

    @cached_property
    def _ssl_context(self) -> ssl.SSLContext:
        return self._entry.ssl_context()

    @property
    def url(self) -> str:
        return self._entry.server.rstrip("/")

    def kubectl(
        self,
        *args: str,
        version: str | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """The real kubectl against this cluster (see :func:`kubelab.testing.kubectl`)."""
        return kubectl(*args, kubeconfig=self.kubeconfig, version=version, input=input, check=check,
                       timeout=timeout)

    def api_client(self) -> OfficialApiClient:
        """A client of the official ``kubernetes`` package for this cluster (close it after use)."""
        from kubernetes import config  # the official client is a test dependency, not kubelab's

        client: OfficialApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig))
        return client

    def request(
        self, method: str, path: str, *, body: Any = None, accept: str = "application/json"
    ) -> tuple[int, bytes]:
        """One API request: (HTTP status, body). Raises OSError when the apiserver is unreachable."""
        parts = urlsplit(self.url)
        connection = http.client.HTTPSConnection(
            parts.hostname or "127.0.0.1", parts.port or 443, context=self._ssl_context, timeout=self.request_timeout
        )
        headers = {"Accept": accept}
        if self._entry.token:
            headers["Authorization"] = f"Bearer {self._entry.token}"
        payload = None
        if body is not None:
            payload = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, f"{parts.path.rstrip('/')}{path}", body=payload, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as exc:
            raise OSError(f"{method} {path}: {exc}") from exc
        finally:
            connection.close()

    def get_json(self, path: str) -> Any:
        """GET ``path`` as JSON; raises OSError on any status but 200."""
        status, data = self.request("GET", path)
        if status != 200:
            raise OSError(f"GET {path}: HTTP {status}: {data[:200].decode(errors='replace')}")
        return orjson.loads(data)

    def create_namespace(self, hint: str = "test", *, labels: dict[str, str] | None = None) -> str:
        """Create a namespace named after ``hint`` plus a random suffix; return its name."""
        for _ in range(5):
            name = namespace_name(hint)
            body = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"kubelab.dev/test-namespace": "true", **(labels or {})}}}
            status, data = self.request("POST", "/api/v1/namespaces", body=body)
            if status == 201:
                return name
            if status != 409:
                raise OSError(f"creating namespace {name}: HTTP {status}: {data[:300].decode(errors='replace')}")
        raise OSError("five random namespace names in a row already existed")

    def delete_namespace(self, name: str, *, timeout: float = 120.0) -> None:
        """Delete namespace ``name`` and wait until it is gone (404), content and finalizers done.

        Raises NamespaceNotDeletedError with the namespace's last status when ``timeout`` runs out.
        """
        path = f"/api/v1/namespaces/{quote(name)}"
        status, data = self.request("DELETE", path)
        if status not in (200, 202, 404):
            raise OSError(f"deleting namespace {name}: HTTP {status}: {data[:300].decode(errors='replace')}")
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            status, data = self.request("GET", path)
            if status == 404:
                return
            if status == 200:
                last = orjson.loads(data).get("status")
            if time.monotonic() >= deadline:
                raise NamespaceNotDeletedError(f"namespace {name} still exists {timeout:.0f}s after its deletion; "
                                               f"status: {orjson.dumps(last).decode()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """``kubelab down`` for a cluster the harness started; nothing for a connected one."""
        if self.state_dir is None:
            return
        subprocess.run([sys.executable, "-m", "kubelab", "down", "--state-dir", str(self.state_dir)],
                       capture_output=True, text=True, timeout=180, check=False)
        self.state_dir = None

    def __enter__(self) -> RunningCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_cluster(
    state_dir: Path,
    *,
    hollow_nodes: int = 2,
    docker_nodes: int = 0,
    store: str = "sqlite",
    timeout: float = 120.0,
    extra_args: tuple[str, ...] = (),
) -> RunningCluster:
    """``kubelab up`` in ``state_dir``: apiserver on a free port, scheduler, controller-manager, nodes.

    ``docker_nodes`` > 0 runs Docker nodes ``node-1..N`` instead of hollow ones (Docker, iptables
    and the base images are needed, see ``kubelab up``). ``store`` is ``sqlite`` or ``etcd`` (a
    local etcd in the state dir). Raises ClusterStartError after stopping what was started.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    nodes_args = (["--nodes", str(docker_nodes)] if docker_nodes > 0
                  else ["--nodes", "0", "--hollow-nodes", str(hollow_nodes)])
    argv = [sys.executable, "-m", "kubelab", "up", "--state-dir", str(state_dir), "--port", "0", "--no-mesh",
            "--store", store, "--timeout", str(timeout), *nodes_args, *extra_args]
    cluster = RunningCluster(kubeconfig=state_dir / "kubeconfig", state_dir=state_dir)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 60, check=False)
    except subprocess.TimeoutExpired as exc:
        cluster.stop()
        raise ClusterStartError(f"kubelab up did not return in {timeout + 60:.0f}s") from exc
    if result.returncode != 0:
        cluster.stop()
        raise ClusterStartError(f"kubelab up exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    cluster.nodes = ([f"node-{i}" for i in range(1, docker_nodes + 1)] if docker_nodes > 0
                     else [f"hollow-node-{i}" for i in range(1, hollow_nodes + 1)])
    return cluster


def connect_cluster(kubeconfig: Path) -> RunningCluster:
    """A cluster that already runs, reached through ``kubeconfig``; raises OSError if it does not answer."""
    cluster = RunningCluster(kubeconfig=kubeconfig)
    status, data = cluster.request("GET", "/readyz", accept="*/*")
    if status != 200:
        raise OSError(f"{cluster.url}/readyz: HTTP {status}: {data[:200].decode(errors='replace')}")
    return cluster
