"""``pods/log`` and ``pods/exec`` through the apiserver (apiserver.proxy) to a stand-in kubelet:
the real kubelet HTTPS server (kubelet.httpserver) over the in-memory stream source.

:func:`kubelet_cluster` (an embedded apiserver, a kubelet server on 127.0.0.1, a Node pointing
at it and pods bound to it) is shared with the real-kubectl suite in tests/e2e/test_logs_exec.py.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubelet.httpserver import kubelet_server_tls, start_kubelet_server
from kubelet.memory_streams import MemoryStreams
from machinery.pki import ClusterPki
from tests.apiserver.conftest import Api, embedded_api
from tests.netaudit import netaudit  # noqa: F401  (the fixture)

NODE = "node-a"
OLD = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@dataclass
class KubeletCluster:
    """An apiserver plus one stand-in kubelet (``source`` holds the logs; exec runs host commands)."""

    api: Api
    source: MemoryStreams
    kubeconfig: Path
    pods: dict[tuple[str, str], dict[str, Any]]
    """What the kubelet's pod_lookup answers from."""

    async def add_pod(self, name: str, containers: list[str], node: str | None = NODE) -> None:
        """Create pod ``name`` in ``default`` and make the kubelet know it."""
        self.pods[("default", name)] = await _create(self.api, "/api/v1/namespaces/default/pods",
                                                     _pod(name, containers, node))


def _pod(name: str, containers: list[str], node: str | None = NODE) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "kubelab/busybox:1.35"} for c in containers]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


async def _create(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, created = await api.request("POST", path, body)
    assert status == 201, created
    result: dict[str, Any] = created
    return result


@contextlib.asynccontextmanager
async def kubelet_cluster(tmp_path: Path) -> AsyncIterator[KubeletCluster]:
    """Apiserver + stand-in kubelet; pods ``single`` (app), ``multi`` (app, side) on the node,
    ``pending`` (no node). ``single/app`` has a previous attempt; all logs are finished."""
    async with embedded_api(tmp_path) as api:
        pki = ClusterPki.at(api.settings.pki_dir)
        source = MemoryStreams()
        source.append("default", "single", "app", "previous-run", attempt=0, at=OLD)
        source.finish("default", "single", "app", attempt=0)
        source.append("default", "single", "app", "line-1", "line-2", "line-3", attempt=1, at=OLD)
        source.finish("default", "single", "app", attempt=1)
        for container in ("app", "side"):
            source.append("default", "multi", container, f"{container}-says-hi")
            source.finish("default", "multi", container)
        pods: dict[tuple[str, str], dict[str, Any]] = {}
        tls = kubelet_server_tls(pki, hosts=["127.0.0.1"], cert_dir=tmp_path / "kubelet")
        runner, port = await start_kubelet_server(source, node_name=NODE, host="127.0.0.1", port=0, tls=tls,
                                                  pod_lookup=lambda ns, name: pods.get((ns, name)))
        try:
            await _create(api, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
            status, node = await api.request("GET", f"/api/v1/nodes/{NODE}")
            node["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                              "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
            status, updated = await api.request("PUT", f"/api/v1/nodes/{NODE}/status", node)
            assert status == 200, updated
            running = KubeletCluster(api, source, api.settings.kubeconfig_path, pods)
            await running.add_pod("single", ["app"])
            await running.add_pod("multi", ["app", "side"])
            await running.add_pod("pending", ["app"], None)
            yield running
        finally:
            await runner.cleanup()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[KubeletCluster]:
    async with kubelet_cluster(tmp_path) as running:
        yield running


@pytest.mark.parametrize(("query", "status", "expected"), [
    pytest.param("single/log", 200, "line-1\nline-2\nline-3\n", id="single-container-implied"),
    pytest.param("single/log?container=app&tailLines=1", 200, "line-3\n", id="tail"),
    pytest.param("single/log?container=app&previous=true", 200, "previous-run\n", id="previous"),
    pytest.param("single/log?timestamps=true&tailLines=1", 200, "2024-01-02T03:04:05.000000000Z line-3\n",
                 id="timestamps"),
    pytest.param("single/log?follow=true", 200, "line-1\nline-2\nline-3\n", id="follow-ends-with-source"),
    pytest.param("multi/log?container=side", 200, "side-says-hi\n", id="container-chosen"),
    pytest.param("multi/log", 400, "a container name must be specified for pod multi, choose one of: [app side]",
                 id="several-containers"),
    pytest.param("multi/log?container=nosuch", 400, "container nosuch is not valid for pod multi", id="bad-container"),
    pytest.param("pending/log", 400, "pod pending does not have a host assigned", id="no-node"),
    pytest.param("nosuch/log", 404, 'pods "nosuch" not found', id="no-pod"),
    pytest.param("multi/log?container=side&previous=true", 404, "previous terminated container", id="no-previous"),
])
async def test_pod_log(cluster: KubeletCluster, query: str, status: int, expected: str) -> None:
    code, body = await cluster.api.request("GET", f"/api/v1/namespaces/default/pods/{query}")
    assert code == status, body
    if status == 200:
        assert body == expected
    else:
        assert body["kind"] == "Status"
        assert expected in body["message"]


@pytest.mark.parametrize("accept", ["text/plain", "text/plain, */*", "application/json"])
async def test_pod_log_answers_text_whatever_the_client_accepts(cluster: KubeletCluster, accept: str) -> None:
    resp = await cluster.api.response("GET", "/api/v1/namespaces/default/pods/single/log?tailLines=1",
                                      headers={"Accept": accept})
    async with resp:
        assert (resp.status, resp.content_type, await resp.text()) == (200, "text/plain", "line-3\n")


async def test_follow_streams_live_lines(cluster: KubeletCluster) -> None:
    cluster.source.append("default", "live", "app", "first")
    await cluster.add_pod("live", ["app"])
    resp = await cluster.api.response("GET", "/api/v1/namespaces/default/pods/live/log?follow=true")
    async with resp:
        assert resp.status == 200
        assert await resp.content.readline() == b"first\n"
        cluster.source.append("default", "live", "app", "second")
        assert await resp.content.readline() == b"second\n"
        cluster.source.finish("default", "live", "app")
        assert await resp.content.read() == b""


async def test_log_of_an_unreachable_kubelet_is_service_unavailable(cluster: KubeletCluster) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gone"}}
    await _create(cluster.api, "/api/v1/nodes", node)
    _, node = await cluster.api.request("GET", "/api/v1/nodes/gone")
    node["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                      "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}
    await cluster.api.request("PUT", "/api/v1/nodes/gone/status", node)
    await cluster.add_pod("orphan", ["app"], "gone")
    code, body = await cluster.api.request("GET", "/api/v1/namespaces/default/pods/orphan/log")
    assert code == 503
    assert "cannot reach the kubelet on node gone" in body["message"]


@pytest.mark.parametrize(("address", "why"), [
    pytest.param("10.200.0.1", "10.200.0.1 is outside loopback and the cluster's networks", id="outside"),
    pytest.param("kubelet.example", "is not an IP address", id="host-name"),
])
@pytest.mark.parametrize(("subresource", "headers"), [
    pytest.param("log", {}, id="log"),
    pytest.param("exec?command=ls&stdout=true", {"Upgrade": "websocket", "Connection": "Upgrade",
                                                 "Sec-WebSocket-Protocol": "v5.channel.k8s.io"}, id="exec"),
])
@pytest.mark.usefixtures("netaudit")  # fails the test if anything but loopback was even attempted
async def test_a_kubelet_outside_the_allowed_networks_is_never_dialled(
        cluster: KubeletCluster, address: str, why: str, subresource: str, headers: dict[str, str]) -> None:
    await _create(cluster.api, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "far"}})
    _, node = await cluster.api.request("GET", "/api/v1/nodes/far")
    node["status"] = {"addresses": [{"type": "InternalIP", "address": address}],
                      "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
    await cluster.api.request("PUT", "/api/v1/nodes/far/status", node)
    await cluster.add_pod("remote", ["app"], "far")
    code, body = await cluster.api.request("GET", f"/api/v1/namespaces/default/pods/remote/{subresource}",
                                           headers=headers)
    assert (code, body["reason"]) == (503, "ServiceUnavailable")
    assert f"refusing to connect to the kubelet of node far at {address}: " in body["message"]
    assert why in body["message"]


async def _exec(cluster: KubeletCluster, query: str, *, stdin: bytes | None = None,
                protocols: tuple[str, ...] = ("v5.channel.k8s.io",)) -> tuple[dict[int, bytes], dict[str, Any]]:
    channels: dict[int, bytes] = {}
    status: dict[str, Any] = {}
    url = cluster.api.server + "/api/v1/namespaces/default/pods/single/exec?" + query
    async with cluster.api.session.ws_connect(url, protocols=protocols) as ws:
        assert ws.protocol == protocols[0]
        if stdin is not None:
            await ws.send_bytes(b"\x00" + stdin)
            await ws.send_bytes(b"\xff\x00")
        async for msg in ws:
            if msg.data[0] == 3:
                status = orjson.loads(msg.data[1:])
            else:
                channels[msg.data[0]] = channels.get(msg.data[0], b"") + msg.data[1:]
    return channels, status


@pytest.mark.parametrize(("query", "stdin", "protocols", "channels", "exit_code"), [
    pytest.param("command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+3&stdout=true&stderr=true",
                 None, ("v5.channel.k8s.io",), {1: b"out\n", 2: b"err\n"}, "3", id="exit-3"),
    pytest.param("command=cat&stdin=true&stdout=true&stderr=true", b"piped\n", ("v5.channel.k8s.io",),
                 {1: b"piped\n"}, None, id="stdin"),
    pytest.param("command=echo&command=v4&stdout=true", None, ("v4.channel.k8s.io",), {1: b"v4\n"}, None,
                 id="v4-protocol"),
])
async def test_pod_exec(cluster: KubeletCluster, query: str, stdin: bytes | None, protocols: tuple[str, ...],
                        channels: dict[int, bytes], exit_code: str | None) -> None:
    seen, status = await _exec(cluster, query, stdin=stdin, protocols=protocols)
    assert seen == channels
    if exit_code is None:
        assert status == {"metadata": {}, "status": "Success"}
    else:
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": exit_code}]


@pytest.mark.parametrize(("method", "path", "headers", "code", "message"), [
    pytest.param("POST", "single/exec?command=ls&stdout=true",
                 {"Upgrade": "SPDY/3.1", "Connection": "Upgrade", "X-Stream-Protocol-Version": "channel.k8s.io"},
                 400, "none of the stream protocols ['channel.k8s.io'] is supported", id="spdy-old-protocol"),
    pytest.param("POST", "nosuch/exec?command=ls", {}, 404, 'pods "nosuch" not found', id="no-pod"),
    pytest.param("GET", "multi/exec?command=ls", {}, 400, "choose one of: [app side]", id="several-containers"),
    pytest.param("GET", "single/exec?stdout=true", {}, 400, "at least one command", id="no-command"),
    pytest.param("GET", "single/portforward?ports=80", {}, 400, "Upgrade request required", id="portforward"),
    pytest.param("POST", "multi/attach?container=side", {}, 400, "Upgrade request required", id="attach"),
    pytest.param("POST", "pending/attach", {}, 400, "pod pending does not have a host assigned", id="attach-no-node"),
    pytest.param("POST", "pending/portforward", {}, 400, "pod pending does not have a host assigned",
                 id="portforward-no-node"),
])
async def test_exec_refusals(cluster: KubeletCluster, method: str, path: str, headers: dict[str, str], code: int,
                             message: str) -> None:
    status, body = await cluster.api.request(method, f"/api/v1/namespaces/default/pods/{path}", headers=headers)
    assert status == code, body
    assert body["kind"] == "Status"
    assert message in body["message"]


async def test_exec_client_going_away_ends_the_command(cluster: KubeletCluster) -> None:
    url = cluster.api.server + "/api/v1/namespaces/default/pods/single/exec?command=sleep&command=30&stdout=true"
    async with cluster.api.session.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
        assert ws.protocol == "v5.channel.k8s.io"
    # A later request still works: the relay and the kubelet session were released.
    code, body = await cluster.api.request("GET", "/api/v1/namespaces/default/pods/single/log?tailLines=1")
    assert (code, body) == (200, "line-3\n")

