"""Lifecycle: /quitquitquit, /drain, /config_dump, and SIGTERM draining a real ``python -m meshd.proxy`` process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

import aiohttp
from aiohttp import web

from meshd.api.resources import ROUTES, Inbound, InboundPort
from tests.meshd.proxy.harness import Mesh, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_quitquitquit_exits_and_config_dump_shows_versions(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    proxy = await mesh.proxy("job")
    clusters, rc, listener = mesh.http_service("reviews", mesh.cluster_ip(), 9080, {"": []})
    mesh.push(clusters, [rc], [listener], Inbound())
    await proxy.wait_ready()
    admin = f"http://127.0.0.1:{proxy.ports['admin']}"
    async with http.get(f"{admin}/config_dump") as resp:
        dump = await resp.json()
    assert dump["versions"][ROUTES] == mesh.meshd.versions[ROUTES]
    assert dump["resources"][ROUTES][0]["name"] == "9080"
    assert dump["certificate"]["identity"] == "spiffe://cluster.local/ns/default/sa/job"
    async with http.get(f"{admin}/quitquitquit") as resp:
        assert resp.status == 405
    async with http.post(f"{admin}/quitquitquit") as resp:
        assert resp.status == 200
    await asyncio.wait_for(proxy.exited.wait(), 10)
    assert proxy.exit_code == 0


async def test_drain_stops_inbound_but_not_outbound(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    port = await mesh.app("reviews")
    proxy = await mesh.proxy("reviews", app_port=port)
    mesh.push([], [], [], Inbound(default_mtls_mode="DISABLE", ports=(InboundPort(port, "http", "DISABLE"),)))
    await proxy.wait_ready()
    async with http.get(f"http://127.0.0.1:{proxy.ports['inbound']}/") as resp:
        assert resp.status == 200
    async with http.post(f"http://127.0.0.1:{proxy.ports['admin']}/drain") as resp:
        assert resp.status == 200
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["inbound"])
    except ConnectionRefusedError:
        pass
    else:  # pragma: no cover -- a listening socket after drain
        writer.close()
        raise AssertionError("inbound still accepts after /drain")
    # outbound still accepts (the app may still be finishing its own calls)
    _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["outbound"])
    writer.close()


async def test_sigterm_drains_in_flight_requests_then_exits(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(1.0)
        return web.json_response({"app": "slow"})

    app_port = await mesh.app("reviews", slow)
    mesh.push([], [], [], Inbound(default_mtls_mode="DISABLE", ports=(InboundPort(app_port, "http", "DISABLE"),)))
    token = mesh.tmp / "token"
    token.write_text("default/reviews")
    ports = {name: free_port() for name in ("outbound", "inbound", "admin", "status", "ready")}
    env = {**os.environ, "POD_NAME": "reviews-1", "POD_NAMESPACE": "default", "SERVICE_ACCOUNT": "reviews",
           "INSTANCE_IP": "127.0.0.1", "CA_ADDR": mesh.meshd.address, "TERMINATION_DRAIN_DURATION_SECONDS": "5"}
    args = [sys.executable, "-m", "meshd.proxy", "--token-path", str(token), "--root-cert-path",
            str(mesh.root_path), "--bind-address", "127.0.0.1", "--original-dst", f"127.0.0.1:{app_port}",
            *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port)))]
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        async def ready() -> bool:
            try:
                async with http.get(f"http://127.0.0.1:{ports['ready']}/healthz/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        deadline = time.monotonic() + 60
        while not await ready():
            assert proc.returncode is None and time.monotonic() < deadline, "proxy never became ready"
            await asyncio.sleep(0.05)
        in_flight = asyncio.create_task(http.get(f"http://127.0.0.1:{ports['inbound']}/slow"))
        await asyncio.wait_for(started.wait(), 20)
        proc.send_signal(signal.SIGTERM)
        resp = await asyncio.wait_for(in_flight, 20)
        assert resp.status == 200 and (await resp.json())["app"] == "slow"
        code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0
        stdout = (await proc.stdout.read()).decode() if proc.stdout else ""
        assert '"GET /slow HTTP/1.1" 200' in stdout  # the access log line of the drained request
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await wait_until(lambda: proc.returncode is not None)


async def test_the_proxy_tests_run_on_uvloop() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
