"""Probes (kubelet.prober): handlers against local servers, and the threshold state machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from kubelet.lifecycle import run_hook
from kubelet.prober import ProbeManager, run_probe
from kubelet.runtime.fake import FakeRuntime, FakeRuntimeSettings
from kubelet.runtime.interface import ContainerKind, ContainerStatus
from machinery.netguard import AllowedNetworks
from tests.netaudit import NetAudit, netaudit

__all__ = ["netaudit"]  # the fixture


class ScriptedRuntime(FakeRuntime):
    """A fake whose exec results follow ``codes`` (the last one repeats); commands are recorded."""

    def __init__(self, codes: list[int]) -> None:
        super().__init__(settings=FakeRuntimeSettings(start_delay=0.0))
        self.codes = codes
        self.commands: list[list[str]] = []

    async def exec_sync(self, container_id: str, command: list[str], *, timeout: float) -> tuple[int, bytes]:
        self.commands.append(command)
        code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
        return code, b"" if code == 0 else b"not healthy"


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.seen.append((type_, reason, message))


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=int(request.query.get("code", "200")))

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.mark.parametrize(("handler", "ok", "message"), [
    pytest.param({"httpGet": {"path": "/?code=200", "port": "web"}}, True, "", id="http-200-named-port"),
    pytest.param({"httpGet": {"path": "/?code=302", "port": "PORT"}}, True, "", id="http-redirect-ok"),
    pytest.param({"httpGet": {"path": "/?code=500", "port": "PORT"}}, False,
                 "HTTP probe failed with statuscode: 500", id="http-500"),
    pytest.param({"tcpSocket": {"port": "PORT"}}, True, "", id="tcp-open"),
    pytest.param({"tcpSocket": {"port": 1}}, False, "dial tcp 127.0.0.1:1: connect: connection refused",
                 id="tcp-refused"),
    pytest.param({"exec": {"command": ["check"]}}, False, "not healthy", id="exec-fails"),
])
async def test_run_probe(http_port: int, handler: dict[str, Any], ok: bool, message: str) -> None:
    for spec in handler.values():
        if spec.get("port") == "PORT":
            spec["port"] = http_port
    container = {"name": "c", "ports": [{"name": "web", "containerPort": http_port}]}
    result = await run_probe(handler, container=container, container_id="x", pod_ip="127.0.0.1",
                             runtime=ScriptedRuntime([1]), timeout=1.0)
    assert (result.success, result.message) == (ok, message)


@pytest.mark.parametrize(("handler", "pod_ip", "allowed", "message"), [
    pytest.param({"tcpSocket": {"host": "10.0.0.1", "port": 80}}, "127.0.0.1", AllowedNetworks(),
                 "refusing to connect to the probe's target at 10.0.0.1: 10.0.0.1 is outside loopback",
                 id="tcp-host-outside"),
    pytest.param({"httpGet": {"host": "192.168.7.7", "port": 80}}, "10.244.0.5", AllowedNetworks.of(["10.244.0.0/16"]),
                 "refusing to connect to the probe's target at 192.168.7.7", id="http-host-outside-pod-network"),
    pytest.param({"httpGet": {"host": "example.com", "port": 80}}, "127.0.0.1", AllowedNetworks(),
                 "'example.com' is not an IP address", id="http-host-name-not-looked-up"),
])
async def test_probes_dial_only_the_pod_and_the_cluster(handler: dict[str, Any], pod_ip: str,
                                                        allowed: AllowedNetworks, message: str,
                                                        netaudit: NetAudit) -> None:
    result = await run_probe(handler, container={"name": "c"}, container_id="x", pod_ip=pod_ip,
                             runtime=ScriptedRuntime([1]), timeout=1.0, allowed=allowed)
    assert not result.success
    assert message in result.message
    assert netaudit.violations() == []  # refused by the guard, never dialled


POD_UID = "uid-p"


async def running(runtime: FakeRuntime, pod: dict[str, Any]) -> ContainerStatus:
    await runtime.run_pod_sandbox(pod)
    cid = await runtime.create_container(pod, pod["spec"]["containers"][0], kind=ContainerKind.REGULAR, attempt=0)
    await runtime.start_container(cid)
    await asyncio.sleep(0.01)
    return await runtime.container_status(cid)


def probe_pod(**probes: dict[str, Any]) -> dict[str, Any]:
    container = {"name": "c", "image": "x", **{k: {"exec": {"command": ["check"]}, **v} for k, v in probes.items()}}
    return {"metadata": {"name": "p", "namespace": "default", "uid": POD_UID}, "spec": {"containers": [container]}}


@pytest.mark.parametrize(("probes", "codes", "ready_after", "live_after"), [
    pytest.param({"readinessProbe": {"periodSeconds": 1}}, [0], True, True, id="ready-on-first-success"),
    pytest.param({"readinessProbe": {"periodSeconds": 1, "successThreshold": 3}}, [0, 0, 1], False, True,
                 id="success-threshold-not-met"),
    pytest.param({"livenessProbe": {"periodSeconds": 1, "failureThreshold": 3}}, [1, 1, 0], True, True,
                 id="two-failures-below-threshold"),
    pytest.param({"livenessProbe": {"periodSeconds": 1, "failureThreshold": 2}}, [1], True, False,
                 id="liveness-fails-at-threshold"),
    pytest.param({"startupProbe": {"periodSeconds": 1, "failureThreshold": 2}, "readinessProbe": {}}, [1], False,
                 False, id="startup-failure-restarts-and-gates-readiness"),
    pytest.param({"startupProbe": {"periodSeconds": 1}, "readinessProbe": {"periodSeconds": 1}}, [0], True, True,
                 id="startup-then-ready"),
])
async def test_probe_state_machine(probes: dict[str, Any], codes: list[int], ready_after: bool,
                                   live_after: bool) -> None:
    runtime = ScriptedRuntime(codes)
    pod = probe_pod(**probes)
    status = await running(runtime, pod)
    changes: list[str] = []
    events = Events()
    manager = ProbeManager(runtime, on_change=changes.append, events=events, time_scale=0.01)
    assert not manager.is_ready(pod, status) or not (probes.get("readinessProbe") or probes.get("startupProbe"))
    manager.sync_pod(pod, [status], "127.0.0.1")
    await asyncio.sleep(0.3)
    assert manager.is_ready(pod, status) is ready_after
    assert (not manager.liveness_failed(status)) is live_after
    if 1 in codes:
        kind = "Startup" if "startupProbe" in probes else ("Liveness" if "livenessProbe" in probes else "Readiness")
        assert ("Warning", "Unhealthy", f"{kind} probe failed: not healthy") in events.seen
    if (ready_after and "readinessProbe" in probes) or not live_after:
        assert POD_UID in changes
    manager.remove_pod(POD_UID)
    await manager.close()


async def test_initial_delay_holds_the_first_probe() -> None:
    runtime = ScriptedRuntime([0])
    pod = probe_pod(readinessProbe={"initialDelaySeconds": 20, "periodSeconds": 1})
    status = await running(runtime, pod)
    manager = ProbeManager(runtime, on_change=lambda _uid: None, time_scale=0.01)
    manager.sync_pod(pod, [status], "127.0.0.1")
    await asyncio.sleep(0.1)
    assert runtime.commands == [] and not manager.is_ready(pod, status)
    await asyncio.sleep(0.2)
    assert runtime.commands and manager.is_ready(pod, status)
    await manager.close()


async def test_hooks_exec_and_sleep() -> None:
    runtime = ScriptedRuntime([0])
    result = await run_hook({"exec": {"command": ["touch", "/x"]}}, container={"name": "c"}, container_id="x",
                            pod_ip="127.0.0.1", runtime=runtime, timeout=1.0)
    assert result.success and runtime.commands == [["touch", "/x"]]
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await run_hook({"sleep": {"seconds": 5}}, container={}, container_id="x", pod_ip="", runtime=runtime,
                           timeout=0.1)).success
    assert loop.time() - start < 1.0  # bounded by the grace period


async def test_readiness_runs_as_soon_as_the_startup_probe_succeeded() -> None:
    # Istio's sidecar: startup every 1 s, readiness every 15 s; Ready must not wait for the next period.
    runtime = ScriptedRuntime([0])
    pod = probe_pod(startupProbe={"periodSeconds": 1}, readinessProbe={"periodSeconds": 100})
    status = await running(runtime, pod)
    manager = ProbeManager(runtime, on_change=lambda _uid: None, time_scale=0.01)
    manager.sync_pod(pod, [status], "127.0.0.1")
    await asyncio.sleep(0.3)  # the readiness period is 1 s here (100 s x 0.01)
    assert manager.is_started(pod, status) and manager.is_ready(pod, status)
    await manager.close()


class TimedRuntime(ScriptedRuntime):
    """Also records the loop time of each probe."""

    def __init__(self, codes: list[int]) -> None:
        super().__init__(codes)
        self.times: list[float] = []

    async def exec_sync(self, container_id: str, command: list[str], *, timeout: float) -> tuple[int, bytes]:
        self.times.append(asyncio.get_running_loop().time())
        return await super().exec_sync(container_id, command, timeout=timeout)


async def test_a_startup_probe_keeps_the_phase_of_the_pods_ticker() -> None:
    # Upstream's worker ticks every period from the kubelet's first sync of the pod; a container that
    # starts later is first probed at the next tick, not at once (and then one whole period later).
    runtime = TimedRuntime([1, 0])
    pod = probe_pod(startupProbe={"periodSeconds": 400, "failureThreshold": 10})  # 4 s at 1/100 speed
    manager = ProbeManager(runtime, on_change=lambda _uid: None, time_scale=0.01)
    loop = asyncio.get_running_loop()
    first_sync = loop.time()
    manager.add_pod(pod)
    await asyncio.sleep(2.0)
    status = await running(runtime, pod)
    started = loop.time()
    manager.add_pod(pod)  # later syncs keep the first one's phase
    manager.sync_pod(pod, [status], "127.0.0.1")
    deadline = loop.time() + 60
    while len(runtime.times) < 2:
        assert loop.time() < deadline, "the startup probe never ran twice"
        await asyncio.sleep(0.05)
    first, second = runtime.times[:2]
    assert first >= first_sync + 4.0 - 0.01, "the first probe waits for the pod's next tick"
    assert first < started + 4.0 - 0.5, "... not a whole period after the container started"
    assert second >= first_sync + 8.0 - 0.01, "the next one is on the following tick"
    assert manager.is_started(pod, status)
    manager.remove_pod(POD_UID)
    await manager.close()
