"""``kubectl logs`` and ``kubectl exec`` (real kubectl, WebSocket v5) through the apiserver to the
kubelet's HTTPS server backed by the in-memory stream source (tests/apiserver/test_proxy.py's
``kubelet_cluster``). The Docker-backed kubelet is not wired into the kubelet process yet; once it
is, the same commands should run against Docker containers (``pytest.mark.docker``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelab.testing import kubectl, kubectl_binary
from tests.apiserver.test_proxy import KubeletCluster, kubelet_cluster

pytestmark = pytest.mark.kubectl


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[KubeletCluster]:
    async with kubelet_cluster(tmp_path) as running:
        yield running


async def _kubectl(cluster: KubeletCluster, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(kubectl, *args, kubeconfig=cluster.kubeconfig, input=input, check=False,
                                   timeout=60)


@pytest.mark.parametrize(("args", "stdout"), [
    pytest.param(("logs", "single"), "line-1\nline-2\nline-3\n", id="logs"),
    pytest.param(("logs", "single", "--tail=2"), "line-2\nline-3\n", id="tail"),
    pytest.param(("logs", "single", "--tail=1", "--timestamps"), "2024-01-02T03:04:05.000000000Z line-3\n",
                 id="timestamps"),
    pytest.param(("logs", "single", "--previous"), "previous-run\n", id="previous"),
    pytest.param(("logs", "-f", "single"), "line-1\nline-2\nline-3\n", id="follow-ends-with-source"),
    pytest.param(("logs", "multi", "-c", "side"), "side-says-hi\n", id="container"),
    pytest.param(("logs", "multi"), "app-says-hi\n", id="first-container-by-default"),
])
async def test_kubectl_logs(cluster: KubeletCluster, args: tuple[str, ...], stdout: str) -> None:
    result = await _kubectl(cluster, *args)
    assert (result.returncode, result.stdout) == (0, stdout), result.stderr


async def test_kubectl_logs_follow_streams_live(cluster: KubeletCluster) -> None:
    cluster.source.append("default", "live", "app", "first")
    await cluster.add_pod("live", ["app"])
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    process = await asyncio.create_subprocess_exec(
        str(kubectl_binary()), "logs", "-f", "live", f"--cache-dir={cluster.kubeconfig.parent / 'kc-cache'}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"first\n"
    cluster.source.append("default", "live", "app", "second")
    assert await asyncio.wait_for(process.stdout.readline(), 10) == b"second\n"
    cluster.source.finish("default", "live", "app")
    assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_kubectl_logs_refusals(cluster: KubeletCluster) -> None:
    result = await _kubectl(cluster, "logs", "pending")
    assert result.returncode == 1
    assert "pod pending does not have a host assigned" in result.stderr


async def test_kubectl_exec_exit_code_and_streams(cluster: KubeletCluster) -> None:
    result = await _kubectl(cluster, "exec", "single", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    assert "command terminated with exit code 3" in result.stderr


async def test_kubectl_exec_stdin(cluster: KubeletCluster) -> None:
    result = await _kubectl(cluster, "exec", "-i", "single", "--", "sh", "-c", "cat; echo done",
                            input="from-stdin\n")
    assert (result.returncode, result.stdout) == (0, "from-stdin\ndone\n"), result.stderr
    assert cluster.source.exec_calls[-1]["stdin"] is True


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pty")
async def test_kubectl_exec_tty(cluster: KubeletCluster) -> None:
    cache = cluster.kubeconfig.parent / "kc-cache-tty"
    command = f"{kubectl_binary()} --cache-dir={cache} exec -it single -- sh -c 'echo in-tty'"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    process = await asyncio.create_subprocess_exec(
        "script", "-qec", command, "/dev/null", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(process.communicate(b""), 60)
    assert process.returncode == 0, err
    assert b"in-tty" in out
    call = cluster.source.exec_calls[-1]
    assert (call["tty"], call["stdin"], call["command"]) == (True, True, ["sh", "-c", "echo in-tty"])
