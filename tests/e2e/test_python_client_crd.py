"""The official ``kubernetes`` Python client against CustomResourceDefinitions and their objects.

Runs on both stores (``module_cluster`` from ``tests/e2e/conftest.py``). ``ApiextensionsV1Api``
creates, reads and deletes CRDs and the tests wait for ``Established`` as an operator would;
``CustomObjectsApi`` drives every verb on the objects: create, get, list (label selector), patch
(the client sends merge patches; JSON patch through ``_content_type``),
replace, delete, the ``status`` and ``scale`` subresources, and a watch through
``kubernetes.watch.Watch().stream(list_namespaced_custom_object, ...)``. One CRD (``Widget``)
serves the module; each test names its objects with a fresh token and labels them
``run=<token>``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubelab.testing import RunningApiServer
from tests.e2e.pyclient import NS, Watch, client, new_client

GROUP = "pyclient.example.com"
VERSION = "v1"
PLURAL = "widgets"
DEADLINE_SECONDS = 30.0


def crd_body(plural: str, kind: str, *, short: str) -> dict[str, Any]:
    """A namespaced CRD with status and scale subresources, a default and an enum."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": [short]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                         "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "string", "enum": ["small", "large"]},
                            "replicas": {"type": "integer", "minimum": 0, "default": 1},
                            "tags": {"type": "array", "items": {"type": "string"}},
                        }},
                        "status": {"type": "object", "properties": {
                            "phase": {"type": "string"},
                            "replicas": {"type": "integer"},
                        }},
                    },
                }},
            }],
        },
    }


def wait_established(ext: Any, name: str) -> Any:
    """Poll the CRD until its ``Established`` condition is ``True``; returns the CRD."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        crd = ext.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in crd.status.conditions or []}
        if conditions.get("Established") == "True":
            return crd
        assert time.monotonic() < deadline, f"{name} not Established: {conditions}"
        time.sleep(0.05)


def status_of(err: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    """The Kubernetes Status an ApiException carries."""
    status: dict[str, Any] = json.loads(err.value.body or "{}")
    assert status["kind"] == "Status" and status["code"] == err.value.status
    return status


def wait_gone(read: Any, *args: Any) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            read(*args)
        except ApiException as exc:
            assert exc.status == 404
            return
        assert time.monotonic() < deadline, f"{args} still present"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def module_api(module_cluster: RunningApiServer) -> Iterator[Any]:
    """A client of the module's apiserver, with the ``Widget`` CRD established."""
    api = new_client(module_cluster)
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(crd_body(PLURAL, "Widget", short="wdg"))
    wait_established(ext, f"{PLURAL}.{GROUP}")
    yield api
    api.close()


@pytest.fixture
def custom(module_api: Any) -> Any:
    return client.CustomObjectsApi(module_api)


@pytest.fixture
def token() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def widget(name: str, token: str, size: str = "small", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget",
            "metadata": {"name": name, "labels": {"run": token}}, "spec": {"size": size, **spec}}


def create(custom: Any, name: str, token: str, **spec: Any) -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, widget(name, token, **spec))
    return created


# ---- CustomResourceDefinitions -----------------------------------------------------------------
def test_crd_create_read_established_delete(module_api: Any, token: str) -> None:
    ext = client.ApiextensionsV1Api(module_api)
    plural = f"gizmos{token}"
    name = f"{plural}.{GROUP}"
    created = ext.create_custom_resource_definition(crd_body(plural, f"Gizmo{token}", short=f"gz{token}"))
    assert isinstance(created, client.V1CustomResourceDefinition)
    assert created.metadata.name == name and created.metadata.uid
    crd = wait_established(ext, name)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions["NamesAccepted"] == "True"
    assert crd.status.accepted_names.plural == plural
    assert crd.status.accepted_names.short_names == [f"gz{token}"]
    assert crd.status.stored_versions == [VERSION]
    assert name in [c.metadata.name for c in ext.list_custom_resource_definition().items]

    custom = client.CustomObjectsApi(module_api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": f"Gizmo{token}", "metadata": {"name": "g"},
        "spec": {"size": "large"}})
    ext.delete_custom_resource_definition(name)
    wait_gone(ext.read_custom_resource_definition, name)
    with pytest.raises(ApiException) as err:
        custom.list_namespaced_custom_object(GROUP, VERSION, NS, plural)
    assert err.value.status == 404


def test_malformed_crd_is_invalid(module_api: Any, token: str) -> None:
    ext = client.ApiextensionsV1Api(module_api)
    body = crd_body(f"bad{token}", "Bad", short=f"b{token}")
    body["metadata"]["name"] = f"other{token}.{GROUP}"
    with pytest.raises(ApiException) as err:
        ext.create_custom_resource_definition(body)
    status = status_of(err)
    assert status["reason"] == "Invalid"
    assert 'must be spec.names.plural+"."+spec.group' in status["message"]


# ---- custom objects ----------------------------------------------------------------------------
def test_create_get_defaults_and_metadata(custom: Any, token: str) -> None:
    created = create(custom, f"{token}-a", token)
    assert created["spec"] == {"size": "small", "replicas": 1}
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    got = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a")
    assert got["spec"] == created["spec"]
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_create_twice_is_already_exists(custom: Any, token: str) -> None:
    create(custom, f"{token}-a", token)
    with pytest.raises(ApiException) as err:
        create(custom, f"{token}-a", token)
    assert status_of(err)["reason"] == "AlreadyExists"


def test_invalid_object_names_the_field(custom: Any, token: str) -> None:
    with pytest.raises(ApiException) as err:
        create(custom, f"{token}-bad", token, size="huge")
    status = status_of(err)
    assert status["reason"] == "Invalid"
    assert 'spec.size: Unsupported value: "huge"' in status["message"]
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.size"]


def test_list_by_label_selector(custom: Any, token: str) -> None:
    for n in ("a", "b"):
        create(custom, f"{token}-{n}", token)
    create(custom, f"{token}-other", f"{token}x")
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector=f"run={token}")
    assert listed["kind"] == "WidgetList"
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == [f"{token}-a", f"{token}-b"]
    everywhere = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=f"run={token}")
    assert len(everywhere["items"]) == 2


def test_merge_patch_and_json_patch(custom: Any, token: str) -> None:
    create(custom, f"{token}-a", token, tags=["x"])
    merged = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a",
                                                   {"spec": {"size": "large"}})
    assert merged["spec"] == {"size": "large", "replicas": 1, "tags": ["x"]}
    assert merged["metadata"]["generation"] == 2
    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a", [
        {"op": "add", "path": "/spec/tags/-", "value": "y"},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
    ], _content_type="application/json-patch+json")
    assert patched["spec"] == {"size": "large", "replicas": 4, "tags": ["x", "y"]}
    assert patched["metadata"]["generation"] == 3


def test_replace_and_stale_replace_conflicts(custom: Any, token: str) -> None:
    created = create(custom, f"{token}-a", token)
    body = dict(created, spec={"size": "large", "replicas": 2})
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a", body)
    assert replaced["spec"] == {"size": "large", "replicas": 2}
    with pytest.raises(ApiException) as err:
        custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a", body)  # old version
    assert status_of(err)["reason"] == "Conflict"


def test_delete(custom: Any, token: str) -> None:
    create(custom, f"{token}-a", token)
    deleted = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a")
    # As kube-apiserver answers for custom resources: a Success Status naming what went.
    assert deleted["kind"] == "Status" and deleted["status"] == "Success"
    assert deleted["details"]["name"] == f"{token}-a" and deleted["details"]["kind"] == PLURAL
    wait_gone(custom.get_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, f"{token}-a")


def test_status_subresource(custom: Any, token: str) -> None:
    create(custom, f"{token}-a", token)
    patched = custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, f"{token}-a",
                                                           {"status": {"phase": "Ready", "replicas": 1}})
    assert patched["status"] == {"phase": "Ready", "replicas": 1}
    assert patched["metadata"]["generation"] == 1  # status changes do not bump the generation
    got = custom.get_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, f"{token}-a")
    assert got["status"]["phase"] == "Ready"
    # Through the main resource, status is ignored.
    main = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a",
                                                 {"status": {"phase": "Broken"}})
    assert main["status"]["phase"] == "Ready"
    replaced = custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, f"{token}-a",
                                                              dict(got, status={"phase": "Done"}))
    assert replaced["status"] == {"phase": "Done"}


def test_scale_subresource(custom: Any, token: str) -> None:
    create(custom, f"{token}-a", token, replicas=2)
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, NS, PLURAL, f"{token}-a")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    custom.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, PLURAL, f"{token}-a",
                                                {"spec": {"replicas": 5}})
    got = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a")
    assert got["spec"]["replicas"] == 5


def test_watch_sees_added_modified_deleted_in_order(custom: Any, token: str) -> None:
    create(custom, f"{token}-anchor", token)
    seen: list[tuple[str, str, str]] = []
    w = Watch()
    for event in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                          label_selector=f"run={token}", timeout_seconds=20):
        obj = event["object"]
        seen.append((event["type"], obj["metadata"]["name"], obj["spec"]["size"]))
        if len(seen) == 1:  # the watch is established: now change things
            create(custom, f"{token}-a", token)
        elif len(seen) == 2:
            custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a",
                                                  {"spec": {"size": "large"}})
        elif len(seen) == 3:
            custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{token}-a")
        else:
            w.stop()
    assert seen == [
        ("ADDED", f"{token}-anchor", "small"),
        ("ADDED", f"{token}-a", "small"),
        ("MODIFIED", f"{token}-a", "large"),
        ("DELETED", f"{token}-a", "large"),
    ]


def test_create_refused_while_the_crd_is_terminating(module_api: Any, token: str) -> None:
    ext = client.ApiextensionsV1Api(module_api)
    custom = client.CustomObjectsApi(module_api)
    plural, kind = f"doomed{token}", f"Doomed{token}"
    name = f"{plural}.{GROUP}"
    ext.create_custom_resource_definition(crd_body(plural, kind, short=f"dm{token}"))
    wait_established(ext, name)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "spec": {"size": "small"},
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, body)
    ext.delete_custom_resource_definition(name)

    def terminating() -> bool:
        crd = ext.read_custom_resource_definition(name)
        return any(c.type == "Terminating" and c.status == "True" for c in crd.status.conditions or [])

    deadline = time.monotonic() + DEADLINE_SECONDS
    while not terminating():
        assert time.monotonic() < deadline, "the CRD never became Terminating"
        time.sleep(0.05)
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, dict(body, metadata={"name": "late"}))
    status = status_of(err)
    assert status["code"] == 405 and status["reason"] == "MethodNotAllowed"
    assert status["message"] == "create not allowed while custom resource definition is terminating"
    # Releasing the last object lets the CRD go.
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, plural, "held", {"metadata": {"finalizers": None}})
    wait_gone(ext.read_custom_resource_definition, name)
