"""kubelet.runtime.host_namespaces: pod host namespaces as Docker namespace modes (no Docker needed)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelet.runtime.host_namespaces import HostNamespaces, UnsupportedPodFieldError, unsupported
from kubelet.status import compute_pod_status

SANDBOX = {"name": "k8s_POD_p", "hostname": "p", "network": "kubelab-c", "ipc_mode": "shareable",
           "ports": {"80/tcp": ("127.0.0.1", 8080)}, "dns": ["10.96.0.10"], "labels": {}}


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "i"}], **spec}}


class FakeNetworks:
    def get(self, name: str) -> Any:
        assert name == "kubelab-c"
        return type("Net", (), {"attrs": {"IPAM": {"Config": [{"Subnet": "10.9.0.0/16", "Gateway": "10.9.0.1"}]}}})


class FakeClient:
    networks = FakeNetworks()


@pytest.mark.parametrize(("spec", "expected"), [
    pytest.param({}, SANDBOX, id="plain-pod-unchanged"),
    pytest.param({"hostNetwork": True},
                 {"name": "k8s_POD_p", "network_mode": "host", "ipc_mode": "shareable", "dns": ["10.96.0.10"],
                  "labels": {}}, id="host-network-no-bridge-hostname-or-ports"),
    pytest.param({"hostIPC": True}, {**SANDBOX, "ipc_mode": "host"}, id="host-ipc"),
    pytest.param({"hostPID": True}, {**SANDBOX, "pid_mode": "host"}, id="host-pid"),
])
def test_sandbox_config(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    assert HostNamespaces(FakeClient(), "kubelab-c").sandbox_config(pod(**spec), SANDBOX) == expected


@pytest.mark.parametrize(("spec", "expected"), [
    pytest.param({}, {}, id="plain"),
    pytest.param({"hostPID": True, "hostIPC": True}, {"pid_mode": "host", "ipc_mode": "host"}, id="host-pid-ipc"),
    pytest.param({"shareProcessNamespace": True}, {"pid_mode": "container:sbx"}, id="shared-process-namespace"),
])
def test_container_modes(spec: dict[str, Any], expected: dict[str, str]) -> None:
    assert HostNamespaces.container_modes(pod(**spec), "sbx") == expected


@pytest.mark.parametrize(("spec", "cluster_dns"), [
    pytest.param({}, True, id="pod-network"),
    pytest.param({"hostNetwork": True}, False, id="host-network-cluster-first-falls-back-to-node"),
    pytest.param({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}, True, id="with-host-net"),
])
def test_uses_cluster_dns(spec: dict[str, Any], cluster_dns: bool) -> None:
    assert HostNamespaces.uses_cluster_dns(pod(**spec)) is cluster_dns


def test_host_network_sandbox_address_is_the_network_gateway() -> None:
    host = HostNamespaces(FakeClient(), "kubelab-c")
    assert host.sandbox_ip({"HostConfig": {"NetworkMode": "host"}}) == "10.9.0.1"
    assert host.sandbox_ip({"HostConfig": {"NetworkMode": "kubelab-c"}}) == ""


def test_host_users_false_is_refused_with_the_field_named() -> None:
    assert unsupported(pod()) == "" and unsupported(pod(hostUsers=True)) == ""
    with pytest.raises(UnsupportedPodFieldError, match=r"spec\.hostUsers: false") as info:
        HostNamespaces(FakeClient(), "kubelab-c").sandbox_config(pod(hostUsers=False), SANDBOX)
    assert info.value.reason == "CreatePodSandboxError"


def test_status_reports_the_node_ip_for_a_host_network_pod() -> None:
    from datetime import UTC, datetime

    from kubelet.runtime.interface import SandboxState, SandboxStatus

    sandbox = SandboxStatus(pod_uid="u1", id="s", state=SandboxState.READY, ip="10.9.0.1",
                            created_at=datetime.now(UTC))
    common: dict[str, Any] = {"sandbox": sandbox, "containers": [], "waiting": {}, "is_ready": lambda c: True,
                              "host_ip": "10.9.0.2", "now": "2026-01-01T00:00:00Z", "runtime": "docker"}
    assert compute_pod_status(pod(hostNetwork=True), **common)["podIP"] == "10.9.0.2"
    assert compute_pod_status(pod(), **common)["podIP"] == "10.9.0.1"
