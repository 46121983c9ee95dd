"""ApiClient against the real apiserver: CRUD, error classes, patches, subresources, watch."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from machinery.client.rest import ApiClient, WatchEvent, resource_path
from machinery.errors import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
)
from machinery.resources import DEPLOYMENTS, LEASES, NAMESPACES, NODES, PODS
from tests.machinery.client.conftest import pod


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"resource": PODS, "namespace": "ns"}, "/api/v1/namespaces/ns/pods", id="core-list"),
        pytest.param({"resource": PODS, "namespace": "ns", "name": "p", "subresource": "status"},
                     "/api/v1/namespaces/ns/pods/p/status", id="core-subresource"),
        pytest.param({"resource": PODS}, "/api/v1/pods", id="all-namespaces"),
        pytest.param({"resource": NODES, "namespace": "ignored", "name": "n1"}, "/api/v1/nodes/n1",
                     id="cluster-scoped"),
        pytest.param({"resource": DEPLOYMENTS, "namespace": "a", "name": "d"},
                     "/apis/apps/v1/namespaces/a/deployments/d", id="group"),
        pytest.param({"resource": LEASES, "namespace": "kube-system"},
                     "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", id="dotted-group"),
    ],
)
def test_resource_path(kwargs: dict[str, Any], expected: str) -> None:
    assert resource_path(**kwargs) == expected


async def test_crud_round_trip(client: ApiClient) -> None:
    created = await client.create(PODS, pod("web", labels={"app": "web"}))
    assert created["metadata"]["uid"]
    got = await client.get(PODS, "web", namespace="default")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]

    listed = await client.list(PODS, namespace="default", label_selector="app=web")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["web"]
    assert listed["metadata"]["resourceVersion"]
    assert (await client.list(PODS, namespace="default", label_selector="app=other"))["items"] == []

    got["metadata"].setdefault("annotations", {})["a"] = "1"
    updated = await client.update(PODS, got)
    assert updated["metadata"]["annotations"]["a"] == "1"

    patched = await client.patch(PODS, "web", {"metadata": {"labels": {"tier": "front"}}}, namespace="default")
    assert patched["metadata"]["labels"] == {"app": "web", "tier": "front"}
    patched = await client.patch(PODS, "web", [{"op": "add", "path": "/metadata/labels/x", "value": "y"}],
                                 namespace="default", patch_type="json")
    assert patched["metadata"]["labels"]["x"] == "y"

    await client.delete(PODS, "web", namespace="default", grace_period_seconds=0)
    with pytest.raises(NotFoundError):
        await client.get(PODS, "web", namespace="default")


async def test_list_paginates(client: ApiClient) -> None:
    for i in range(5):
        await client.create(PODS, pod(f"p{i}"))
    first = await client.list(PODS, namespace="default", limit=2)
    assert len(first["items"]) == 2 and first["metadata"]["continue"]
    rest = await client.list(PODS, namespace="default", continue_token=first["metadata"]["continue"])
    assert len(rest["items"]) == 3


async def test_error_classes(client: ApiClient) -> None:
    created = await client.create(PODS, pod("x"))
    with pytest.raises(AlreadyExistsError):
        await client.create(PODS, pod("x"))
    with pytest.raises(NotFoundError):
        await client.get(PODS, "nope", namespace="default")
    stale = dict(created, metadata=dict(created["metadata"], resourceVersion="1"))
    with pytest.raises(ConflictError):
        await client.update(PODS, stale)
    with pytest.raises(ConflictError):
        await client.delete(PODS, "x", namespace="default", preconditions={"uid": "not-the-uid"})
    with pytest.raises(ApiError) as info:
        await client.request("GET", "/api/v1/nonsense")
    assert info.value.code == 404


async def test_connection_refused_is_service_unavailable() -> None:
    async with ApiClient("http://127.0.0.1:1", timeout=2) as c:
        with pytest.raises(ServiceUnavailableError):
            await c.list(NAMESPACES)
        with pytest.raises(ServiceUnavailableError):
            async for _ in c.watch(NAMESPACES):
                pass


async def test_bind_sets_node_name(client: ApiClient) -> None:
    await client.create(PODS, pod("b"))
    await client.bind("default", "b", "node-1")
    assert (await client.get(PODS, "b", namespace="default"))["spec"]["nodeName"] == "node-1"


async def test_watch_sees_added_modified_deleted(client: ApiClient) -> None:
    start = (await client.list(PODS, namespace="default"))["metadata"]["resourceVersion"]
    events: list[WatchEvent] = []

    async def collect() -> None:
        async for event in client.watch(PODS, namespace="default", resource_version=start, timeout_seconds=10):
            events.append(event)
            if event.type == "DELETED":
                return

    watcher = asyncio.create_task(collect())
    await client.create(PODS, pod("w"))
    await client.patch(PODS, "w", {"metadata": {"labels": {"k": "v"}}}, namespace="default")
    await client.delete(PODS, "w", namespace="default", grace_period_seconds=0)
    await asyncio.wait_for(watcher, 5)
    kinds = [e.type for e in events if e.type != "BOOKMARK"]
    assert kinds[0] == "ADDED" and kinds[-1] == "DELETED" and "MODIFIED" in kinds
    assert all(e.object["metadata"]["name"] == "w" for e in events if e.type != "BOOKMARK")


async def test_watch_ends_when_server_closes_stream(client: ApiClient) -> None:
    async def drain() -> int:
        count = 0
        async for _ in client.watch(NAMESPACES, timeout_seconds=1):
            count += 1
        return count

    assert await asyncio.wait_for(drain(), 5) == 4  # the 4 bootstrap namespaces, then the end


async def test_watch_reads_lines_longer_than_64k(client: ApiClient) -> None:
    big = "x" * 200_000
    await client.create(PODS, pod("big", annotations={"big": big}))
    async with contextlib.aclosing(client.watch(PODS, namespace="default", timeout_seconds=1)) as stream:
        async for event in stream:
            assert event.object["metadata"]["annotations"]["big"] == big
            break


@pytest.mark.parametrize(
    ("patch_type", "patch", "kwargs"),
    [
        pytest.param("merge", {"metadata": {"labels": {"k": "v"}}}, {}, id="merge"),
        pytest.param("strategic", {"metadata": {"labels": {"k": "v"}}}, {}, id="strategic"),
        pytest.param("json", [{"op": "add", "path": "/metadata/labels", "value": {"k": "v"}}], {}, id="json"),
        pytest.param("apply", {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": "pt", "namespace": "default", "labels": {"k": "v"}}},
                     {"field_manager": "tests", "force": True}, id="server-side-apply"),
    ],
)
async def test_patch_types(client: ApiClient, patch_type: str, patch: Any, kwargs: dict[str, Any]) -> None:
    await client.create(PODS, pod("pt"))
    patched = await client.patch(PODS, "pt", patch, namespace="default", patch_type=patch_type, **kwargs)
    assert patched["metadata"]["labels"] == {"k": "v"}


async def test_status_subresource_update(client: ApiClient) -> None:
    created = await client.create(PODS, pod("st"))
    created["status"] = {"phase": "Running"}
    updated = await client.update(PODS, created, subresource="status")
    assert updated["status"]["phase"] == "Running"


async def test_qps_limits_request_rate(client: ApiClient) -> None:
    limited = ApiClient(client.server, ssl_context=client._ssl, qps=20, burst=1)
    async with limited:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(5):
            await limited.list(NAMESPACES)
        assert loop.time() - t0 >= 0.19
