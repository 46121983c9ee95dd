"""Persistence across apiserver restarts, on both stores (``cluster`` from tests/e2e/conftest.py).

A graceful restart and a ``SIGKILL`` must both keep every acknowledged write: same uid, same
resourceVersion, same content. resourceVersions keep growing afterwards, and a watch from a
resourceVersion seen before the restart replays exactly the writes made after it, in order,
through the official Python client and through a raw streaming GET alike.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from kubelab.testing import RunningApiServer
from tests.e2e.pyclient import NS, Watch, client, new_client


@pytest.fixture
def token() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(cluster: RunningApiServer) -> Iterator[Any]:
    """A client for the test's cluster; stays usable across restarts (same port)."""
    api = new_client(cluster)
    yield api
    api.close()


def labelled(name: str, token: str) -> Any:
    return client.V1ObjectMeta(name=name, labels={"run": token})


def config_map(name: str, token: str, value: str) -> Any:
    return client.V1ConfigMap(metadata=labelled(name, token), data={"v": value})


def create_one_of_each(api: Any, token: str) -> dict[str, Any]:
    """Objects of several kinds and scopes, by a label for the assertion messages."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    labels = {"app": token}
    pod_spec = client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])
    return {
        "namespace": core.create_namespace(client.V1Namespace(metadata=labelled(token, token))),
        "node": core.create_node(client.V1Node(metadata=labelled(token, token))),
        "configmap": core.create_namespaced_config_map(NS, config_map(token, token, "1")),
        "secret": core.create_namespaced_secret(
            NS, client.V1Secret(metadata=labelled(token, token), data={"k": "dg=="})),
        "pod": core.create_namespaced_pod(NS, client.V1Pod(metadata=labelled(token, token), spec=pod_spec)),
        "deployment": apps.create_namespaced_deployment(NS, client.V1Deployment(
            metadata=labelled(token, token),
            spec=client.V1DeploymentSpec(
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec)))),
        "lease": client.CoordinationV1Api(api).create_namespaced_lease(
            NS, client.V1Lease(metadata=labelled(token, token), spec=client.V1LeaseSpec(holder_identity="me"))),
    }


def read_back(api: Any, kind: str, name: str) -> Any:
    core = client.CoreV1Api(api)
    readers = {
        "namespace": lambda: core.read_namespace(name),
        "node": lambda: core.read_node(name),
        "configmap": lambda: core.read_namespaced_config_map(name, NS),
        "secret": lambda: core.read_namespaced_secret(name, NS),
        "pod": lambda: core.read_namespaced_pod(name, NS),
        "deployment": lambda: client.AppsV1Api(api).read_namespaced_deployment(name, NS),
        "lease": lambda: client.CoordinationV1Api(api).read_namespaced_lease(name, NS),
    }
    return readers[kind]()


def identity(obj: Any, api: Any) -> tuple[str, str, Any]:
    """(uid, resourceVersion, the serialised object) of a typed object."""
    return obj.metadata.uid, obj.metadata.resource_version, api.sanitize_for_serialization(obj)


def kill_hard(server: RunningApiServer) -> None:
    """SIGKILL the apiserver (no shutdown code runs) and wait until it is gone."""
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.alive:
        assert time.monotonic() < deadline, "the apiserver survived SIGKILL"
        time.sleep(0.02)


def test_graceful_restart_keeps_objects_with_same_uid_and_resource_version(
    cluster: RunningApiServer, api: Any, token: str
) -> None:
    created = create_one_of_each(api, token)
    before = {kind: identity(read_back(api, kind, token), api) for kind in created}
    cluster.restart()
    after = {kind: identity(read_back(api, kind, token), api) for kind in created}
    assert after == before
    assert {kind: uid_rv[:2] for kind, uid_rv in before.items()} == {
        kind: identity(obj, api)[:2] for kind, obj in created.items()}


def test_resource_versions_keep_growing_after_restart(
    cluster: RunningApiServer, api: Any, token: str
) -> None:
    core = client.CoreV1Api(api)
    last = core.create_namespaced_config_map(NS, config_map(f"{token}-a", token, "1")).metadata.resource_version
    cluster.restart()
    listed = core.list_namespaced_config_map(NS, label_selector=f"run={token}")
    assert int(listed.metadata.resource_version) >= int(last)
    after = core.create_namespaced_config_map(NS, config_map(f"{token}-b", token, "1")).metadata.resource_version
    assert int(after) > int(last)


@pytest.mark.parametrize("restart", [pytest.param("graceful", id="graceful"), pytest.param("sigkill", id="sigkill")])
def test_no_acknowledged_write_is_lost(
    restart: str, cluster: RunningApiServer, api: Any, token: str
) -> None:
    """Creates, updates and deletes that answered 2xx are all there after the restart."""
    core = client.CoreV1Api(api)
    expected: dict[str, tuple[str, dict[str, str]]] = {}
    for i in range(40):
        cm = core.create_namespaced_config_map(NS, config_map(f"{token}-{i:02d}", token, "1"))
        expected[cm.metadata.name] = (cm.metadata.resource_version, cm.data)
    for i in range(0, 40, 3):
        cm = core.patch_namespaced_config_map(f"{token}-{i:02d}", NS, {"data": {"v": "2"}})
        expected[cm.metadata.name] = (cm.metadata.resource_version, cm.data)
    for i in range(1, 40, 5):
        core.delete_namespaced_config_map(f"{token}-{i:02d}", NS)
        del expected[f"{token}-{i:02d}"]
    if restart == "sigkill":
        kill_hard(cluster)
    cluster.restart()
    listed = core.list_namespaced_config_map(NS, label_selector=f"run={token}")
    assert {cm.metadata.name: (cm.metadata.resource_version, cm.data) for cm in listed.items} == expected


def make_writes(core: Any, token: str) -> list[tuple[str, str, str]]:
    """create a, modify a, create b, delete a: (type, name, resourceVersion or "" if unknown)."""
    a1 = core.create_namespaced_config_map(NS, config_map(f"{token}-a", token, "1"))
    a2 = core.patch_namespaced_config_map(f"{token}-a", NS, {"data": {"v": "2"}})
    b1 = core.create_namespaced_config_map(NS, config_map(f"{token}-b", token, "1"))
    core.delete_namespaced_config_map(f"{token}-a", NS)
    return [
        ("ADDED", a1.metadata.name, a1.metadata.resource_version),
        ("MODIFIED", a2.metadata.name, a2.metadata.resource_version),
        ("ADDED", b1.metadata.name, b1.metadata.resource_version),
        ("DELETED", f"{token}-a", ""),
    ]


def python_client_watch(server: RunningApiServer, token: str, rv: str) -> list[tuple[str, str, str]]:
    api = new_client(server)
    try:
        core = client.CoreV1Api(api)
        return [
            (event["type"], event["object"].metadata.name, event["object"].metadata.resource_version)
            for event in Watch().stream(core.list_namespaced_config_map, NS, label_selector=f"run={token}",
                                              resource_version=rv, timeout_seconds=2)
        ]
    finally:
        api.close()


async def raw_watch(server: RunningApiServer, token: str, rv: str) -> list[tuple[str, str, str]]:
    """``GET …/configmaps?watch=true&resourceVersion=<rv>`` read line by line until the server ends it."""
    url = f"{server.url}/api/v1/namespaces/{NS}/configmaps"
    params = {"watch": "true", "resourceVersion": rv, "labelSelector": f"run={token}", "timeoutSeconds": "2"}
    events = []
    connector = aiohttp.TCPConnector(ssl=server.ssl_context())
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url, params=params) as response,
    ):
        assert response.status == 200
        async for line in response.content:
            if line.strip():
                event = orjson.loads(line)
                assert event["type"] != "ERROR", event
                meta = event["object"]["metadata"]
                events.append((event["type"], meta["name"], meta["resourceVersion"]))
    return events


@pytest.mark.parametrize("watcher", [pytest.param("python-client", id="python-client"),
                                     pytest.param("raw-http", id="raw-http")])
async def test_watch_from_resource_version_before_restart_replays_the_writes(
    watcher: str, cluster: RunningApiServer, api: Any, token: str
) -> None:
    core = client.CoreV1Api(api)
    recorded = core.list_namespaced_config_map(NS, label_selector=f"run={token}").metadata.resource_version
    writes = make_writes(core, token)
    cluster.restart()
    if watcher == "python-client":
        seen = python_client_watch(cluster, token, recorded)
    else:
        seen = await raw_watch(cluster, token, recorded)
    assert [(kind, name) for kind, name, _ in seen] == [(kind, name) for kind, name, _ in writes]
    assert [rv for _, _, rv in seen[:3]] == [rv for _, _, rv in writes[:3]]
    assert int(seen[3][2]) > int(seen[2][2])


def test_watch_resumes_across_restart_once_the_store_was_compacted(
    compactable_cluster: RunningApiServer, compact: Callable[[RunningApiServer], int], token: str
) -> None:
    cluster = compactable_cluster
    compact(cluster)  # as the apiserver's own compactor does every 5 minutes
    cluster.restart()
    api = new_client(cluster)
    try:
        core = client.CoreV1Api(api)
        recorded = core.list_namespaced_config_map(NS, label_selector=f"run={token}").metadata.resource_version
        writes = make_writes(core, token)
    finally:
        api.close()
    cluster.restart()
    seen = python_client_watch(cluster, token, recorded)
    assert [(kind, name) for kind, name, _ in seen] == [(kind, name) for kind, name, _ in writes]
