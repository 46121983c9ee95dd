"""Endpoints controller: subsets from pods (pure) and Endpoints following pods and Services live."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from controllers.endpoints import EndpointsController, desired_labels, desired_subsets, resolve_target_port
from controllers.settings import ControllerManagerSettings
from machinery.client import InformerFactory
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import ENDPOINTS, PODS, SERVICES
from tests.controllers.helpers import eventually, running_controller

NS = "default"


def _pod(name: str, ip: str = "", *, ready: bool = True, port: int = 8080, deleting: bool = False,
         phase: str = "Running", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase,
                              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta,
            "spec": {"nodeName": "node-a", "containers": [
                {"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": status}


def _service(target: Any = "http", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": NS, "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": target,
                                                            "protocol": "TCP"}], **spec}}


def _ips(subsets: list[dict[str, Any]], field: str = "addresses") -> list[str]:
    return [a["ip"] for s in subsets for a in s.get(field, [])]


@pytest.mark.parametrize("pods, ready, not_ready", [
    pytest.param([_pod("a", "10.0.0.2"), _pod("b", "10.0.0.1")], ["10.0.0.1", "10.0.0.2"], [], id="sorted-ready"),
    pytest.param([_pod("a", "10.0.0.1", ready=False)], [], ["10.0.0.1"], id="not-ready"),
    pytest.param([_pod("a")], [], [], id="no-ip"),
    pytest.param([_pod("a", "10.0.0.1", deleting=True)], [], [], id="terminating"),
    pytest.param([_pod("a", "10.0.0.1", phase="Succeeded")], [], [], id="terminal"),
])
def test_addresses_follow_pod_state(pods: list[dict[str, Any]], ready: list[str], not_ready: list[str]) -> None:
    subsets = desired_subsets(_service(), pods)
    assert (_ips(subsets), _ips(subsets, "notReadyAddresses")) == (ready, not_ready)


def test_publish_not_ready_addresses_puts_every_pod_in_addresses() -> None:
    subsets = desired_subsets(_service(publishNotReadyAddresses=True), [_pod("a", "10.0.0.1", ready=False)])
    assert _ips(subsets) == ["10.0.0.1"]


@pytest.mark.parametrize("target, expected", [
    pytest.param("http", 8080, id="named"),
    pytest.param(9090, 9090, id="number"),
    pytest.param(None, 80, id="defaults-to-port"),
    pytest.param("metrics", None, id="unknown-name"),
])
def test_resolve_target_port(target: Any, expected: int | None) -> None:
    service_port = {"port": 80, "protocol": "TCP", "targetPort": target}
    assert resolve_target_port(_pod("a", "10.0.0.1"), service_port) == expected


def test_named_port_resolved_per_pod_groups_subsets() -> None:
    subsets = desired_subsets(_service(), [_pod("a", "10.0.0.1", port=8080), _pod("b", "10.0.0.2", port=9090)])
    assert [(s["ports"][0]["port"], _ips([s])) for s in subsets] == [(8080, ["10.0.0.1"]), (9090, ["10.0.0.2"])]
    address = subsets[0]["addresses"][0]
    assert address["nodeName"] == "node-a"
    assert address["targetRef"] == {"kind": "Pod", "namespace": NS, "name": "a", "uid": "uid-a"}
    assert subsets[0]["ports"][0] == {"name": "web", "port": 8080, "protocol": "TCP"}


def test_labels_copy_service_and_mark_headless() -> None:
    assert desired_labels(_service()) == {"tier": "front"}
    assert desired_labels(_service(clusterIP="None")) == {"tier": "front", "service.kubernetes.io/headless": ""}


# ---- against the apiserver ----------------------------------------------------------------
def running(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> Any:
        return EndpointsController(client, factory, ControllerManagerSettings())

    return running_controller(tmp_path, make, workers=2, name="endpoints")



async def _create_pod(client: ApiClient, name: str, ip: str, *, ready: bool) -> None:
    pod = _pod(name)
    pod["metadata"] = {k: v for k, v in pod["metadata"].items() if k != "uid"}
    created = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": pod["metadata"],
                                         "spec": pod["spec"]})
    await _set_status(client, created, ip, ready=ready)


async def _set_status(client: ApiClient, pod: dict[str, Any], ip: str, *, ready: bool) -> None:
    live = await client.get(PODS, pod["metadata"]["name"], namespace=NS)
    live["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                      "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    await client.update(PODS, live, subresource="status")


async def _endpoints(client: ApiClient) -> tuple[list[str], list[str], list[int]] | None:
    try:
        ep = await client.get(ENDPOINTS, "web", namespace=NS)
    except NotFoundError:
        return None
    subsets = ep.get("subsets") or []
    return _ips(subsets), _ips(subsets, "notReadyAddresses"), [p["port"] for s in subsets for p in s.get("ports", [])]


async def test_endpoints_follow_pod_readiness_and_named_ports(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        svc = _service()
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": svc["metadata"],
                                       "spec": svc["spec"]})
        await _create_pod(client, "a", "10.1.0.1", ready=True)
        await _create_pod(client, "b", "10.1.0.2", ready=False)

        async def state_is(expected: tuple[list[str], list[str], list[int]]) -> bool:
            return await _endpoints(client) == expected
        await eventually(lambda: state_is((["10.1.0.1"], ["10.1.0.2"], [8080])))
        ep = await client.get(ENDPOINTS, "web", namespace=NS)
        assert ep["metadata"]["labels"] == {"tier": "front"}
        await _set_status(client, {"metadata": {"name": "b"}}, "10.1.0.2", ready=True)
        await eventually(lambda: state_is((["10.1.0.1", "10.1.0.2"], [], [8080])))
        await client.delete(PODS, "a", namespace=NS)
        await eventually(lambda: state_is((["10.1.0.2"], [], [8080])))
        version = (await client.get(ENDPOINTS, "web", namespace=NS))["metadata"]["resourceVersion"]
        await asyncio.sleep(0.5)  # settled: no write loop between the controller and its own updates
        assert (await client.get(ENDPOINTS, "web", namespace=NS))["metadata"]["resourceVersion"] == version


async def test_endpoints_deleted_with_service(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        svc = _service()
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": svc["metadata"],
                                       "spec": svc["spec"]})

        async def exists() -> bool:
            return await _endpoints(client) is not None
        await eventually(exists)
        await client.delete(SERVICES, "web", namespace=NS)

        async def deleted() -> bool:
            return await _endpoints(client) is None
        await eventually(deleted)
