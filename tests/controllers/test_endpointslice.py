"""EndpointSlice controller: slices planned from pods (pure) and slices following pods and Services live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controllers.endpointslice import (
    CONTROLLER_NAME,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    EndpointSliceController,
    desired_endpoints,
    plan,
)
from controllers.settings import ControllerManagerSettings
from machinery.client import InformerFactory
from machinery.client.rest import ApiClient
from machinery.resources import ENDPOINTSLICES, PODS, SERVICES
from tests.controllers.helpers import eventually, running_controller

NS = "default"
Obj = dict[str, Any]


def _pod(name: str, ip: str = "", *, ready: bool = True, deleting: bool = False, phase: str = "Running",
         hostname: str = "", subdomain: str = "") -> Obj:
    meta: Obj = {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status: Obj = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    spec: Obj = {"nodeName": "node-a", "containers": [
        {"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    return {"metadata": meta, "spec": spec, "status": status}


def _service(**spec: Any) -> Obj:
    return {"metadata": {"name": "web", "namespace": NS, "uid": "svc-uid", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http",
                                                            "protocol": "TCP", "appProtocol": "http"}], **spec}}


def _only(groups: dict[Any, list[Obj]]) -> list[Obj]:
    assert len(groups) == 1
    return next(iter(groups.values()))


@pytest.mark.parametrize(("pod", "conditions"), [
    pytest.param(_pod("a", "10.0.0.1"), {"ready": True, "serving": True, "terminating": False}, id="ready"),
    pytest.param(_pod("a", "10.0.0.1", ready=False), {"ready": False, "serving": False, "terminating": False},
                 id="not-ready"),
    pytest.param(_pod("a", "10.0.0.1", deleting=True), {"ready": False, "serving": True, "terminating": True},
                 id="terminating-still-serving"),
    pytest.param(_pod("a", "10.0.0.1", ready=False, deleting=True),
                 {"ready": False, "serving": False, "terminating": True}, id="terminating"),
])
def test_conditions_follow_readiness_and_termination(pod: Obj, conditions: Obj) -> None:
    assert _only(desired_endpoints(_service(), [pod]))[0]["conditions"] == conditions


def test_publish_not_ready_addresses_marks_every_endpoint_ready() -> None:
    endpoint = _only(desired_endpoints(_service(publishNotReadyAddresses=True), [_pod("a", "10.0.0.1", ready=False)]))
    assert endpoint[0]["conditions"]["ready"] is True


@pytest.mark.parametrize("pod", [
    pytest.param(_pod("a"), id="no-ip"),
    pytest.param(_pod("a", "10.0.0.1", phase="Succeeded"), id="succeeded"),
    pytest.param(_pod("a", "10.0.0.1", phase="Failed"), id="failed"),
])
def test_pods_left_out(pod: Obj) -> None:
    assert desired_endpoints(_service(), [pod]) == {}


def test_endpoint_fields_and_resolved_named_port() -> None:
    groups = desired_endpoints(_service(), [_pod("a", "10.0.0.1", hostname="a", subdomain="web")])
    ((ports, endpoints),) = groups.items()
    assert ports == (("web", 8080, "TCP", "http"),)
    assert endpoints == [{"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True,
                                                                    "terminating": False},
                          "hostname": "a", "nodeName": "node-a",
                          "targetRef": {"kind": "Pod", "namespace": NS, "name": "a", "uid": "uid-a"}}]


def test_hostname_only_when_subdomain_names_the_service() -> None:
    endpoint = _only(desired_endpoints(_service(), [_pod("a", "10.0.0.1", hostname="a", subdomain="other")]))[0]
    assert "hostname" not in endpoint


def test_new_service_gets_one_slice_with_labels_owner_and_ports() -> None:
    todo = plan(_service(), [_pod("a", "10.0.0.1")], [])
    assert not todo.update and not todo.delete
    (body,) = todo.create
    assert body["addressType"] == "IPv4"
    assert body["metadata"]["labels"] == {"tier": "front", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: CONTROLLER_NAME}
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                    "uid": "svc-uid", "controller": True, "blockOwnerDeletion": True}]
    assert body["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]


def test_split_at_100_endpoints_per_slice() -> None:
    pods = [_pod(f"p{i}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(250)]
    todo = plan(_service(), pods, [])
    assert sorted(len(b["endpoints"]) for b in todo.create) == [50, 100, 100]
    addresses = [a for b in todo.create for e in b["endpoints"] for a in e["addresses"]]
    assert len(set(addresses)) == 250


def _stored(body: Obj, name: str) -> Obj:
    return dict(body, metadata=dict(body["metadata"], name=name, resourceVersion="5"))


def test_endpoints_stay_in_their_slice_and_new_ones_fill_room() -> None:
    pods = [_pod(f"p{i}", f"10.0.1.{i + 1}") for i in range(120)]
    first = plan(_service(), pods, [])
    existing = [_stored(b, f"web-{i}") for i, b in enumerate(first.create)]
    # one pod from the full slice goes, two new ones come: the full slice loses one, the other gains two
    gone = existing[0]["endpoints"][0]["targetRef"]["name"]
    pods = [p for p in pods if p["metadata"]["name"] != gone] + [_pod("n1", "10.0.2.1"), _pod("n2", "10.0.2.2")]
    todo = plan(_service(), pods, existing)
    assert not todo.create and not todo.delete
    sizes = {b["metadata"]["name"]: len(b["endpoints"]) for b in todo.update}
    assert sum(sizes.values()) == 121
    assert all(size <= 100 for size in sizes.values())


def test_unchanged_slices_are_not_rewritten() -> None:
    pods = [_pod("a", "10.0.0.1")]
    existing = [_stored(b, "web-x") for b in plan(_service(), pods, []).create]
    todo = plan(_service(), pods, existing)
    assert (todo.create, todo.update, todo.delete) == ([], [], [])


def test_no_endpoints_leaves_one_empty_placeholder() -> None:
    pods = [_pod(f"p{i}", f"10.0.1.{i + 1}") for i in range(150)]
    existing = [_stored(b, f"web-{i}") for i, b in enumerate(plan(_service(), pods, []).create)]
    todo = plan(_service(), [], existing)
    assert len(todo.delete) == 1 and not todo.create
    (placeholder,) = todo.update
    assert placeholder["endpoints"] == [] and placeholder["ports"] == []
    assert plan(_service(), [], []).create[0]["endpoints"] == []


def _endpointslice_controller(client: ApiClient, factory: InformerFactory) -> EndpointSliceController:
    return EndpointSliceController(client, factory, ControllerManagerSettings(leader_elect=False),
                                   max_endpoints_per_slice=2)


async def _slices(client: ApiClient) -> list[Obj]:
    listed = await client.list(ENDPOINTSLICES, namespace=NS, label_selector=f"{SERVICE_NAME_LABEL}=web")
    return list(listed["items"])


async def _create_pod(client: ApiClient, name: str, ip: str, *, ready: bool = True) -> None:
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": name, "labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "x",
                                                        "ports": [{"name": "http", "containerPort": 8080}]}]}},
                        namespace=NS)
    pod = await client.get(PODS, name, namespace=NS)
    pod["status"] = {"phase": "Running", "podIP": ip,
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    await client.update(PODS, pod, subresource="status")


def _addresses(slices: list[Obj], ready: bool | None = None) -> set[str]:
    return {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]
            if ready is None or e["conditions"]["ready"] is ready}


async def test_slices_follow_pods_and_the_service_live(tmp_path: Path) -> None:
    async with running_controller(tmp_path, _endpointslice_controller, name="endpointslice") as client:
        service = _service()
        service["metadata"] = {"name": "web", "labels": {"tier": "front"}}
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", **service}, namespace=NS)

        async def placeholder() -> bool:
            slices = await _slices(client)
            return len(slices) == 1 and slices[0]["endpoints"] == []
        await eventually(placeholder, what="placeholder slice")

        for i in range(3):
            await _create_pod(client, f"p{i}", f"10.0.0.{i + 1}", ready=i != 2)

        async def three_in_two_slices() -> bool:
            slices = await _slices(client)
            return len(slices) == 2 and _addresses(slices) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"} and \
                _addresses(slices, ready=False) == {"10.0.0.3"}
        await eventually(three_in_two_slices, what="three endpoints in slices of two")
        slices = await _slices(client)
        assert all(s["metadata"]["ownerReferences"][0]["kind"] == "Service" for s in slices)

        await client.delete(PODS, "p0", namespace=NS, grace_period_seconds=0)

        async def two_left() -> bool:
            return _addresses(await _slices(client)) == {"10.0.0.2", "10.0.0.3"}
        await eventually(two_left, what="deleted pod leaves its slice")

        await client.delete(SERVICES, "web", namespace=NS)

        async def none_left() -> bool:
            return await _slices(client) == []
        await eventually(none_left, what="slices removed with the service")


async def test_slices_of_others_are_left_alone(tmp_path: Path) -> None:
    async with running_controller(tmp_path, _endpointslice_controller, name="endpointslice") as client:
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                       "spec": {"ports": [{"port": 80}]}}, namespace=NS)
        mine = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-manual", "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.9"]}], "ports": [{"port": 80}]}
        await client.create(ENDPOINTSLICES, mine, namespace=NS)
        await _create_pod(client, "p0", "10.0.0.1")
        # The selector-less Service gets no managed slice; the user's slice stays as written.
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other"},
                                       "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
                            namespace=NS)

        async def other_has_slice() -> bool:
            listed = await client.list(ENDPOINTSLICES, namespace=NS, label_selector=f"{SERVICE_NAME_LABEL}=other")
            return _addresses(listed["items"]) == {"10.0.0.1"}
        await eventually(other_has_slice, what="slice of the selector service")
        slices = await _slices(client)
        assert [s["metadata"]["name"] for s in slices] == ["web-manual"]
        assert _addresses(slices) == {"10.0.0.9"}
