"""Liveness, readiness and startup probes of running containers (the kubelet's prober manager).

``kubelet.sync`` calls :meth:`ProbeManager.sync_pod` after each sync (a worker task per running
container attempt and probe kind; workers of gone attempts are cancelled), asks
:meth:`ProbeManager.is_ready` / :meth:`ProbeManager.is_started` when it computes the status, and
:meth:`ProbeManager.liveness_failed` to decide that a container must be killed and restarted.
Whenever a result flips, ``on_change(pod_uid)`` makes the kubelet re-sync that pod at once.

Semantics, as Kubernetes: the first probe runs ``initialDelaySeconds`` after the container
started, then every ``periodSeconds``, each bounded by ``timeoutSeconds``; a startup probe keeps
the phase of the pod's probe ticker as upstream's worker does (its ticker starts when the kubelet
first syncs the pod, :meth:`ProbeManager.add_pod`, and the first probe of a container is the first
tick once it runs and ``initialDelaySeconds`` passed -- not one whole period after a probe
refused in the container's first milliseconds); a result flips after
``successThreshold`` consecutive successes or ``failureThreshold`` consecutive failures.
Readiness starts as failure, liveness as success; until a startup probe has succeeded neither
runs (and the container is neither started nor ready); once it has, they run at once. A
container the API status already shows ready/started (a restarted kubelet adopting it) starts
from that verdict instead. Each failed probe records an
``Unhealthy`` Warning event (``Liveness probe failed: HTTP probe failed with statuscode: 500``).
``time_scale`` shrinks every interval (tests run probes at 1/100 speed).

HTTP and TCP probes dial through ``machinery.netguard``: the pod's own IP, loopback and the
node's ``allowed_networks`` (a Docker node: its pod network). A probe whose ``host`` names any
other address, or a DNS name, fails with the guard's reason and nothing is dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from kubelet.runtime.interface import ContainerRuntime, ContainerState, ContainerStatus, RuntimeError_
from machinery.netguard import AllowedNetworks, DestinationRefusedError, check_destination, guarded_connector

__all__ = ["EventSink", "ProbeManager", "ProbeResult", "run_probe"]

log = logging.getLogger(__name__)

_KINDS = {"livenessProbe": "Liveness", "readinessProbe": "Readiness", "startupProbe": "Startup"}


class EventSink(Protocol):
    """Where ``Unhealthy`` events go (``kubelet.podfeatures.EventSink`` has this shape)."""

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ...


@dataclass(frozen=True)
class ProbeResult:
    success: bool
    message: str = ""


def _port(value: Any, container: Mapping[str, Any]) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"port {value!r} not found in the container's ports")


async def run_probe(handler: Mapping[str, Any], *, container: Mapping[str, Any], container_id: str,
                    pod_ip: str, runtime: ContainerRuntime, timeout: float,
                    allowed: AllowedNetworks | None = None) -> ProbeResult:
    """Run one probe (or a lifecycle hook handler: same ``exec``/``httpGet``/``tcpSocket`` shapes).

    Network probes may reach ``pod_ip``, loopback and ``allowed`` only."""
    networks = (allowed or AllowedNetworks()).including(pod_ip)
    try:
        if handler.get("exec") is not None:
            command = [str(c) for c in handler["exec"].get("command") or []]
            try:
                code, output = await asyncio.wait_for(
                    runtime.exec_sync(container_id, command, timeout=timeout), timeout + 1)
            except TimeoutError:
                return ProbeResult(False, f"command {shlex.join(command)!r} timed out")
            text = output.decode("utf-8", errors="replace")
            return ProbeResult(code == 0, text if code == 0 or text else f"command exited with {code}")
        if handler.get("httpGet") is not None:
            return await _http(handler["httpGet"], container, pod_ip, timeout, networks)
        if handler.get("tcpSocket") is not None:
            tcp = handler["tcpSocket"]
            host, port = str(tcp.get("host") or pod_ip), _port(tcp.get("port"), container)
            address = str(check_destination(host, networks, what="the probe's target"))
            try:
                _reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
            except TimeoutError:
                return ProbeResult(False, f"dial tcp {host}:{port}: i/o timeout")
            except OSError as exc:
                reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else \
                    (exc.strerror or str(exc)).lower()
                return ProbeResult(False, f"dial tcp {host}:{port}: connect: {reason}")
            writer.close()
            return ProbeResult(True)
        return ProbeResult(False, "missing probe handler")
    except DestinationRefusedError as exc:
        return ProbeResult(False, exc.message)
    except (RuntimeError_, ValueError) as exc:
        return ProbeResult(False, str(exc))


async def _http(get: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str, timeout: float,
                allowed: AllowedNetworks) -> ProbeResult:
    scheme = str(get.get("scheme") or "HTTP").lower()
    host = str(get.get("host") or pod_ip)
    check_destination(host, allowed, what="the probe's target")
    port = _port(get.get("port"), container)
    path = str(get.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": "kube-probe/1.32", "Accept": "*/*"}
    headers.update({str(h["name"]): str(h.get("value", "")) for h in get.get("httpHeaders") or []})
    url = f"{scheme}://{host}:{port}{path}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                         connector=guarded_connector(allowed)) as session, \
                session.get(url, headers=headers, allow_redirects=False, ssl=False) as resp:
            await resp.read()
            if 200 <= resp.status < 400:
                return ProbeResult(True)
            return ProbeResult(False, f"HTTP probe failed with statuscode: {resp.status}")
    except TimeoutError:
        return ProbeResult(False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                                  "awaiting headers)")
    except aiohttp.ClientError as exc:
        return ProbeResult(False, f'Get "{url}": dial tcp {host}:{port}: connect: connection refused'
                           if isinstance(exc, aiohttp.ClientConnectorError) else f'Get "{url}": {exc}')


@dataclass
class _Worker:
    pod_uid: str
    kind: str
    task: asyncio.Task[None]
    result: bool


class ProbeManager:
    """Probe workers of one node; implements :class:`kubelet.runtime.interface.Prober`."""

    def __init__(self, runtime: ContainerRuntime, *, on_change: Callable[[str], None],
                 events: EventSink | None = None, time_scale: float = 1.0) -> None:
        self.runtime = runtime
        self._on_change = on_change
        self._events = events
        self.time_scale = time_scale
        self.allowed_networks = AllowedNetworks()
        """Where network probes may go besides the pod's IP (loopback by default; a Docker node adds
        its pod network)."""
        self._workers: dict[tuple[str, str], _Worker] = {}
        """(container id, probe kind) → worker."""
        self._failed_startup: dict[str, bool] = {}
        """container id → its startup probe failed ``failureThreshold`` times (restart it)."""
        self._started: dict[str, asyncio.Event] = {}
        """container id → set once its startup probe succeeded (the other probes then run at once)."""
        self._ticks: dict[str, float] = {}
        """pod uid → loop time of the kubelet's first sync of the pod: the phase of its startup probes."""

    # -- queries --------------------------------------------------------------------------
    def _result(self, container_id: str, kind: str, default: bool) -> bool:
        worker = self._workers.get((container_id, kind))
        return default if worker is None else worker.result

    def _spec(self, pod: dict[str, Any], name: str) -> Mapping[str, Any]:
        """The app container, or native sidecar (``restartPolicy: Always`` init container), named ``name``."""
        spec = pod.get("spec") or {}
        probed = [*(spec.get("containers") or []),
                  *(c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always")]
        return next((c for c in probed if c.get("name") == name), {})

    def is_started(self, pod: dict[str, Any], status: ContainerStatus) -> bool:
        if status.state is not ContainerState.RUNNING:
            return False
        if not self._spec(pod, status.name).get("startupProbe"):
            return True
        return self._result(status.id, "startupProbe", False)

    def is_ready(self, pod: dict[str, Any], status: ContainerStatus) -> bool:
        if not self.is_started(pod, status):
            return False
        if not self._spec(pod, status.name).get("readinessProbe"):
            return True
        return self._result(status.id, "readinessProbe", False)

    def liveness_failed(self, status: ContainerStatus) -> bool:
        """The container failed its liveness (or startup) probe and must be restarted."""
        return (not self._result(status.id, "livenessProbe", True)
                or self._failed_startup.get(status.id, False))

    # -- workers --------------------------------------------------------------------------
    def add_pod(self, pod: dict[str, Any]) -> None:
        """The kubelet syncs ``pod`` (called at every sync; the first call starts its probe ticker)."""
        self._ticks.setdefault(str(pod["metadata"]["uid"]), asyncio.get_running_loop().time())

    def _until_tick(self, uid: str, period: float) -> float:
        """Seconds to the pod's next probe tick (0 on a tick, or when the pod has no ticker yet)."""
        epoch = self._ticks.get(uid)
        if epoch is None or period <= 0:
            return 0.0
        return -(asyncio.get_running_loop().time() - epoch) % period

    def sync_pod(self, pod: dict[str, Any], containers: list[ContainerStatus], pod_ip: str) -> None:
        """Start workers for the running containers' probes; stop those of other attempts."""
        uid = str(pod["metadata"]["uid"])
        wanted: set[tuple[str, str]] = set()
        for status in containers:
            if status.state is not ContainerState.RUNNING:
                continue
            spec = self._spec(pod, status.name)
            for kind in _KINDS:
                if spec.get(kind):
                    wanted.add((status.id, kind))
                    if (status.id, kind) not in self._workers:
                        self._start(pod, spec, status, kind, pod_ip)
        for key in [k for k, w in self._workers.items() if w.pod_uid == uid and k not in wanted]:
            self._workers.pop(key).task.cancel()
            self._failed_startup.pop(key[0], None)
            self._started.pop(key[0], None)

    def remove_pod(self, uid: str) -> None:
        self._ticks.pop(uid, None)
        for key in [k for k, w in self._workers.items() if w.pod_uid == uid]:
            self._workers.pop(key).task.cancel()
            self._failed_startup.pop(key[0], None)
            self._started.pop(key[0], None)

    async def close(self) -> None:
        tasks = [w.task for w in self._workers.values()]
        self._workers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, pod: dict[str, Any], spec: Mapping[str, Any], status: ContainerStatus, kind: str,
               pod_ip: str) -> None:
        initial = kind == "livenessProbe" or self._carried_over(pod, status, kind)
        task = asyncio.get_running_loop().create_task(
            self._run(pod, spec, status, kind, pod_ip), name=f"probe {kind} {status.pod_uid}/{status.name}")
        self._workers[(status.id, kind)] = _Worker(pod_uid=status.pod_uid, kind=kind, task=task, result=initial)

    def _carried_over(self, pod: dict[str, Any], status: ContainerStatus, kind: str) -> bool:
        """Whether the API status already shows this very container attempt ready (readiness) or
        started (startup): a restarted kubelet adopting running containers keeps that verdict until
        the probe says otherwise, so a kubelet restart does not flap pods out of their endpoints."""
        field = "ready" if kind == "readinessProbe" else "started"
        container_id = f"{self.runtime.name}://{status.id}"
        status_ = pod.get("status") or {}
        for previous in [*(status_.get("containerStatuses") or []), *(status_.get("initContainerStatuses") or [])]:
            if previous.get("containerID") == container_id:
                return bool(previous.get(field))
        return False

    async def _run(self, pod: dict[str, Any], spec: Mapping[str, Any], status: ContainerStatus, kind: str,
                   pod_ip: str) -> None:
        probe = spec[kind]
        scale = self.time_scale
        period = float(probe.get("periodSeconds") or 10) * scale
        timeout = float(probe.get("timeoutSeconds") or 1)
        success_threshold = int(probe.get("successThreshold") or 1)
        failure_threshold = int(probe.get("failureThreshold") or 3)
        key = (status.id, kind)
        successes = failures = 0
        ticked = kind == "startupProbe"
        try:
            await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0) * scale)
            if ticked:
                await asyncio.sleep(self._until_tick(status.pod_uid, period))
            while True:
                if kind != "startupProbe" and spec.get("startupProbe") and not self._result(
                        status.id, "startupProbe", False):
                    # As Kubernetes' manual trigger: the first readiness/liveness probe runs as soon as
                    # the startup probe succeeds, not a whole period later.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._started.setdefault(status.id, asyncio.Event()).wait(), period)
                    continue
                result = await run_probe(probe, container=spec, container_id=status.id, pod_ip=pod_ip,
                                         runtime=self.runtime, timeout=timeout * scale if scale < 1 else timeout,
                                         allowed=self.allowed_networks)
                worker = self._workers.get(key)
                if worker is None:
                    return
                if result.success:
                    successes, failures = successes + 1, 0
                    if successes >= success_threshold and not worker.result:
                        self._set(worker, True)
                        if kind == "startupProbe":
                            self._started.setdefault(status.id, asyncio.Event()).set()
                            return  # startup probes stop once they succeeded
                else:
                    successes, failures = 0, failures + 1
                    self._unhealthy(pod, kind, result.message)
                    if failures >= failure_threshold and (worker.result or kind == "startupProbe"):
                        if kind == "startupProbe":
                            self._failed_startup[status.id] = True
                            self._on_change(worker.pod_uid)
                            return
                        self._set(worker, False)
                # A startup probe waits for the next tick of its pod's ticker (a probe that ran past
                # it skips it, as Go's ticker drops ticks); the others a period after the last one.
                await asyncio.sleep((self._until_tick(status.pod_uid, period) or period) if ticked else period)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("probe %s of %s/%s crashed", kind, status.pod_uid, status.name)

    def _set(self, worker: _Worker, value: bool) -> None:
        worker.result = value
        self._on_change(worker.pod_uid)

    def _unhealthy(self, pod: dict[str, Any], kind: str, message: str) -> None:
        if self._events is not None:
            self._events.event(pod, "Warning", "Unhealthy", f"{_KINDS[kind]} probe failed: {message}")
