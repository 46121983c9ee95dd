"""The kubelet's HTTPS server (kubelet.httpserver) over the in-memory stream source, and the
framing helpers of kubelet.streams: Docker's multiplexed exec stream, channel Status messages,
log options, client-certificate authorisation, the exec WebSocket protocol."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from kubelet.docker_streams import DockerFrameDecoder
from kubelet.httpserver import exec_status, kubelet_server_tls, start_kubelet_server
from kubelet.memory_streams import MemoryStreams
from kubelet.streams import STDERR, STDOUT, LogOptions
from machinery.pki import ClusterPki, ensure_cluster_pki, write_private_file

NS, POD = "default", "web"


def _frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize(("chunks", "expected"), [
    pytest.param([_frame(1, b"out\n")], [(STDOUT, b"out\n")], id="one-stdout-frame"),
    pytest.param([_frame(2, b"err\n") + _frame(1, b"x")], [(STDERR, b"err\n"), (STDOUT, b"x")], id="two-in-one"),
    pytest.param([_frame(1, b"hello")[:3], _frame(1, b"hello")[3:9], _frame(1, b"hello")[9:]],
                 [(STDOUT, b"hello")], id="split-header-and-payload"),
    pytest.param([_frame(1, b"")], [], id="empty-payload-dropped"),
])
def test_docker_frame_decoder(chunks: list[bytes], expected: list[tuple[int, bytes]]) -> None:
    decoder = DockerFrameDecoder()
    frames = [frame for chunk in chunks for frame in decoder.feed(chunk)]
    assert frames == expected


@pytest.mark.parametrize(("code", "status", "cause"), [
    pytest.param(0, "Success", None, id="success"),
    pytest.param(3, "Failure", "3", id="exit-3"),
])
def test_exec_status(code: int, status: str, cause: str | None) -> None:
    result = exec_status(code)
    assert result["status"] == status
    if cause is None:
        assert "details" not in result
    else:
        assert result["reason"] == "NonZeroExitCode"
        assert result["details"]["causes"] == [{"reason": "ExitCode", "message": cause}]


def _memory_source() -> MemoryStreams:
    source = MemoryStreams()
    old = datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC)
    source.append(NS, POD, "app", "old-1", "old-2", attempt=0, at=old)
    source.finish(NS, POD, "app", attempt=0)
    source.append(NS, POD, "app", "a", "b", "c", attempt=1, at=old)
    source.append(NS, POD, "app", "recent", attempt=1)
    source.finish(NS, POD, "app", attempt=1)
    return source


@pytest.mark.parametrize(("options", "expected"), [
    pytest.param(LogOptions(), b"a\nb\nc\nrecent\n", id="all"),
    pytest.param(LogOptions(tail_lines=2), b"c\nrecent\n", id="tail"),
    pytest.param(LogOptions(tail_lines=0), b"", id="tail-zero"),
    pytest.param(LogOptions(previous=True), b"old-1\nold-2\n", id="previous"),
    pytest.param(LogOptions(since_seconds=60), b"recent\n", id="since"),
    pytest.param(LogOptions(timestamps=True, tail_lines=3, previous=False),
                 b"2024-01-02T03:04:05.123456000Z b\n2024-01-02T03:04:05.123456000Z c\n", id="timestamps"),
])
async def test_memory_log_options(options: LogOptions, expected: bytes) -> None:
    chunks = await _memory_source().logs(NS, POD, "app", options)
    data = b"".join([chunk async for chunk in chunks])
    if options.timestamps:
        assert data.startswith(expected)
    else:
        assert data == expected


@dataclass
class KubeletUnderTest:
    """A started kubelet server, its source, and TLS client contexts for several identities."""

    url: str
    source: MemoryStreams
    pki: ClusterPki
    tmp: Path

    def client_ssl(self, user: str, groups: list[str]) -> ssl.SSLContext:
        cert, key = self.pki.issue_client_certificate(user, groups)
        cert_path, key_path = self.tmp / f"{user}.crt", self.tmp / f"{user}.key"
        write_private_file(cert_path, cert)
        write_private_file(key_path, key)
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(cert_path), str(key_path))
        return context

    def session(self, user: str = "kube-apiserver-kubelet-client",
                groups: tuple[str, ...] = ("system:masters",)) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.client_ssl(user, list(groups))))


def _pods() -> dict[tuple[str, str], dict[str, Any]]:
    spec = {"nodeName": "node-a", "containers": [{"name": "app"}, {"name": "side"}]}
    return {(NS, POD): {"metadata": {"name": POD, "namespace": NS}, "spec": spec},
            (NS, "elsewhere"): {"metadata": {"name": "elsewhere"}, "spec": {**spec, "nodeName": "node-b"}}}


@pytest.fixture
async def kubelet(tmp_path: Path) -> AsyncIterator[KubeletUnderTest]:
    pki = ensure_cluster_pki(tmp_path / "pki")
    source = _memory_source()
    source.append(NS, POD, "side", "sidecar")
    pods = _pods()
    tls = kubelet_server_tls(pki, hosts=["127.0.0.1"], cert_dir=tmp_path / "kubelet")
    runner, port = await start_kubelet_server(source, node_name="node-a", host="127.0.0.1", port=0, tls=tls,
                                              pod_lookup=lambda ns, name: pods.get((ns, name)))
    try:
        yield KubeletUnderTest(f"https://127.0.0.1:{port}", source, pki, tmp_path)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("path", "status", "body"), [
    pytest.param("/containerLogs/default/web/app", 200, "a\nb\nc\nrecent\n", id="logs"),
    pytest.param("/containerLogs/default/web/app?tailLines=1", 200, "recent\n", id="tail"),
    pytest.param("/containerLogs/default/web/app?limitBytes=3", 200, "a\nb", id="limit-bytes"),
    pytest.param("/containerLogs/default/web/app?previous=true", 200, "old-1\nold-2\n", id="previous"),
    pytest.param("/containerLogs/default/web/side?previous=true", 404, "previous terminated container", id="no-prev"),
    pytest.param("/containerLogs/default/nosuch/app", 404, "not found", id="unknown-pod"),
    pytest.param("/containerLogs/default/elsewhere/app", 404, "not found on node node-a", id="other-node"),
    pytest.param("/containerLogs/default/web/nosuch", 404, 'container "nosuch" not found', id="unknown-container"),
    pytest.param("/containerLogs/default/web/app?tailLines=x", 400, "tailLines", id="bad-tail"),
])
async def test_container_logs(kubelet: KubeletUnderTest, path: str, status: int, body: str) -> None:
    async with kubelet.session() as session, session.get(kubelet.url + path) as resp:
        text = await resp.text()
        assert resp.status == status
        if status == 200:
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert text == body
        else:
            assert body in text


@pytest.mark.parametrize(("user", "groups", "status"), [
    pytest.param("kube-apiserver-kubelet-client", ("system:masters",), 200, id="apiserver"),
    pytest.param("kubernetes-admin", ("system:masters",), 403, id="admin-refused"),
    pytest.param("kube-apiserver-kubelet-client", (), 403, id="no-group-refused"),
])
async def test_only_the_apiserver_identity_is_served(kubelet: KubeletUnderTest, user: str,
                                                     groups: tuple[str, ...], status: int) -> None:
    async with kubelet.session(user, groups) as session, \
            session.get(kubelet.url + "/containerLogs/default/web/app") as resp:
        assert resp.status == status


async def test_a_client_without_certificate_cannot_connect(kubelet: KubeletUnderTest) -> None:
    context = ssl.create_default_context(cafile=str(kubelet.pki.ca_cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(kubelet.url + "/containerLogs/default/web/app") as resp:
                await resp.read()


async def test_follow_streams_until_the_source_ends(kubelet: KubeletUnderTest) -> None:
    kubelet.source.append(NS, POD, "side", "more", attempt=0)
    async with kubelet.session() as session, \
            session.get(kubelet.url + "/containerLogs/default/web/side?follow=true") as resp:
        assert resp.status == 200
        first = await resp.content.readuntil(b"more\n")
        assert first == b"sidecar\nmore\n"
        kubelet.source.append(NS, POD, "side", "live")
        assert await resp.content.readline() == b"live\n"
        kubelet.source.finish(NS, POD, "side")
        assert await resp.content.read() == b""


async def _exec(kubelet: KubeletUnderTest, query: str, stdin: bytes | None = None,
                resize: tuple[int, int] | None = None) -> tuple[dict[int, bytes], dict[str, Any], str | None]:
    channels: dict[int, bytes] = {}
    status: dict[str, Any] = {}
    async with kubelet.session() as session, \
            session.ws_connect(kubelet.url + "/exec/default/web/app?" + query,
                               protocols=("v5.channel.k8s.io",)) as ws:
        if resize is not None:
            await ws.send_bytes(b"\x04" + orjson.dumps({"Width": resize[0], "Height": resize[1]}))
        if stdin is not None:
            await ws.send_bytes(b"\x00" + stdin)
            await ws.send_bytes(b"\xff\x00")
        async for msg in ws:
            assert msg.type == aiohttp.WSMsgType.BINARY
            if msg.data[0] == 3:
                status = orjson.loads(msg.data[1:])
            else:
                channels[msg.data[0]] = channels.get(msg.data[0], b"") + msg.data[1:]
        return channels, status, ws.protocol


async def test_exec_relays_stdout_stderr_and_the_exit_code(kubelet: KubeletUnderTest) -> None:
    query = "command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+3&stdout=true&stderr=true"
    channels, status, protocol = await _exec(kubelet, query)
    assert protocol == "v5.channel.k8s.io"
    assert channels == {1: b"out\n", 2: b"err\n"}
    assert status["status"] == "Failure"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_exec_stdin_until_close(kubelet: KubeletUnderTest) -> None:
    channels, status, _ = await _exec(kubelet, "command=cat&stdin=true&stdout=true&stderr=true",
                                      stdin=b"hello\n")
    assert channels == {1: b"hello\n"}
    assert status == {"metadata": {}, "status": "Success"}


async def test_exec_tty_passes_tty_and_merges_stderr(kubelet: KubeletUnderTest) -> None:
    channels, status, _ = await _exec(kubelet, "command=sh&command=-c&command=echo+e+%3E%262&stdout=true&tty=true",
                                      resize=(80, 24))
    assert channels == {1: b"e\n"}
    assert status["status"] == "Success"
    assert kubelet.source.exec_calls[-1]["tty"] is True


async def test_exec_of_a_missing_program_reports_on_the_error_channel(kubelet: KubeletUnderTest) -> None:
    channels, status, _ = await _exec(kubelet, "command=/no/such/program&stdout=true")
    assert channels == {}
    assert status["status"] == "Failure"
    assert "/no/such/program" in status["message"]


@pytest.mark.docker
async def test_docker_streams_against_a_real_container() -> None:
    """DockerStreams finds containers by pod labels: logs (tail, previous), exec (demuxed, stdin, exit code)."""
    import uuid

    from kubelab.images import ensure_images
    from kubelet.docker_streams import DockerStreams
    from tests.docker_daemon import TEST_LABEL, ensure_docker

    client = ensure_docker()
    ensure_images(client, ["busybox"])
    pod = f"streams-{uuid.uuid4().hex[:8]}"
    labels = {"io.kubernetes.pod.namespace": NS, "io.kubernetes.pod.name": pod,
              "io.kubernetes.container.name": "app", TEST_LABEL: "test-streams"}
    created = []
    try:
        for attempt, script in enumerate(["echo first-run", "echo one; echo two; echo three; sleep 60"]):
            container = client.containers.run("kubelab/busybox:1.35", ["sh", "-c", script], detach=True,
                                              labels={**labels, "io.kubernetes.container.restartCount": str(attempt)})
            created.append(container)
            if attempt == 0:
                container.wait(timeout=30)
        streams = DockerStreams(client)
        for _ in range(50):
            data = b"".join([c async for c in await streams.logs(NS, pod, "app", LogOptions(tail_lines=2))])
            if data == b"two\nthree\n":
                break
            await asyncio.sleep(0.1)
        assert data == b"two\nthree\n"
        previous = await streams.logs(NS, pod, "app", LogOptions(previous=True))
        assert b"".join([c async for c in previous]) == b"first-run\n"
        session = await streams.exec(NS, pod, "app", ["sh", "-c", "cat; echo err >&2; exit 7"], stdin=True,
                                     tty=False)
        await session.write_stdin(b"hello\n")
        await session.close_stdin()
        output = [frame async for frame in session.output()]
        assert b"".join(d for ch, d in output if ch == STDOUT) == b"hello\n"
        assert b"".join(d for ch, d in output if ch == STDERR) == b"err\n"
        assert await session.wait() == 7
        await session.close()
    finally:
        for container in created:
            container.remove(force=True)
