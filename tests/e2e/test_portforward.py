"""``kubectl port-forward`` (every wire: SPDY/3.1 for 1.27-1.30, SPDY in a WebSocket for 1.31+),
``kubectl exec``/``cp`` over SPDY (1.27-1.29) and the Python client's port-forward and exec
channels, through the apiserver to the kubelet's HTTPS server over the in-memory stream source
(tests/apiserver/test_proxy.py's ``kubelet_cluster``): its pods' ports are the host's loopback,
where each test runs its own echo servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.testing import kubectl, kubectl_binary
from tests.apiserver.test_proxy import KubeletCluster, kubelet_cluster

pytestmark = pytest.mark.kubectl

PORT_FORWARD_VERSIONS = ["1.27", "1.29", "1.30", "1.31", "1.33"]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[KubeletCluster]:
    async with kubelet_cluster(tmp_path) as running:
        status, body = await running.api.request(
            "PATCH", "/api/v1/namespaces/default/pods/single/status", {"status": {"phase": "Running"}},
            content_type="application/merge-patch+json")
        assert status == 200, body
        yield running


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Upper-cases what it reads; answers ``bye`` and closes when the client half-closes."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
        writer.write(b"bye")
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def _echo_server() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _port_forward(cluster: KubeletCluster, version: str, *mappings: str,
                        target: str = "pod/single") -> AsyncIterator[asyncio.subprocess.Process]:
    """``kubectl port-forward`` running until every mapping printed its ``Forwarding from`` line."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    cache = cluster.kubeconfig.parent / f"kc-cache-pf-{version}"
    process = await asyncio.create_subprocess_exec(
        str(kubectl_binary(version)), "port-forward", f"--cache-dir={cache}", "--address=127.0.0.1", target, *mappings,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert process.stdout is not None
    try:
        for _ in mappings:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line.startswith(b"Forwarding from 127.0.0.1:"), line
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def _round_trip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        first = await asyncio.wait_for(reader.readexactly(len(payload)), 30)
        writer.write_eof()  # the half-close travels to the pod; its last word comes back
        rest = await asyncio.wait_for(reader.read(), 30)
        return first + rest
    finally:
        writer.close()


@pytest.mark.parametrize("version", PORT_FORWARD_VERSIONS)
async def test_kubectl_port_forward_two_ports_concurrent_connections(cluster: KubeletCluster, version: str) -> None:
    async with _echo_server() as port_a, _echo_server() as port_b:
        local_a, local_b = _free_port(), _free_port()
        async with _port_forward(cluster, version, f"{local_a}:{port_a}", f"{local_b}:{port_b}"):
            payloads = [f"conn-{i}-".encode() * (1 + 5000 * i) for i in range(4)]
            answers = await asyncio.gather(*(_round_trip(local_a if i % 2 else local_b, p)
                                             for i, p in enumerate(payloads)))
            assert answers == [p.upper() + b"bye" for p in payloads]
            # The session outlives its connections: a later one works too.
            assert await _round_trip(local_a, b"again") == b"AGAINbye"


@pytest.mark.parametrize("version", ["1.29", "1.33"])
async def test_kubectl_port_forward_to_a_closed_port_reports_the_error(cluster: KubeletCluster,
                                                                       version: str) -> None:
    closed = _free_port()
    local = _free_port()
    async with _port_forward(cluster, version, f"{local}:{closed}") as process:
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed without data
        writer.close()
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert b"error forwarding port" in line and b"connection refused" in line, line
    # Nothing broke: the same pod forwards to a listening port afterwards.
    async with _echo_server() as port, _port_forward(cluster, version, f"{local}:{port}"):
        assert await _round_trip(local, b"fine") == b"FINEbye"


async def test_kubectl_port_forward_refuses_a_pod_without_node(cluster: KubeletCluster) -> None:
    result = await asyncio.to_thread(kubectl, "port-forward", "pending", "8080:80", kubeconfig=cluster.kubeconfig,
                                     check=False, timeout=60)
    assert result.returncode == 1
    assert "Pending" in result.stderr or "does not have a host assigned" in result.stderr


@pytest.mark.parametrize("version", ["1.27", "1.29"])
async def test_kubectl_exec_over_spdy(cluster: KubeletCluster, version: str) -> None:
    result = await asyncio.to_thread(kubectl, "exec", "single", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                                     kubeconfig=cluster.kubeconfig, version=version, check=False, timeout=60)
    assert (result.returncode, result.stdout) == (3, "out\n"), result.stderr
    assert "err\ncommand terminated with exit code 3" in result.stderr
    result = await asyncio.to_thread(kubectl, "exec", "-i", "single", "--", "sh", "-c", "cat; echo done",
                                     kubeconfig=cluster.kubeconfig, version=version, input="typed\n",
                                     check=False, timeout=60)
    assert (result.returncode, result.stdout) == (0, "typed\ndone\n"), result.stderr


@pytest.mark.parametrize("version", ["1.27", "1.29", "1.33"])
async def test_kubectl_cp_both_ways(cluster: KubeletCluster, tmp_path: Path, version: str) -> None:
    # The stand-in's exec runs on the host, so the "container" paths are host paths under tmp_path.
    source = tmp_path / "local.txt"
    source.write_bytes(b"payload " * 10000)
    inside = tmp_path / "inside"
    inside.mkdir()
    result = await asyncio.to_thread(kubectl, "cp", str(source), f"single:{inside}/copied.txt",
                                     kubeconfig=cluster.kubeconfig, version=version, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (inside / "copied.txt").read_bytes() == source.read_bytes()
    back = tmp_path / "back.txt"
    result = await asyncio.to_thread(kubectl, "cp", f"single:{inside}/copied.txt", str(back),
                                     kubeconfig=cluster.kubeconfig, version=version, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert back.read_bytes() == source.read_bytes()


def _python_client(cluster: KubeletCluster) -> Any:
    from tests.e2e.pyclient import client, new_client_from_config

    api: Any = new_client_from_config(config_file=str(cluster.kubeconfig))
    return client.CoreV1Api(api)


async def test_python_client_port_forward(cluster: KubeletCluster) -> None:
    from kubernetes.stream import portforward

    core = _python_client(cluster)
    async with _echo_server() as port, _echo_server() as other:
        closed = _free_port()

        def forward() -> tuple[bytes, bytes, str | None, bytes]:
            pf: Any = portforward(core.connect_get_namespaced_pod_portforward, "single", "default",
                                  ports=f"{port},{other},{closed}")
            answers = []
            for number, payload in ((port, b"first"), (other, b"second")):
                sock = pf.socket(number)
                sock.settimeout(30)
                sock.sendall(payload)
                answers.append(sock.recv(1024))
            refused = pf.socket(closed)
            refused.settimeout(30)
            dead = refused.recv(1024)  # closed by the error, no data
            error = pf.error(closed)
            pf.close()
            return answers[0], answers[1], error, dead

        first, second, error, dead = await asyncio.to_thread(forward)
    assert (first, second, dead) == (b"FIRST", b"SECOND", b"")
    assert error is not None and f"error forwarding port {closed}" in error and "connection refused" in error


async def test_python_client_exec_with_str_stdin(cluster: KubeletCluster) -> None:
    """The client sends ``str`` stdin as text frames (the official pod_exec.py example)."""
    from kubernetes.stream import stream

    core = _python_client(cluster)

    def run() -> str:
        response: Any = stream(core.connect_get_namespaced_pod_exec, "single", "default",
                               command=["sh", "-c", "read line; echo got:$line"], stdin=True, stdout=True,
                               stderr=True, tty=False, _preload_content=False)
        response.write_stdin("typed text\n")
        out = ""
        while response.is_open():
            response.update(timeout=5)
            out += response.read_stdout()
        response.close()
        return out

    assert await asyncio.to_thread(run) == "got:typed text\n"


async def test_websocket_channel_protocol(cluster: KubeletCluster) -> None:
    """Kubernetes' port-forward channels as the kubelet serves them (relayed by the apiserver): the
    port prefix on each channel, data both ways, the half-close message, the close at the end."""
    async with _echo_server() as port:
        url = f"{cluster.api.server}/api/v1/namespaces/default/pods/single/portforward?ports={port}"
        async with cluster.api.session.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws:
            assert ws.protocol == "v4.channel.k8s.io"
            prefix = port.to_bytes(2, "little")
            assert [await ws.receive_bytes(timeout=30), await ws.receive_bytes(timeout=30)] == \
                [b"\x00" + prefix, b"\x01" + prefix]
            await ws.send_bytes(b"\x00abc")
            assert await ws.receive_bytes(timeout=30) == b"\x00ABC"
            await ws.send_bytes(b"\xff\x00")  # no more data from us: the pod sees EOF, answers, closes
            assert await ws.receive_bytes(timeout=30) == b"\x00bye"
            closing = await ws.receive(timeout=30)
            assert closing.type.name in ("CLOSE", "CLOSED", "CLOSING")


@pytest.mark.parametrize(("query", "message"), [
    pytest.param("ports=0", "invalid port '0'", id="zero"),
    pytest.param("ports=http", "invalid port 'http'", id="name"),
    pytest.param("ports=70000", "invalid port '70000'", id="too-big"),
])
async def test_websocket_port_forward_rejects_bad_ports(cluster: KubeletCluster, query: str, message: str) -> None:
    url = f"{cluster.api.server}/api/v1/namespaces/default/pods/single/portforward?{query}"
    with pytest.raises(Exception) as refused:
        async with cluster.api.session.ws_connect(url, protocols=("v4.channel.k8s.io",)):
            pass
    assert getattr(refused.value, "status", None) == 400, refused.value
    status, body = await cluster.api.request("GET", f"/api/v1/namespaces/default/pods/single/portforward?{query}")
    assert status == 400 and message in body["message"], body
