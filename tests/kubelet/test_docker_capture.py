"""Mesh CNI mode on a Docker node: the capture rules a new sandbox gets, loaded into a real network namespace."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubelet.runtime.docker_capture import CaptureError, apply_capture, capture_rules

INJECTED = {"sidecar.istio.io/status": '{"initContainers":["istio-proxy"]}'}


def pod(annotations: dict[str, str], init: tuple[str, ...] = ("istio-proxy",)) -> dict[str, Any]:
    return {"metadata": {"name": "web", "annotations": annotations},
            "spec": {"initContainers": [{"name": n} for n in init], "containers": [{"name": "app"}]}}


def test_only_pods_asking_for_capture_get_rules() -> None:
    assert capture_rules(pod({})) is None
    assert capture_rules(pod(INJECTED, init=("istio-init", "istio-proxy"))) is None
    rules = capture_rules(pod(INJECTED))
    assert rules is not None and "-A OUTPUT -j ISTIO_OUTPUT" in rules and rules.rstrip().endswith("COMMIT")


@pytest.mark.parametrize("annotations", [
    {"sidecar.istio.io/interceptionMode": "TPROXY"},
    {"traffic.sidecar.istio.io/includeOutboundIPRanges": "not-a-cidr"},
    {"traffic.sidecar.istio.io/excludeInboundPorts": "99999"},
])
def test_bad_capture_annotations_fail_the_sandbox_with_the_reason(annotations: dict[str, str]) -> None:
    with pytest.raises(CaptureError, match="mesh traffic capture: "):
        capture_rules(pod({**INJECTED, **annotations}))


def _netns_available() -> bool:
    if os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "nsenter", "iptables-restore", "iptables-save")):
        return False
    name = f"kubelab-cap-{secrets.token_hex(3)}"
    try:
        if subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False).returncode:
            return False
        return subprocess.run(["ip", "netns", "exec", name, "iptables-save", "-t", "nat"],
                              capture_output=True, check=False).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def sandbox() -> Iterator[tuple[str, int]]:
    """A network namespace the test creates and a process living in it (the pause container's role)."""
    name = f"kubelab-cap-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    process = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "300"])
    try:
        yield name, process.pid
    finally:
        process.kill()
        process.wait()
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.skipif(not _netns_available(), reason="needs root, ip netns, nsenter and iptables")
def test_rules_land_in_the_pods_namespace_and_nowhere_else(sandbox: tuple[str, int]) -> None:
    name, pid = sandbox
    host_before = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    rules = capture_rules(pod({**INJECTED, "traffic.sidecar.istio.io/excludeOutboundPorts": "5432"}))
    assert rules is not None
    # Wait (a condition, bounded) until the process has entered the namespace.
    deadline = time.monotonic() + 30
    while os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat(f"/run/netns/{name}").st_ino:
        assert time.monotonic() < deadline, "the sandbox process never entered its namespace"
        time.sleep(0.01)
    apply_capture(pid, rules)
    saved = subprocess.run(["ip", "netns", "exec", name, "iptables-save", "-t", "nat"], capture_output=True,
                           text=True, check=True).stdout
    assert "-A OUTPUT -j ISTIO_OUTPUT" in saved
    assert "-A ISTIO_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN" in saved
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in saved
    host_after = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    assert host_after.count("ISTIO_") == host_before.count("ISTIO_")


def test_a_namespace_that_is_gone_fails_with_the_reason() -> None:
    if shutil.which("nsenter") is None:
        pytest.skip("needs nsenter")
    with pytest.raises(CaptureError, match="mesh traffic capture"):
        apply_capture(2 ** 22 + 12345, "* nat\nCOMMIT\n")
