"""Is the cluster up yet: the apiserver's ``/readyz`` and the Ready condition of its nodes.

``kubelab up`` waits here for a started apiserver (:func:`wait_apiserver_ready`), for started
kubelets (:func:`wait_nodes_ready`) and for meshd (:func:`wait_meshd_ready`: its injector webhook
registered, so no pod of a labelled namespace is created before it can be injected); ``kubelab
status`` and the test harnesses probe with :func:`probe_readyz` and :func:`get_json`. Every
apiserver request goes to its loopback port (``state_dir/apiserver.port``) with the admin
credentials of ``state_dir/kubeconfig``, over a blocking ``http.client`` connection with a timeout:
the CLI has no event loop. A process that exits while it is awaited ends the wait at once with
:class:`NotReadyError`.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from kubelab.pidfiles import ManagedProcess, is_alive
from machinery.kubeconfig import KubeconfigError, load_kubeconfig

__all__ = [
    "NotReadyError",
    "apiserver_ssl_context",
    "apiserver_url",
    "get_json",
    "node_rows",
    "probe_readyz",
    "wait_apiserver_ready",
    "wait_meshd_ready",
    "wait_nodes_ready",
]


POLL_SECONDS = 0.05
"""Pause between two checks: short, as each check is one loopback request and a test harness
waits here for every cluster it starts."""


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
    ``progress(elapsed, last_result)`` is called at every check. Raises NotReadyError.
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
        time.sleep(POLL_SECONDS)


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
        time.sleep(POLL_SECONDS)


def wait_meshd_ready(state_dir: Path, process: ManagedProcess, *, timeout: float = 60.0) -> None:
    """Wait until meshd answers 200 on ``/ready`` (127.0.0.1, the port in ``meshd/debug.port``): its
    webhooks are registered and its caches synced. Raises NotReadyError on time out or if it exits."""
    started = time.monotonic()
    last = "no answer yet"
    while True:
        if not is_alive(process.pid, process.start_time):
            raise NotReadyError(f"{process.name} (pid {process.pid}) exited; last check: {last}")
        try:
            port = int((state_dir / "meshd" / "debug.port").read_text())
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/ready")
                response = connection.getresponse()
                if response.status == 200:
                    return
                last = f"/ready: {response.status}"
            finally:
                connection.close()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            last = f"/ready: {exc}"
        if time.monotonic() - started >= timeout:
            raise NotReadyError(f"meshd was not ready after {timeout:.0f}s; {last}")
        time.sleep(POLL_SECONDS)
