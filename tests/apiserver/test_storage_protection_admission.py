"""StorageObjectInUseProtection admission: claims and volumes carry their protection finalizer from
the moment they are created; removing it later (what the protection controllers do) sticks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.apiserver.conftest import Api

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
CLAIMS = "/api/v1/namespaces/default/persistentvolumeclaims"
VOLUMES = "/api/v1/persistentvolumes"
CLAIM_SPEC = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
              "storageClassName": "manual"}
VOLUME_SPEC = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/v"}}
KINDS = [
    pytest.param(CLAIMS, CLAIM_SPEC, PVC_PROTECTION, id="claim"),
    pytest.param(VOLUMES, VOLUME_SPEC, PV_PROTECTION, id="volume"),
]


@pytest.mark.parametrize(("collection", "spec", "finalizer"), KINDS)
@pytest.mark.parametrize(("given", "expected"), [
    pytest.param(None, ["{f}"], id="none"),
    pytest.param(["example.com/keep"], ["example.com/keep", "{f}"], id="appended"),
    pytest.param(["{f}", "example.com/keep"], ["{f}", "example.com/keep"], id="present-once"),
])
async def test_create_adds_the_finalizer(api: Api, collection: str, spec: dict[str, Any], finalizer: str,
                                         given: list[str] | None, expected: list[str]) -> None:
    meta: dict[str, Any] = {"name": "data"}
    if given is not None:
        meta["finalizers"] = [f.format(f=finalizer) for f in given]
    status, created = await api.request("POST", collection, {"metadata": meta, "spec": spec})
    assert status == 201, created
    want = [f.format(f=finalizer) for f in expected]
    assert created["metadata"]["finalizers"] == want
    _, stored = await api.request("GET", f"{collection}/data")
    assert stored["metadata"]["finalizers"] == want


@pytest.mark.parametrize(("collection", "spec", "finalizer"), KINDS)
async def test_dry_run_create_shows_the_finalizer(api: Api, collection: str, spec: dict[str, Any],
                                                  finalizer: str) -> None:
    status, created = await api.request("POST", f"{collection}?dryRun=All", {"metadata": {"name": "dry"},
                                                                             "spec": spec})
    assert status == 201, created
    assert created["metadata"]["finalizers"] == [finalizer]


@pytest.mark.parametrize(("collection", "spec", "finalizer"), KINDS)
async def test_removing_the_finalizer_lets_the_delete_finish(api: Api, collection: str, spec: dict[str, Any],
                                                             finalizer: str) -> None:
    status, created = await api.request("POST", collection, {"metadata": {"name": "gone"}, "spec": spec})
    assert status == 201, created
    item = f"{collection}/gone"
    status, pending = await api.request("DELETE", item)
    assert status == 200 and pending["metadata"]["deletionTimestamp"], pending
    assert pending["metadata"]["finalizers"] == [finalizer]
    # What the protection controller does once nothing uses the object.
    status, body = await api.request("PATCH", item, {"metadata": {"finalizers": None}},
                                     content_type="application/merge-patch+json")
    assert status == 200, body
    status, _ = await api.request("GET", item)
    assert status == 404


async def test_updates_do_not_add_it_back(api: Api) -> None:
    status, created = await api.request("POST", CLAIMS, {"metadata": {"name": "kept"}, "spec": CLAIM_SPEC})
    assert status == 201, created
    created["metadata"]["finalizers"] = []
    created["metadata"]["labels"] = {"tier": "db"}
    status, updated = await api.request("PUT", f"{CLAIMS}/kept", created)
    assert status == 200, updated
    assert not updated["metadata"].get("finalizers")
    assert updated["metadata"]["labels"] == {"tier": "db"}
