"""The official ``kubernetes`` Python client (v37, strict pydantic models) against kubelab.

Runs on both stores (``module_cluster`` / ``cluster`` from ``tests/e2e/conftest.py``). CRUD is
table-driven over the kinds people script most: every call goes through the client's typed
API classes and every answer must deserialize into the client's models. Watch tests cover
live order, resuming from a resourceVersion and 410 for a compacted one. Each test names its
objects with a fresh token and labels them ``run=<token>``, so tests sharing one apiserver
never see each other's objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubelab.testing import RunningApiServer
from tests.e2e.pyclient import NS, Watch, client, new_client


@pytest.fixture
def api_client(module_cluster: RunningApiServer) -> Iterator[Any]:
    api = new_client(module_cluster)
    yield api
    api.close()


@pytest.fixture
def token() -> str:
    """A fresh name stem and label value for this test's objects."""
    return f"t{uuid.uuid4().hex[:10]}"


def meta(name: str, token: str) -> Any:
    return client.V1ObjectMeta(name=name, labels={"run": token})


def pod_spec() -> Any:
    return client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])


def deployment(name: str, token: str, replicas: int = 1) -> Any:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=meta(name, token),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec()),
        ),
    )


@dataclass(frozen=True)
class Kind:
    """How the client spells one kind: API class, method stem, scope, model and a body."""

    api: Callable[[client.ApiClient], Any]
    stem: str
    namespaced: bool
    model: Any
    body: Callable[[str, str], Any]
    name_label: bool = False
    """Namespaces get the immutable ``kubernetes.io/metadata.name`` label from the server."""

    def labels(self, name: str, **labels: str) -> dict[str, str]:
        """The labels the server returns for object ``name`` created with ``labels``."""
        return {**labels, "kubernetes.io/metadata.name": name} if self.name_label else labels

    def call(self, api_client: Any, verb: str, *args: Any, **kwargs: Any) -> Any:
        """``<verb>_namespaced_<stem>(..., namespace, ...)`` or ``<verb>_<stem>(...)``."""
        api = self.api(api_client)
        if self.namespaced:
            method = getattr(api, f"{verb}_namespaced_{self.stem}")
            if verb in ("create", "list"):
                return method(NS, *args, **kwargs)
            name, *rest = args
            return method(name, NS, *rest, **kwargs)
        return getattr(api, f"{verb}_{self.stem}")(*args, **kwargs)


KINDS = [
    pytest.param(
        Kind(client.CoreV1Api, "config_map", True, client.V1ConfigMap,
             lambda n, t: client.V1ConfigMap(metadata=meta(n, t), data={"k": "v"})),
        id="configmap",
    ),
    pytest.param(
        Kind(client.CoreV1Api, "secret", True, client.V1Secret,
             lambda n, t: client.V1Secret(metadata=meta(n, t), type="Opaque", data={"password": "czNjcmV0"})),
        id="secret",
    ),
    pytest.param(
        Kind(client.CoreV1Api, "service", True, client.V1Service,
             lambda n, t: client.V1Service(
                 metadata=meta(n, t),
                 spec=client.V1ServiceSpec(selector={"app": n},
                                           ports=[client.V1ServicePort(port=80, target_port=8080)]))),
        id="service",
    ),
    pytest.param(Kind(client.AppsV1Api, "deployment", True, client.V1Deployment, deployment), id="deployment"),
    pytest.param(
        Kind(client.CoreV1Api, "namespace", False, client.V1Namespace,
             lambda n, t: client.V1Namespace(metadata=meta(n, t)), name_label=True),
        id="namespace",
    ),
    pytest.param(
        Kind(client.CoreV1Api, "pod", True, client.V1Pod,
             lambda n, t: client.V1Pod(metadata=meta(n, t), spec=pod_spec())),
        id="pod",
    ),
    pytest.param(
        Kind(client.CoreV1Api, "node", False, client.V1Node, lambda n, t: client.V1Node(metadata=meta(n, t))),
        id="node",
    ),
    pytest.param(
        Kind(client.CoordinationV1Api, "lease", True, client.V1Lease,
             lambda n, t: client.V1Lease(metadata=meta(n, t),
                                         spec=client.V1LeaseSpec(holder_identity="me", lease_duration_seconds=15))),
        id="lease",
    ),
    pytest.param(
        Kind(client.CoreV1Api, "event", True, client.CoreV1Event,
             lambda n, t: client.CoreV1Event(
                 metadata=meta(n, t), reason="Tested", message="hello", type="Normal",
                 involved_object=client.V1ObjectReference(kind="Pod", name="p", namespace=NS))),
        id="event",
    ),
]


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or "{}")
    return body


def create(kind: Kind, api_client: Any, token: str, suffix: str = "a") -> Any:
    return kind.call(api_client, "create", kind.body(f"{token}-{suffix}", token))


# ---- CRUD, per kind -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_create_returns_typed_object_with_server_metadata(
    kind: Kind, api_client: Any, token: str
) -> None:
    created = create(kind, api_client, token)
    assert isinstance(created, kind.model)
    assert created.metadata.name == f"{token}-a"
    assert created.metadata.labels == kind.labels(f"{token}-a", run=token)
    assert created.metadata.uid
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.namespace == (NS if kind.namespaced else None)


@pytest.mark.parametrize("kind", KINDS)
def test_read_returns_the_created_object(kind: Kind, api_client: Any, token: str) -> None:
    created = create(kind, api_client, token)
    read = kind.call(api_client, "read", f"{token}-a")
    assert isinstance(read, kind.model)
    assert (read.metadata.uid, read.metadata.resource_version) == (
        created.metadata.uid, created.metadata.resource_version)


@pytest.mark.parametrize("kind", KINDS)
def test_list_filters_by_label_selector(kind: Kind, api_client: Any, token: str) -> None:
    create(kind, api_client, token, "a")
    create(kind, api_client, token, "b")
    kind.call(api_client, "patch", f"{token}-b", {"metadata": {"labels": {"pick": "yes"}}})
    listed = kind.call(api_client, "list", label_selector=f"run={token},pick=yes")
    assert all(isinstance(item, kind.model) for item in listed.items)
    assert [item.metadata.name for item in listed.items] == [f"{token}-b"]
    assert int(listed.metadata.resource_version) > 0


PATCHES = [
    pytest.param("application/strategic-merge-patch+json", {"metadata": {"labels": {"patched": "yes"}}},
                 id="strategic"),
    pytest.param("application/merge-patch+json", {"metadata": {"labels": {"patched": "yes"}}}, id="merge"),
    pytest.param("application/json-patch+json",
                 [{"op": "add", "path": "/metadata/labels/patched", "value": "yes"}], id="json"),
    # Without _content_type the client sends a dict as strategic merge and a list as JSON patch.
    pytest.param(None, {"metadata": {"labels": {"patched": "yes"}}}, id="default-dict"),
    pytest.param(None, [{"op": "add", "path": "/metadata/labels/patched", "value": "yes"}], id="default-list"),
]


@pytest.mark.parametrize(("content_type", "patch"), PATCHES)
@pytest.mark.parametrize("kind", KINDS)
def test_patch_adds_a_label(
    kind: Kind, content_type: str | None, patch: Any, api_client: Any, token: str
) -> None:
    created = create(kind, api_client, token)
    options = {"_content_type": content_type} if content_type else {}
    patched = kind.call(api_client, "patch", f"{token}-a", patch, **options)
    assert isinstance(patched, kind.model)
    expected = kind.labels(f"{token}-a", run=token, patched="yes")
    assert patched.metadata.labels == expected
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    assert kind.call(api_client, "read", f"{token}-a").metadata.labels == expected


@pytest.mark.parametrize("kind", KINDS)
def test_replace_stores_the_new_object(kind: Kind, api_client: Any, token: str) -> None:
    current = create(kind, api_client, token)
    current.metadata.labels["replaced"] = "yes"
    replaced = kind.call(api_client, "replace", f"{token}-a", current)
    assert isinstance(replaced, kind.model)
    assert replaced.metadata.uid == current.metadata.uid
    assert replaced.metadata.labels == kind.labels(f"{token}-a", run=token, replaced="yes")
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)


@pytest.mark.parametrize("kind", KINDS)
def test_replace_with_stale_resource_version_is_conflict(
    kind: Kind, api_client: Any, token: str
) -> None:
    stale = create(kind, api_client, token)
    kind.call(api_client, "patch", f"{token}-a", {"metadata": {"labels": {"first": "yes"}}})
    stale.metadata.labels["second"] = "yes"
    with pytest.raises(ApiException) as info:
        kind.call(api_client, "replace", f"{token}-a", stale)
    assert (info.value.status, status_of(info.value)["reason"]) == (409, "Conflict")


@pytest.mark.parametrize("kind", KINDS)
def test_create_twice_is_already_exists(kind: Kind, api_client: Any, token: str) -> None:
    create(kind, api_client, token)
    with pytest.raises(ApiException) as info:
        create(kind, api_client, token)
    assert (info.value.status, status_of(info.value)["reason"]) == (409, "AlreadyExists")


@pytest.mark.parametrize("kind", KINDS)
def test_read_missing_is_not_found(kind: Kind, api_client: Any, token: str) -> None:
    with pytest.raises(ApiException) as info:
        kind.call(api_client, "read", f"{token}-missing")
    assert (info.value.status, status_of(info.value)["reason"]) == (404, "NotFound")


@pytest.mark.parametrize("kind", [p for p in KINDS if p.id != "namespace"])
def test_delete_removes_the_object(kind: Kind, api_client: Any, token: str) -> None:
    create(kind, api_client, token)
    kind.call(api_client, "delete", f"{token}-a")
    with pytest.raises(ApiException) as info:
        kind.call(api_client, "read", f"{token}-a")
    assert info.value.status == 404


def test_delete_namespace_starts_termination(api_client: Any, token: str) -> None:
    """The namespace lingers as Terminating until its finalizer is removed (by the namespace
    controller, which is not part of the apiserver process)."""
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=meta(f"{token}-a", token)))
    core.delete_namespace(f"{token}-a")
    read = core.read_namespace(f"{token}-a")
    assert read.metadata.deletion_timestamp is not None
    assert read.spec.finalizers == ["kubernetes"]
    assert read.status.phase == "Terminating"


def test_secret_data_round_trips_base64(api_client: Any, token: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(NS, client.V1Secret(metadata=meta(f"{token}-a", token),
                                                      string_data={"password": "s3cret"}))
    assert core.read_namespaced_secret(f"{token}-a", NS).data == {"password": "czNjcmV0"}


# ---- patch semantics and the scale subresource ---------------------------------------------

def two_container_deployment(token: str) -> Any:
    body = deployment(f"{token}-a", token)
    body.spec.template.spec.containers = [
        client.V1Container(name="app", image="busybox"), client.V1Container(name="side", image="busybox")]
    return body


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        pytest.param("application/strategic-merge-patch+json", [("app", "nginx"), ("side", "busybox")],
                     id="strategic-merges-by-name"),
        pytest.param("application/merge-patch+json", [("app", "nginx")], id="merge-replaces-list"),
    ],
)
def test_container_list_patch(
    content_type: str, expected: list[tuple[str, str]], api_client: Any, token: str
) -> None:
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(NS, two_container_deployment(token))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}}}
    patched = apps.patch_namespaced_deployment(f"{token}-a", NS, patch, _content_type=content_type)
    assert [(c.name, c.image) for c in patched.spec.template.spec.containers] == expected


def test_read_deployment_scale(api_client: Any, token: str) -> None:
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(NS, deployment(f"{token}-a", token, replicas=2))
    scale = apps.read_namespaced_deployment_scale(f"{token}-a", NS)
    assert isinstance(scale, client.V1Scale)
    assert (scale.metadata.name, scale.spec.replicas) == (f"{token}-a", 2)


def test_patch_deployment_scale_sets_replicas(api_client: Any, token: str) -> None:
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(NS, deployment(f"{token}-a", token))
    scale = apps.patch_namespaced_deployment_scale(f"{token}-a", NS, {"spec": {"replicas": 3}})
    assert isinstance(scale, client.V1Scale)
    assert scale.spec.replicas == 3
    assert apps.read_namespaced_deployment(f"{token}-a", NS).spec.replicas == 3


# ---- watch ---------------------------------------------------------------------------------

def config_map(name: str, token: str, value: str) -> Any:
    return client.V1ConfigMap(metadata=meta(name, token), data={"v": value})


def test_watch_sees_added_modified_deleted_in_order(api_client: Any, token: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(NS, config_map(f"{token}-anchor", token, "0"))
    seen: list[tuple[str, str, dict[str, str]]] = []
    versions: list[int] = []
    w = Watch()
    for event in w.stream(core.list_namespaced_config_map, NS, label_selector=f"run={token}", timeout_seconds=10):
        assert isinstance(event["object"], client.V1ConfigMap)
        seen.append((event["type"], event["object"].metadata.name, event["object"].data))
        versions.append(int(event["object"].metadata.resource_version))
        if len(seen) == 1:  # the watch is established: now change things
            core.create_namespaced_config_map(NS, config_map(f"{token}-a", token, "1"))
        elif len(seen) == 2:
            core.patch_namespaced_config_map(f"{token}-a", NS, {"data": {"v": "2"}})
        elif len(seen) == 3:
            core.delete_namespaced_config_map(f"{token}-a", NS)
        else:
            w.stop()
    assert seen == [
        ("ADDED", f"{token}-anchor", {"v": "0"}),
        ("ADDED", f"{token}-a", {"v": "1"}),
        ("MODIFIED", f"{token}-a", {"v": "2"}),
        ("DELETED", f"{token}-a", {"v": "2"}),
    ]
    assert versions[1:] == sorted(set(versions[1:]))


def test_watch_resumed_from_resource_version_sees_exactly_the_missed_events(
    api_client: Any, token: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(NS, config_map(f"{token}-a", token, "1"))
    first = Watch()
    for _ in first.stream(core.list_namespaced_config_map, NS, label_selector=f"run={token}", timeout_seconds=10):
        first.stop()  # drop the stream after the first event
    resume_from = first.resource_version
    core.patch_namespaced_config_map(f"{token}-a", NS, {"data": {"v": "2"}})
    core.create_namespaced_config_map(NS, config_map(f"{token}-b", token, "1"))
    core.delete_namespaced_config_map(f"{token}-a", NS)
    second = Watch()
    seen = [
        (event["type"], event["object"].metadata.name)
        for event in second.stream(core.list_namespaced_config_map, NS, label_selector=f"run={token}",
                                   resource_version=resume_from, timeout_seconds=1)
    ]
    assert seen == [("MODIFIED", f"{token}-a"), ("ADDED", f"{token}-b"), ("DELETED", f"{token}-a")]


def test_watch_from_compacted_resource_version_is_gone(
    compactable_cluster: RunningApiServer, compact: Callable[[RunningApiServer], int], token: str
) -> None:
    """History below the compacted revision is gone: the client raises ApiException 410."""
    cluster = compactable_cluster
    api = new_client(cluster)
    core = client.CoreV1Api(api)
    old = core.create_namespaced_config_map(NS, config_map(f"{token}-a", token, "1")).metadata.resource_version
    for value in ("2", "3"):
        core.patch_namespaced_config_map(f"{token}-a", NS, {"data": {"v": value}})
    api.close()
    compacted = compact(cluster)
    assert compacted > int(old)
    cluster.restart()
    api = new_client(cluster)
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as info:
        for _ in Watch().stream(core.list_namespaced_config_map, NS, resource_version=old, timeout_seconds=5):
            pass
    api.close()
    assert info.value.status == 410
    assert str(info.value.reason).startswith("Expired: ")
