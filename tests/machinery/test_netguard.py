"""machinery.netguard: which destinations are dialled, and proof that refused ones never are.

Every test that could reach a refused address runs under a tripwire (a :class:`ConnectAudit`
allowing loopback only, installed for this module): if the guard under test failed, the tripwire
would stop the connect before the system call and the test would fail, with nothing dialled.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from machinery.errors import ServiceUnavailableError
from machinery.netguard import (
    AUDIT_ENV,
    AllowedNetworks,
    ConnectAudit,
    DestinationRefusedError,
    check_destination,
    guarded_connector,
    install_connect_audit,
    open_connection,
)
from tests.netaudit import NetAudit, process_audit

CLUSTER = AllowedNetworks.of(["10.244.0.0/16", "10.96.0.0/12"])
_TRIPWIRE: list[ConnectAudit] = []


@pytest.fixture
def tripwire() -> Iterator[ConnectAudit]:
    """A loopback-only connect audit for the duration of the test (one hook per process)."""
    if not _TRIPWIRE:
        _TRIPWIRE.append(install_connect_audit(AllowedNetworks()))
    audit = _TRIPWIRE[0]
    audit.violations.clear()
    audit.active = True
    try:
        yield audit
    finally:
        audit.active = False


@pytest.mark.parametrize(("host", "allowed", "expected"), [
    pytest.param("127.0.0.1", AllowedNetworks(), "127.0.0.1", id="loopback"),
    pytest.param("127.200.0.7", AllowedNetworks(), "127.200.0.7", id="loopback-hollow-node"),
    pytest.param("::1", AllowedNetworks(), "::1", id="ipv6-loopback"),
    pytest.param("[::1]", AllowedNetworks(), "::1", id="bracketed-ipv6"),
    pytest.param("localhost", AllowedNetworks(), "127.0.0.1", id="localhost-without-lookup"),
    pytest.param("10.244.3.9", CLUSTER, "10.244.3.9", id="pod-subnet"),
    pytest.param("10.96.0.1", CLUSTER, "10.96.0.1", id="service-cidr"),
    pytest.param("::ffff:10.244.0.1", CLUSTER, "::ffff:10.244.0.1", id="v4-mapped-in-cluster"),
    pytest.param("172.18.0.1", AllowedNetworks.of(["172.18.0.1"]), "172.18.0.1", id="single-address"),
])
def test_allowed_destinations(host: str, allowed: AllowedNetworks, expected: str) -> None:
    assert check_destination(host, allowed) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(("host", "allowed", "why"), [
    pytest.param("10.200.0.1", AllowedNetworks(), "outside loopback and the cluster's networks",
                 id="default-only-loopback"),
    pytest.param("10.245.0.1", CLUSTER, "outside loopback", id="next-to-pod-subnet"),
    pytest.param("192.168.1.1", CLUSTER, "outside loopback", id="lan"),
    pytest.param("0.0.0.0", AllowedNetworks(), "outside loopback", id="unspecified"),
    pytest.param("::ffff:10.200.0.1", AllowedNetworks(), "outside loopback", id="v4-mapped-outside"),
    pytest.param("2001:db8::1", CLUSTER, "outside loopback", id="ipv6-outside"),
    pytest.param("example.com", CLUSTER, "not an IP address", id="host-name-not-looked-up"),
    pytest.param("kubernetes.default.svc", CLUSTER, "not an IP address", id="cluster-name-not-looked-up"),
    pytest.param("", CLUSTER, "not an IP address", id="empty"),
])
def test_refused_destinations(host: str, allowed: AllowedNetworks, why: str) -> None:
    with pytest.raises(DestinationRefusedError) as caught:
        check_destination(host, allowed, what="the kubelet of node n1")
    assert why in caught.value.message
    assert f"the kubelet of node n1 at {host}" in caught.value.message
    assert isinstance(caught.value, ServiceUnavailableError)
    assert caught.value.to_status()["code"] == 503


def test_refusal_names_the_allowed_networks() -> None:
    with pytest.raises(DestinationRefusedError, match=r"allowed: 127\.0\.0\.0/8, ::1/128, 10\.244\.0\.0/16"):
        check_destination("10.0.0.1", CLUSTER)


@pytest.mark.parametrize(("text", "networks"), [
    pytest.param("", ["127.0.0.0/8", "::1/128"], id="empty-is-loopback"),
    pytest.param("10.244.0.0/16, 10.96.0.0/12", ["127.0.0.0/8", "::1/128", "10.244.0.0/16", "10.96.0.0/12"],
                 id="list"),
    pytest.param("10.244.0.5/16,127.0.0.0/8", ["127.0.0.0/8", "::1/128", "10.244.0.0/16"], id="host-bits-dedup"),
])
def test_parse(text: str, networks: list[str]) -> None:
    assert [str(n) for n in AllowedNetworks.parse(text).networks] == networks


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid network 'ten-net'"):
        AllowedNetworks.parse("10.0.0.0/8,ten-net")


def test_including_adds_single_addresses() -> None:
    allowed = AllowedNetworks().including("10.1.2.3", "")
    assert allowed.allows(ipaddress.ip_address("10.1.2.3"))
    assert not allowed.allows(ipaddress.ip_address("10.1.2.4"))


@pytest.mark.parametrize("url", [
    pytest.param("http://10.200.0.1:10250/healthz", id="ip-literal"),
    pytest.param("http://[2001:db8::1]:10250/healthz", id="ipv6-literal"),
    pytest.param("http://kubelet.example:10250/healthz", id="host-name"),
])
async def test_guarded_connector_refuses_before_dialling(url: str, tripwire: ConnectAudit) -> None:
    async with aiohttp.ClientSession(connector=guarded_connector(AllowedNetworks())) as session:
        with pytest.raises(DestinationRefusedError):
            await session.get(url)
    assert tripwire.violations == []  # the guard refused: no connect was even attempted


async def test_guarded_connector_dials_loopback(tripwire: ConnectAudit) -> None:
    async def here(_request: web.Request) -> web.Response:
        return web.Response(text="here")

    app = web.Application()
    app.router.add_get("/", here)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.9", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(connector=guarded_connector(AllowedNetworks())) as session, \
                session.get(f"http://127.0.0.9:{port}/") as response:
            assert await response.text() == "here"
    finally:
        await runner.cleanup()
    assert tripwire.violations == []


async def test_open_connection_refuses(tripwire: ConnectAudit) -> None:
    with pytest.raises(DestinationRefusedError, match=r"10\.0\.0\.1"):
        await open_connection("10.0.0.1", 80, AllowedNetworks())
    assert tripwire.violations == []


def test_audit_refuses_and_records_before_the_connect(tripwire: ConnectAudit) -> None:
    # UDP: even a connect() that got through would send nothing; the hook must stop it first.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(PermissionError, match="network audit"):
            sock.connect(("10.0.0.1", 9))
        with pytest.raises(OSError):
            sock.getpeername()  # never connected
        with pytest.raises(PermissionError):
            sock.sendto(b"x", ("10.0.0.1", 9))
    assert len(tripwire.violations) == 2
    assert "('10.0.0.1', 9)" in tripwire.violations[0] and "socket.connect" in tripwire.violations[0]
    assert "socket.sendto" in tripwire.violations[1]


def test_audit_lets_loopback_and_unix_sockets_through(tripwire: ConnectAudit, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", 9))
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        server.bind(path)
        server.listen()
        client.connect(path)
    assert tripwire.violations == []


def test_kubelab_processes_audit_from_the_environment(tmp_path: Path) -> None:
    """A component started with KUBELAB_NETAUDIT records and refuses, as the e2e suites rely on."""
    record = tmp_path / "violations"
    script = ("import runpy, socket, sys\n"
              "sys.argv = ['kubelab', '--help']\n"
              "try:\n"
              "    runpy.run_module('kubelab', run_name='__main__')\n"
              "except SystemExit:\n"
              "    pass\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "try:\n"
              "    s.connect(('10.0.0.1', 9))\n"
              "except PermissionError:\n"
              "    print('refused')\n")
    env = {**os.environ, AUDIT_ENV: str(record)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                            check=True, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip().endswith("refused")
    lines = record.read_text().splitlines()
    assert len(lines) == 1 and "('10.0.0.1', 9)" in lines[0]


def test_the_suite_audit_fails_a_test_that_dialled_outside(tmp_path: Path) -> None:
    """tests.netaudit: a violation in this process or in a spawned kubelab process fails the test."""
    audit = process_audit()
    was_active, before = audit.active, list(audit.violations)
    record = tmp_path / "violations.log"
    audit.active = True
    try:
        NetAudit(audit, record).check()  # clean so far
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(PermissionError):
            sock.connect(("10.0.0.1", 9))
        with pytest.raises(pytest.fail.Exception, match=r"10\.0\.0\.1"):
            NetAudit(audit, record).check()
        audit.violations[:] = before
        record.write_text("socket.connect ('192.168.0.9', 53) in pid 1: refused\n")
        with pytest.raises(pytest.fail.Exception, match=r"192\.168\.0\.9"):
            NetAudit(audit, record).check()
    finally:
        audit.active = was_active
        audit.violations[:] = before
