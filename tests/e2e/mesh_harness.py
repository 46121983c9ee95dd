"""A meshed ``kubelab up --nodes 2`` cluster for the Docker mesh tests and ``bench/mesh.py``.

:class:`MeshCluster` wraps a :class:`tests.e2e.docker_harness.DockerCluster` with what mesh tests
do again and again: apply manifests, wait for pods to be Ready, run a small Python program inside
a pod (``kubectl exec``), read ``kubelab mesh proxy-status -o json``, kill meshd and wait for the
supervisor to bring it back. The workloads are one-file programs run by ``python3 -c`` in the
``kubelab/python`` image, so no image is built for them:

* :data:`SERVER_PY` -- an HTTP/1.1 keep-alive server answering its ``VERSION``, ``/xfcc`` with the
  ``X-Forwarded-Client-Cert`` it received, ``/size/N`` with N bytes;
* :data:`LOAD_PY` -- a closed-loop client over keep-alive connections (a count or a duration),
  printing a JSON summary (codes, bodies, failures, optionally latencies);
* :data:`TCP_ECHO_PY` -- a server-first TCP echo (greets, then echoes lines).

:func:`meshd_short_leaves` re-registers meshd with the supervisor under ``--max-leaf-seconds``
and restarts it, so every sidecar started afterwards rotates its certificate within a test.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker

from kubelab import launcher, supervision
from kubelab.images import PYTHON, ensure_images
from kubelab.mesh_cli import MESHD
from tests.e2e.docker_harness import DockerCluster, running_cluster

T = TypeVar("T")
WAIT = 240.0
"""How long pods, pushes and restarts may take on a loaded two-core machine."""

SERVER_PY = r"""
import http.server, os
VERSION = os.environ.get("VERSION", "v1")
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/xfcc"):
            body = self.headers.get("X-Forwarded-Client-Cert", "none")
        elif self.path.startswith("/size/"):
            body = "x" * int(self.path[6:])
        else:
            body = VERSION
        data = (body + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
Server(("", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
"""

LOAD_PY = r"""
import http.client, json, sys, threading, time
spec = json.loads(sys.argv[1])
host, port, path = spec["host"], spec.get("port", 80), spec.get("path", "/")
headers, count, seconds = spec.get("headers", {}), spec.get("count", 0), spec.get("seconds", 0.0)
lock = threading.Lock()
out = {"requests": 0, "codes": {}, "bodies": {}, "failures": 0, "firstFailures": [], "latencies": []}
end, sent = time.monotonic() + seconds, [0]
def take():
    with lock:
        if (sent[0] >= count) if count else (time.monotonic() >= end):
            return False
        sent[0] += 1
        return True
def worker():
    conn = None
    while take():
        started = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=spec.get("timeout", 15))
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            body = answer.read().decode(errors="replace").strip()
            if (answer.getheader("connection") or "").lower() == "close":
                conn.close()
                conn = None
        except Exception as exc:
            if conn is not None:
                conn.close()
            conn = None
            with lock:
                out["failures"] += 1
                if len(out["firstFailures"]) < 5:
                    out["firstFailures"].append(f"{time.strftime('%X')} {exc!r}")
            time.sleep(0.05)
            continue
        with lock:
            out["requests"] += 1
            code = str(answer.status)
            out["codes"][code] = out["codes"].get(code, 0) + 1
            out["bodies"][body[:400]] = out["bodies"].get(body[:400], 0) + 1
            if spec.get("latencies"):
                out["latencies"].append(round(time.monotonic() - started, 4))
threads = [threading.Thread(target=worker) for _ in range(spec.get("conns", 4))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(out))
"""

TCP_ECHO_PY = r"""
import socket, threading
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("", 9000))
listener.listen(64)
def serve(conn):
    with conn:
        conn.sendall(b"hello from tcp-echo\n")
        for line in conn.makefile("rb"):
            conn.sendall(line)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def namespace(name: str, *, injected: bool = True) -> dict[str, Any]:
    labels = {"istio-injection": "enabled"} if injected else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def service_account(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}


def service(name: str, ns: str, port: int, target: int, *, port_name: str = "http",
            selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector or {"app": name},
                     "ports": [{"name": port_name, "port": port, "targetPort": target}]}}


def python_deployment(name: str, ns: str, script: str, *, labels: dict[str, str], port: int = 8080,
                      env: dict[str, str] | None = None, account: str = "default",
                      replicas: int = 1, probe: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app", "image": PYTHON, "command": ["python3", "-u", "-c", script],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "ports": [{"containerPort": port}]}
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"serviceAccountName": account, "terminationGracePeriodSeconds": 1,
                                           "containers": [container]}}}}


def client_pod(name: str, ns: str, *, account: str = "default", injected: bool | None = None,
               image: str = PYTHON, volumes: list[dict[str, Any]] | None = None,
               mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A pod that sleeps, to ``kubectl exec`` programs in (``injected``: the pod's inject label)."""
    labels = {"app": name}
    if injected is not None:
        labels["sidecar.istio.io/inject"] = "true" if injected else "false"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"serviceAccountName": account, "terminationGracePeriodSeconds": 1,
                     "volumes": volumes or [],
                     "containers": [{"name": "app", "image": image, "command": ["sleep", "36000"],
                                     "volumeMounts": mounts or []}]}}


@dataclass
class MeshCluster:
    """A Docker cluster with meshd, and the mesh tests' verbs on it."""

    cluster: DockerCluster

    @property
    def state_dir(self) -> Path:
        return self.cluster.state_dir

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> Any:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=timeout)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                            "items": list(objects)}))

    def pods(self, ns: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", "pods", "-n", ns, *(["-l", selector] if selector else [])]
        return list(self.cluster.json(*args)["items"])

    def wait_ready(self, ns: str, selector: str = "", count: int = 1, timeout: float = WAIT) -> list[dict[str, Any]]:
        """The ``count`` Ready pods matching ``selector`` (waits for them)."""
        def ready(pod: dict[str, Any]) -> bool:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
            return conditions.get("Ready") == "True" and pod["metadata"].get("deletionTimestamp") is None
        def enough() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods(ns, selector) if ready(p)]
            return pods if len(pods) >= count else None
        return wait_for(enough, timeout, f"{count} Ready pod(s) {ns}/{selector}")

    def exec(self, pod: str, ns: str, *command: str, timeout: float = 120, check: bool = True) -> Any:
        return self.kubectl("exec", pod, "-n", ns, "-c", "app", "--", *command, timeout=timeout, check=check)

    def python(self, pod: str, ns: str, script: str, *args: str, timeout: float = 120) -> str:
        return str(self.exec(pod, ns, "python3", "-c", script, *args, timeout=timeout).stdout)

    def load(self, pod: str, ns: str, **spec: Any) -> dict[str, Any]:
        """Run :data:`LOAD_PY` in ``pod`` with ``spec`` (host, port, path, count or seconds, conns,
        headers, latencies) and return its summary."""
        budget = float(spec.get("seconds", 0)) + 0.5 * float(spec.get("count", 0)) + 120
        result: dict[str, Any] = json.loads(self.python(pod, ns, LOAD_PY, json.dumps(spec), timeout=budget))
        return result

    @contextmanager
    def load_in_background(self, pod: str, ns: str, **spec: Any) -> Iterator[Callable[[], dict[str, Any]]]:
        """Start :data:`LOAD_PY` for ``spec['seconds']``; the yielded call waits for its summary."""
        import subprocess

        from kubelab.testing import kubectl_binary

        process = subprocess.Popen(
            [str(kubectl_binary()), "--kubeconfig", str(self.cluster.kubeconfig), "exec", pod, "-n", ns, "-c", "app",
             "--", "python3", "-c", LOAD_PY, json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def result() -> dict[str, Any]:
            out, err = process.communicate(timeout=float(spec["seconds"]) + 120)
            assert process.returncode == 0, f"load failed: {err}"
            summary: dict[str, Any] = json.loads(out)
            return summary
        try:
            yield result
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def proxy_status(self) -> list[dict[str, Any]]:
        done = self.cluster.kubelab("mesh", "proxy-status", "-o", "json")
        assert done.returncode == 0, done.stderr
        records: list[dict[str, Any]] = json.loads(done.stdout)
        return records

    def proxy_record(self, pod: str) -> dict[str, Any] | None:
        return next((r for r in self.proxy_status() if r.get("pod") == pod), None)

    def wait_synced(self, pods: list[str], timeout: float = WAIT) -> dict[str, dict[str, Any]]:
        """Wait until every named pod's proxy is connected and SYNCED on every type."""
        last: dict[str, dict[str, Any]] = {}

        def synced() -> dict[str, dict[str, Any]] | None:
            records = {r["pod"]: r for r in self.proxy_status()}
            last.clear()
            last.update(records)
            if all(p in records and all(t.get("status") == "SYNCED" for t in records[p]["types"].values())
                   for p in pods):
                return records
            return None
        try:
            return wait_for(synced, timeout, f"proxies of {pods} SYNCED")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last proxy-status: {json.dumps(last)[:2000]}") from None

    def meshd(self) -> launcher.ManagedProcess | None:
        return launcher.read_process(self.state_dir, MESHD)

    def kill_meshd(self) -> int:
        """kill -9 meshd; returns the killed pid."""
        process = self.meshd()
        assert process is not None and process.alive, "meshd is not running"
        os.kill(process.pid, signal.SIGKILL)
        return process.pid

    def wait_meshd_back(self, old_pid: int, timeout: float = WAIT) -> int:
        """Wait until the supervisor runs a new meshd whose debug endpoint answers; its pid."""
        def back() -> int | None:
            process = self.meshd()
            if process is None or process.pid == old_pid or not process.alive:
                return None
            done = self.cluster.kubelab("mesh", "proxy-status", "-o", "json")
            return process.pid if done.returncode == 0 else None
        return wait_for(back, timeout, "meshd to come back")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something truthy (returned) or ``timeout`` passes (fails)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(interval)


def meshd_short_leaves(mesh: MeshCluster, seconds: int) -> None:
    """Have the supervisor run meshd with ``--max-leaf-seconds SECONDS`` (it restarts it now)."""
    _, components = supervision.read_components(mesh.state_dir)
    argv = [a for a in components[MESHD]]
    if "--max-leaf-seconds" in argv:
        at = argv.index("--max-leaf-seconds")
        del argv[at:at + 2]
    supervision.register(mesh.state_dir, MESHD, [*argv, "--max-leaf-seconds", str(seconds)])
    mesh.wait_meshd_back(mesh.kill_meshd())


@contextmanager
def mesh_cluster(state_dir: Path, client: docker.DockerClient, *, images: tuple[str, ...] = ("busybox", "python",
                 "nginx", "proxyv2"), up_args: tuple[str, ...] = ()) -> Iterator[MeshCluster]:
    """``kubelab up --nodes 2 UP_ARGS`` with meshd (the images built first), torn down afterwards."""
    ensure_images(client, list(images))
    with running_cluster(state_dir, client, "--nodes", "2", *up_args) as cluster:
        yield MeshCluster(cluster)
