"""AuthorizationPolicy enforced by real sidecars over mTLS on loopback: ALLOW/DENY/AUDIT, principals, namespaces.

Policies are written as Istio YAML (dicts) and compiled by meshd's own compiler, then pushed as the
server sidecar's Inbound; requests cross a client sidecar (mTLS, SPIFFE identity from the fake CA)
or come straight to the server's inbound port in plaintext (no principal).
"""

from __future__ import annotations

import asyncio
import io
import random
from typing import Any

import aiohttp

from meshd.api.resources import Inbound, InboundPort
from meshd.control.compile.authz import compile_policy
from meshd.proxy.proxy import Proxy
from tests.meshd.proxy.harness import Mesh, wait_until

SLEEP = "cluster.local/ns/default/sa/sleep"


def policy(name: str, spec: dict[str, Any], ns: str = "default") -> Any:
    return compile_policy({"metadata": {"name": name, "namespace": ns}, "spec": spec})


class Setup:
    def __init__(self, mesh: Mesh, server: Proxy, ip: str, app_port: int, log: io.StringIO) -> None:
        self.mesh, self.server, self.ip, self.app_port, self.log = mesh, server, ip, app_port, log
        self.clusters, self.rc, self.listener = mesh.http_service(
            "httpbin", ip, 8000, {"": [mesh.endpoint(server, app_port, name="httpbin")]})

    def push(self, *policies: Any, protocol: str = "http", mode: str = "PERMISSIVE") -> None:
        self.mesh.push(self.clusters, [self.rc], [self.listener],
                       Inbound(ports=(InboundPort(self.app_port, protocol, mode),),  # type: ignore[arg-type]
                               authz=tuple(policies)))


async def setup(mesh: Mesh) -> Setup:
    app_port = await mesh.app("httpbin")
    log = io.StringIO()
    server = Proxy(mesh.settings("httpbin", app_port=app_port), rng=random.Random(1), log_stream=log)
    await server.start()
    mesh.proxies.append(server)
    s = Setup(mesh, server, mesh.cluster_ip(), app_port, log)
    s.push()
    await server.wait_ready()
    return s


async def client(mesh: Mesh, name: str, *, namespace: str = "default") -> Proxy:
    proxy = await mesh.proxy(name, namespace=namespace)
    await proxy.wait_ready()
    return proxy


async def call(http: aiohttp.ClientSession, proxy: Proxy, s: Setup, path: str = "/get",
               method: str = "GET") -> tuple[int, str]:
    headers = {"host": "httpbin:8000", "x-kubelab-original-dst": f"{s.ip}:8000"}
    async with http.request(method, f"http://127.0.0.1:{proxy.ports['outbound']}{path}", headers=headers) as resp:
        return resp.status, await resp.text()


async def plain(http: aiohttp.ClientSession, s: Setup, path: str = "/get") -> tuple[int, str]:
    async with http.get(f"http://127.0.0.1:{s.server.ports['inbound']}{path}", headers={"host": "httpbin"}) as resp:
        return resp.status, await resp.text()


async def until_status(get: Any, status: int) -> tuple[int, str]:
    """The config push is asynchronous: wait until the answer reflects it."""
    answer: tuple[int, str] = (0, "")

    async def poll() -> None:
        nonlocal answer
        while True:
            answer = await get()
            if answer[0] == status:
                return
            await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(poll(), 20)
    except TimeoutError:
        raise AssertionError(f"expected {status}, last answer {answer}") from None
    return answer


async def test_allow_by_principal(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    s = await setup(mesh)
    sleep, other = await client(mesh, "sleep"), await client(mesh, "other")
    assert (await call(http, other, s))[0] == 200
    s.push(policy("allow-sleep", {"rules": [{"from": [{"source": {"principals": [SLEEP]}}]}]}))
    assert await until_status(lambda: call(http, other, s), 403) == (403, "RBAC: access denied")
    assert (await call(http, sleep, s))[0] == 200


async def test_deny_by_path_and_method(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    s = await setup(mesh)
    sleep = await client(mesh, "sleep")
    s.push(policy("deny-admin-writes", {"action": "DENY", "rules": [
        {"to": [{"operation": {"methods": ["POST", "DELETE"], "paths": ["/admin/*", "*/secret"]}}]}]}))
    await until_status(lambda: call(http, sleep, s, "/admin/users", "POST"), 403)
    assert (await call(http, sleep, s, "/admin/users", "GET"))[0] == 200
    assert (await call(http, sleep, s, "/public", "POST"))[0] == 200
    assert (await call(http, sleep, s, "/x/secret?token=1", "DELETE"))[0] == 403, "the query string is not the path"
    assert (await call(http, sleep, s, "/public/../admin/users", "POST"))[0] == 403, "dot segments are resolved"


async def test_namespace_source(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    s = await setup(mesh)
    local, foreign = await client(mesh, "sleep"), await client(mesh, "sleep-prod", namespace="prod")
    s.push(policy("from-prod", {"rules": [{"from": [{"source": {"namespaces": ["prod"]}}]}]}))
    await until_status(lambda: call(http, local, s), 403)
    assert (await call(http, foreign, s))[0] == 200
    assert (await plain(http, s))[0] == 403, "a plaintext peer has no namespace"


async def test_empty_spec_denies_all_and_is_recorded(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    s = await setup(mesh)
    sleep = await client(mesh, "sleep")
    s.push(policy("deny-all", {}))
    assert await until_status(lambda: call(http, sleep, s, "/headers"), 403) == (403, "RBAC: access denied")
    def logged() -> bool:
        s.server.telemetry.flush()
        return "rbac_access_denied" in s.log.getvalue()
    await wait_until(logged, what="the denial in the access log")
    line = next(ln for ln in s.log.getvalue().splitlines() if "/headers" in ln and " 403 " in ln)
    assert '"GET /headers HTTP/1.1" 403 - rbac_access_denied_matched_policy[none] ' in line, line
    async with http.get(f"http://127.0.0.1:{s.server.ports['status']}/stats/prometheus") as resp:
        metrics = await resp.text()
    denied = [ln for ln in metrics.splitlines() if ln.startswith("istio_requests_total{reporter=\"destination\"")
              and 'response_code="403"' in ln]
    assert denied and 'source_principal="spiffe://cluster.local/ns/default/sa/sleep"' in denied[0], metrics
    assert 'response_flags="-"' in denied[0]
    # rules: [{}] allows everything again
    s.push(policy("allow-all", {"rules": [{}]}))
    assert (await until_status(lambda: call(http, sleep, s), 200))[0] == 200


async def test_audit_passes(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    s = await setup(mesh)
    sleep = await client(mesh, "sleep")
    s.push(policy("audit-all", {"action": "AUDIT", "rules": [{}]}),
           policy("allow-get", {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}))
    await until_status(lambda: call(http, sleep, s, "/x", "POST"), 403)
    assert (await call(http, sleep, s))[0] == 200, "AUDIT only marks the request"


async def test_plaintext_has_no_principal(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    s = await setup(mesh)
    sleep = await client(mesh, "sleep")
    assert (await plain(http, s))[0] == 200
    s.push(policy("meshed-only", {"rules": [{"from": [{"source": {"principals": ["*"]}}]}]}))
    assert await until_status(lambda: plain(http, s), 403) == (403, "RBAC: access denied")
    assert (await call(http, sleep, s))[0] == 200


async def test_tcp_denial_closes_the_connection(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    s = await setup(mesh)
    s.push(protocol="tcp")

    async def raw() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.server.ports["inbound"])
        writer.write(b"GET /get HTTP/1.1\r\nhost: httpbin\r\nconnection: close\r\n\r\n")
        try:
            return await asyncio.wait_for(reader.read(), 20)
        except ConnectionResetError:
            return b""  # closed with our request unread: the kernel answers with a reset
        finally:
            writer.close()

    async def first_line() -> tuple[int, str]:
        data = await raw()
        return (200 if data.startswith(b"HTTP/1.1 200") else 0 if not data else -1), data[:40].decode()

    assert (await first_line())[0] == 200
    # An ALLOW rule made only of HTTP attributes cannot match TCP: every connection is refused.
    s.push(policy("get-only", {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}), protocol="tcp")
    assert await until_status(first_line, 0) == (0, "")
    # A DENY rule's HTTP attributes are left out on TCP, so a port-scoped one applies to the connection.
    s.push(policy("deny-port", {"action": "DENY", "rules": [
        {"to": [{"operation": {"ports": [str(s.app_port)], "methods": ["POST"]}}]}]}), protocol="tcp")
    assert await until_status(first_line, 0) == (0, "")
    s.push(policy("deny-other-port", {"action": "DENY", "rules": [
        {"to": [{"operation": {"ports": ["1"]}}]}]}), protocol="tcp")
    assert (await until_status(first_line, 200))[0] == 200
