"""Tests of the launcher, the ``kubelab`` command and the test harness.

The apiserver here is a stand-in (written below, started as a real process through the real
``kubelab apiserver`` flag parsing) that serves ``/readyz`` over mutual TLS and writes
``apiserver.port`` and the kubeconfig, as ``apiserver.server.run`` does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apiserver.settings import ApiServerSettings
from kubelab import cli, component_commands, etcd, launcher, testing
from kubelab.cluster_up import kept_flags

STAND_IN = """
import asyncio, os, signal, sys, types
from aiohttp import web
from machinery.kubeconfig import write_kubeconfig
from machinery.pki import ensure_cluster_pki


def run(settings):
    if os.environ.get("STAND_IN_FAIL"):
        print("stand-in: failing on purpose", flush=True)
        sys.exit(3)
    pki = ensure_cluster_pki(settings.pki_dir)

    async def serve():
        async def readyz(request):
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, settings.bind_address, settings.port, ssl_context=pki.server_ssl_context())
        await site.start()
        port = runner.addresses[0][1]
        (settings.state_dir / "apiserver.port").write_text(str(port))
        write_kubeconfig(settings.kubeconfig_path, server=f"https://127.0.0.1:{port}", ca_pem=pki.ca_pem,
                         client_cert_pem=pki.admin_cert.read_bytes(),
                         client_key_pem=pki.admin_key.read_bytes())
        print(f"stand-in: store={settings.store} etcd={settings.etcd_servers} port={port}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


sys.modules["apiserver.server"] = types.SimpleNamespace(run=run)
from kubelab.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "state"
    yield directory
    for process in launcher.list_processes(directory):
        launcher.stop_process(directory, process.name, grace=2)


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "stand_in_apiserver.py"
    script.write_text(STAND_IN)
    monkeypatch.setattr(component_commands, "kubelab_command", lambda: [sys.executable, str(script)])


SLEEPER = [sys.executable, "-c", "import time; print('sleep' + 'ing', flush=True); time.sleep(60)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignor' + 'ing', flush=True); time.sleep(60)",
]


def _wait_for_log(state_dir: Path, name: str, text: str) -> None:
    deadline = time.monotonic() + 10
    while not any(text in line for line in launcher.log_tail(state_dir, name)):
        assert time.monotonic() < deadline, launcher.log_tail(state_dir, name)
        time.sleep(0.05)


# --- launcher -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(SLEEPER, launcher.StopOutcome.TERMINATED, id="exits-on-sigterm"),
        pytest.param(STUBBORN, launcher.StopOutcome.KILLED, id="ignores-sigterm"),
    ],
)
def test_start_then_stop(state_dir: Path, argv: list[str], expected: launcher.StopOutcome) -> None:
    process = launcher.start_process(state_dir, "worker", argv)
    _wait_for_log(state_dir, "worker", "sleeping" if argv is SLEEPER else "ignoring")
    assert launcher.read_process(state_dir, "worker") == process
    assert process.alive and launcher.pid_path(state_dir, "worker").exists()

    assert launcher.stop_process(state_dir, "worker", grace=0.5) == (expected, process.pid)
    assert not launcher.is_alive(process.pid)
    assert not launcher.pid_path(state_dir, "worker").exists()


def test_start_refuses_a_running_name(state_dir: Path) -> None:
    launcher.start_process(state_dir, "worker", SLEEPER)
    with pytest.raises(RuntimeError, match="already running"):
        launcher.start_process(state_dir, "worker", SLEEPER)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: f"{_dead_pid()}\n", id="process-gone"),
        pytest.param(lambda: f"{os.getpid()}\n1\n", id="pid-reused-by-another-process"),
    ],
)
def test_stale_pid_file(state_dir: Path, content: object) -> None:
    pid_file = launcher.pid_path(state_dir, "worker")
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(content())  # type: ignore[operator]
    recorded = launcher.read_process(state_dir, "worker")
    assert recorded is not None and recorded.stale

    replacement = launcher.start_process(state_dir, "worker", SLEEPER)
    assert launcher.read_process(state_dir, "worker") == replacement

    pid_file.write_text(content())  # type: ignore[operator]
    assert launcher.stop_process(state_dir, "worker")[0] is launcher.StopOutcome.STALE
    assert not pid_file.exists()
    assert launcher.is_alive(os.getpid())
    launcher.stop_pid(replacement.pid, start_time=replacement.start_time)


# --- kubelab status / down / up -------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        pytest.param("status", "kubelab is not running", id="status"),
        pytest.param("down", "kubelab is not running (nothing to stop)", id="down"),
    ],
)
def test_nothing_running(state_dir: Path, capsys: pytest.CaptureFixture[str], command: str, expected: str) -> None:
    assert cli.main([command, "--state-dir", str(state_dir)]) == 0
    assert expected in capsys.readouterr().out


def test_down_stops_every_recorded_process(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    processes = [launcher.start_process(state_dir, name, SLEEPER) for name in ("kubelet-a", "scheduler")]
    assert cli.main(["down", "--state-dir", str(state_dir)]) == 0
    out = capsys.readouterr().out
    for process in processes:
        assert f"stopped {process.name} (pid {process.pid})" in out
        assert not launcher.is_alive(process.pid)
    assert launcher.list_processes(state_dir) == []


@pytest.mark.slow
def test_up_status_down(state_dir: Path, stand_in: None, capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    args = ["--state-dir", str(state_dir)]
    assert cli.main(["up", *args, "--nodes", "0", "--port", str(port)]) == 0
    out = capsys.readouterr().out
    assert f"kubelab is up: apiserver at https://127.0.0.1:{port}" in out
    assert f"export KUBECONFIG={state_dir / 'kubeconfig'}" in out
    pid = launcher.read_process(state_dir, "apiserver")
    assert pid is not None and pid.alive

    assert cli.main(["up", *args, "--nodes", "0", "--port", str(port)]) == 0
    again = capsys.readouterr()
    assert f"kubelab is already running (apiserver pid {pid.pid}, https://127.0.0.1:{port})" in again.out
    assert "ignored" not in again.err
    # A flag the running apiserver was not started with is named, not silently dropped.
    assert cli.main(["up", *args, "--nodes", "0", "--port", str(port), "--service-cidr", "10.55.0.0/16"]) == 0
    assert "ignored: --service-cidr '10.55.0.0/16' (kept: " in capsys.readouterr().err

    assert cli.main(["status", *args]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^apiserver +running +{pid.pid} +\d+s +0 +-$", out, re.MULTILINE), out
    assert f"apiserver: https://127.0.0.1:{port}   readyz: 200 ok" in out

    assert cli.main(["down", *args]) == 0
    out = capsys.readouterr().out
    assert out.index("stopped supervisor") < out.index(f"stopped apiserver (pid {pid.pid})")
    assert not launcher.is_alive(pid.pid)


def test_up_failure_shows_the_log(
    state_dir: Path, stand_in: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STAND_IN_FAIL", "1")
    assert cli.main(["up", "--state-dir", str(state_dir), "--port", "0", "--nodes", "0"]) == 1
    err = capsys.readouterr().err
    assert "kubelab up failed: the apiserver" in err
    assert "stand-in: failing on purpose" in err
    assert launcher.list_processes(state_dir) == []


def test_up_etcd_not_installed(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(etcd, "ETCD_BINARY", state_dir / "no-etcd")
    assert cli.main(["up", "--state-dir", str(state_dir), "--store", "etcd", "--nodes", "0"]) == 1
    assert "etcd is not installed: apt-get install etcd-server" in capsys.readouterr().err


@pytest.mark.etcd
@pytest.mark.slow
@pytest.mark.skipif(not etcd.ETCD_BINARY.exists(), reason="no /usr/bin/etcd")
def test_up_with_local_etcd(state_dir: Path, stand_in: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up", "--state-dir", str(state_dir), "--store", "etcd", "--port", "0", "--nodes", "0"]) == 0
    member = launcher.read_process(state_dir, "etcd")
    assert member is not None and member.alive
    client_url = json.loads((state_dir / "etcd.json").read_text())["client_url"]
    assert f"started etcd (pid {member.pid}, {client_url})" in capsys.readouterr().out
    assert etcd.etcd_healthy(client_url)
    assert f"store=etcd etcd=['{client_url}']" in "\n".join(launcher.log_tail(state_dir, "apiserver"))

    assert cli.main(["down", "--state-dir", str(state_dir)]) == 0
    out = capsys.readouterr().out
    assert out.index("stopped apiserver") < out.index("stopped etcd")
    assert not launcher.is_alive(member.pid)


def test_apiserver_flags_become_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[ApiServerSettings] = []
    monkeypatch.setitem(sys.modules, "apiserver.server", type(sys)("apiserver.server"))
    sys.modules["apiserver.server"].run = seen.append  # type: ignore[attr-defined]
    argv = ["apiserver", "--state-dir", str(tmp_path), "--store", "etcd", "--port", "0"]
    argv += ["--etcd-servers", "http://127.0.0.1:1,http://127.0.0.1:2", "--etcd-prefix", "/t"]
    assert cli.main(argv) == 0
    (settings,) = seen
    assert (settings.state_dir, settings.store, settings.port) == (tmp_path.resolve(), "etcd", 0)
    assert (settings.etcd_servers, settings.etcd_prefix) == (
        ["http://127.0.0.1:1", "http://127.0.0.1:2"],
        "/t",
    )


# --- harness --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.slow
def test_start_apiserver_restart_and_kubectl(tmp_path: Path, stand_in: None) -> None:
    with testing.start_apiserver(tmp_path / "state") as server:
        assert server.url == f"https://127.0.0.1:{server.port}"
        assert launcher.probe_readyz(server.url, server.ssl_context()) == (200, "ok")
        first_pid, first_port = server.pid, server.port

        server.restart()
        assert (server.port, launcher.is_alive(first_pid)) == (first_port, False)
        assert server.pid != first_pid and server.alive
        assert launcher.probe_readyz(server.url, server.ssl_context()) == (200, "ok")

        result = testing.kubectl(
            "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}",
            kubeconfig=server.kubeconfig,
        )  # fmt: skip
        assert result.stdout == server.url
        pid = server.pid
    assert not launcher.is_alive(pid)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        pytest.param(None, "/usr/bin/kubectl", id="default"),
        pytest.param("1.29", "/usr/lib/google-cloud-sdk/bin/kubectl.1.29", id="pinned"),
    ],
)
def test_kubectl_binary(version: str | None, expected: str) -> None:
    if not Path(expected).exists():
        pytest.skip(f"{expected} is not installed")
    assert testing.kubectl_binary(version) == Path(expected)


def test_kubectl_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no kubectl 1\.2"):
        testing.kubectl_binary("1.2")
    if not testing.KUBECTL.exists():
        pytest.skip("no kubectl")
    with pytest.raises(testing.KubectlError, match="unknown command"):
        testing.kubectl("no-such-verb", kubeconfig=tmp_path / "kubeconfig")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("apiserver.server") is None, reason="apiserver.server not written yet")
def test_real_apiserver_answers_kubectl(tmp_path: Path) -> None:
    with testing.start_apiserver(tmp_path / "state") as server:
        result = testing.kubectl("get", "--raw", "/readyz", kubeconfig=server.kubeconfig)
        assert result.stdout.strip() == "ok"


def test_flags_a_restart_keeps_are_named_when_asked_to_change() -> None:
    recorded = ["kubelab", "apiserver", "--state-dir", "/s", "--store", "sqlite", "--bind-address", "127.0.0.1",
                "--port", "41234", "--service-cidr", "10.96.0.0/16", "--allowed-networks", "", "-v"]
    same = [*recorded[:9], "0", *recorded[10:]]
    assert kept_flags(recorded, same) == [], "--port 0 asks for any port"
    asked = [*recorded[:5], "etcd", *recorded[6:9], "6443", *recorded[10:], "--etcd-servers", "http://127.0.0.1:1"]
    assert kept_flags(recorded, asked) == ["--port '6443' (kept: '41234')", "--store 'etcd' (kept: 'sqlite')"]
