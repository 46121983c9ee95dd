"""Hollow nodes live on loopback and serve their kubelet endpoints (kubelet.hollow_endpoints).

A hollow KubeletGroup against the real apiserver (embedded in the test loop) with the cluster
PKI: every node advertises its own 127.200.0.N address and the ephemeral port it listens on;
``pods/log`` through the apiserver returns the simulated output, ``exec`` / ``attach`` /
``portForward`` answer a BadRequest Status. Every test runs under the loopback-only network audit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from apiserver.proxy import kubelet_client_ssl_context
from kubelet.hollow import KubeletGroup
from kubelet.settings import KubeletSettings
from machinery.client.rest import ApiClient
from machinery.resources import NODES, PODS
from tests.apiserver.conftest import Api, embedded_api
from tests.kubelet.conftest import eventually
from tests.netaudit import NetAudit, netaudit

__all__ = ["netaudit"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.usefixtures("netaudit")

COUNT = 3


@dataclass
class Hollow:
    api: Api
    client: ApiClient
    group: KubeletGroup
    pki_dir: Path

    async def run_pod(self, name: str, *, node: str = "hollow-node-2", image: str = "kubelab/nginx:1.22",
                      restart: str = "Always") -> dict[str, Any]:
        await self.client.create(PODS, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "restartPolicy": restart, "containers": [{"name": "app", "image": image}]}})

        async def running() -> dict[str, Any] | None:
            obj = await self.client.get(PODS, name, namespace="default")
            return obj if obj["status"].get("phase") == "Running" else None

        result: dict[str, Any] = await eventually(running, timeout=30)
        return result


@pytest.fixture
async def hollow(tmp_path: Path, netaudit: NetAudit) -> AsyncIterator[Hollow]:
    async with embedded_api(tmp_path) as api:
        client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        settings = KubeletSettings(kubeconfig=api.settings.kubeconfig_path, node_name="hollow-node", hollow=True,
                                   count=COUNT, pki_dir=api.settings.pki_dir, fake_start_delay=0.05,
                                   fake_crash_after=0.2, crash_loop_base_delay=0.2, crash_loop_max_delay=0.4,
                                   lease_renew_interval=1.0, emit_events=False)
        group = KubeletGroup(client, settings)
        try:
            await group.start()
            await group.wait_registered(30)
            yield Hollow(api, client, group, api.settings.pki_dir)
        finally:
            await group.stop()
            await client.close()


def _endpoint(node: dict[str, Any]) -> tuple[str, int]:
    [address] = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    return address, int(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])


async def test_nodes_advertise_distinct_loopback_endpoints_that_answer(hollow: Hollow) -> None:
    async def ported() -> list[dict[str, Any]] | None:
        listed: list[dict[str, Any]] = (await hollow.client.list(NODES))["items"]
        return listed if all(_endpoint(n)[1] for n in listed) else None

    nodes = await eventually(ported, timeout=30)
    endpoints = {n["metadata"]["name"]: _endpoint(n) for n in nodes}
    assert {name: address for name, (address, _) in endpoints.items()} == {
        f"hollow-node-{i}": f"127.200.0.{i}" for i in range(1, COUNT + 1)}
    assert all(ipaddress.ip_address(a).is_loopback and port > 0 for a, port in endpoints.values())
    hollow_pods = ipaddress.IPv4Network("127.128.0.0/12")
    assert all(ipaddress.IPv4Network(n["spec"]["podCIDR"]).subnet_of(hollow_pods) for n in nodes)
    context = kubelet_client_ssl_context(hollow.pki_dir)  # verifies each node's address in its certificate
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        for address, port in endpoints.values():
            async with session.get(f"https://{address}:{port}/healthz") as response:
                assert (response.status, await response.text()) == (200, "ok")


async def test_pod_ip_is_loopback(hollow: Hollow) -> None:
    pod = await hollow.run_pod("ip")
    assert pod["status"]["hostIP"] == "127.200.0.2"
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("127.128.1.0/24")


async def test_logs_through_the_apiserver_are_the_simulated_output(hollow: Hollow) -> None:
    await hollow.run_pod("web")
    code, body = await hollow.api.request("GET", "/api/v1/namespaces/default/pods/web/log")
    assert code == 200, body
    assert body.startswith("hollow container app started: image kubelab/nginx:1.22, attempt 0, pod IP 127.128.1.")
    assert body.endswith("(simulated: no process runs)\n")
    code, body = await hollow.api.request("GET", "/api/v1/namespaces/default/pods/web/log?timestamps=true")
    assert code == 200 and body[:4].isdigit() and "Z hollow container app started" in body


async def test_previous_log_of_a_crashed_container(hollow: Hollow) -> None:
    await hollow.run_pod("crasher", image="crash:1")

    async def restarted() -> bool:
        pod = await hollow.client.get(PODS, "crasher", namespace="default")
        return any(s.get("restartCount", 0) >= 1 for s in pod["status"].get("containerStatuses") or [])

    await eventually(restarted, timeout=30)
    code, body = await hollow.api.request("GET", "/api/v1/namespaces/default/pods/crasher/log?previous=true")
    assert code == 200, body
    assert body.splitlines()[-1] == "hollow container app exited with code 1 (Error)"


async def test_follow_ends_when_the_container_exits(hollow: Hollow) -> None:
    await hollow.run_pod("once", image="crash:1", restart="Never")
    code, body = await hollow.api.request("GET", "/api/v1/namespaces/default/pods/once/log?follow=true")
    assert code == 200
    assert body.splitlines()[-1] == "hollow container app exited with code 1 (Error)"


async def test_a_finished_pod_gives_its_ip_back_and_keeps_its_log(hollow: Hollow) -> None:
    await hollow.run_pod("finished", image="crash:1", restart="Never")
    runtime = hollow.group.nodes["hollow-node-2"].runtime

    async def stopped() -> dict[str, Any] | None:
        obj = await hollow.client.get(PODS, "finished", namespace="default")
        sandbox = await runtime.pod_sandbox_status(obj["metadata"]["uid"])
        return obj if obj["status"]["phase"] == "Failed" and sandbox is not None and not sandbox.ip else None

    pod = await eventually(stopped, timeout=30)
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("127.128.1.0/24")
    code, body = await hollow.api.request("GET", "/api/v1/namespaces/default/pods/finished/log")
    assert code == 200, body
    assert body.splitlines()[-1] == "hollow container app exited with code 1 (Error)"
    successor = await hollow.run_pod("successor")
    assert successor["status"]["podIP"] == pod["status"]["podIP"]  # the released address is reused first


async def test_exec_answers_a_bad_request_status(hollow: Hollow) -> None:
    await hollow.run_pod("shell")
    url = hollow.api.server + "/api/v1/namespaces/default/pods/shell/exec?command=sh&stdout=true"
    frames: list[bytes] = []
    async with hollow.api.session.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
        async for msg in ws:
            frames.append(msg.data)
    assert [f[0] for f in frames] == [3]
    status = orjson.loads(frames[0][1:])
    assert (status["status"], status["reason"], status["code"]) == ("Failure", "BadRequest", 400)
    assert status["message"] == ("cannot exec in default/shell/app: pods of hollow node hollow-node-2 run no "
                                 "processes (their containers are simulated)")


@pytest.mark.parametrize("path", [
    pytest.param("attach/default/{pod}/app", id="attach"),
    pytest.param("portForward/default/{pod}", id="port-forward"),
])
async def test_attach_and_port_forward_answer_a_bad_request_status(hollow: Hollow, path: str) -> None:
    await hollow.run_pod("still")
    node = await hollow.client.get(NODES, "hollow-node-2")
    address, port = _endpoint(node)
    context = kubelet_client_ssl_context(hollow.pki_dir)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session, \
            session.post(f"https://{address}:{port}/" + path.format(pod="still")) as response:
        status = await response.json()
    assert response.status == 400
    assert (status["reason"], status["code"]) == ("BadRequest", 400)
    assert "pods of hollow node hollow-node-2 run no processes" in status["message"]


@pytest.mark.parametrize(("subresource", "what"), [
    pytest.param("attach?container=app&stdout=true", "attach", id="attach"),
    pytest.param("portforward?ports=80", "port-forward", id="port-forward"),
])
async def test_attach_and_port_forward_through_the_apiserver(hollow: Hollow, subresource: str, what: str) -> None:
    await hollow.run_pod("quiet")
    code, body = await hollow.api.request("POST", f"/api/v1/namespaces/default/pods/quiet/{subresource}")
    assert (code, body["reason"]) == (400, "BadRequest"), body
    assert body["message"] == (f"cannot {what} pod default/quiet: pods of hollow node hollow-node-2 run no "
                               "processes (their containers are simulated)")


async def test_a_pod_of_another_node_is_not_found(hollow: Hollow) -> None:
    await hollow.run_pod("elsewhere", node="hollow-node-1")
    node = await hollow.client.get(NODES, "hollow-node-3")
    address, port = _endpoint(node)
    context = kubelet_client_ssl_context(hollow.pki_dir)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session, \
            session.get(f"https://{address}:{port}/containerLogs/default/elsewhere/app") as response:
        assert response.status == 404
        assert "not found on node hollow-node-3" in await response.text()


async def test_without_the_pki_nodes_report_no_kubelet_port(tmp_path: Path) -> None:
    async with embedded_api(tmp_path) as api:
        client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        group = KubeletGroup(client, KubeletSettings(kubeconfig=api.settings.kubeconfig_path, node_name="bare",
                                                     hollow=True, count=1, emit_events=False))
        try:
            await group.start()
            await group.wait_registered(30)
            node = await client.get(NODES, "bare-1")
            assert _endpoint(node) == ("127.200.0.1", 0)
            await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "p", "namespace": "default"},
                                       "spec": {"nodeName": "bare-1", "containers": [{"name": "c", "image": "x"}]}})
            code, body = await api.request("GET", "/api/v1/namespaces/default/pods/p/log")
            assert code == 400 and "does not report a kubelet endpoint" in body["message"]
        finally:
            await group.stop()
            await client.close()
