"""Storage keys follow Kubernetes' layout; the watch cache routes them; earlier layouts migrate.

* Every stored built-in kind has the key Kubernetes gives it (its storage factory's
  ``SpecialDefaultResourcePrefixes``, the lowercased plural otherwise, ``<group>/<plural>`` from
  the apiextensions server).
* The watch cache's router sends each key to its resource, whatever the namespace is called.
* A store written in the earlier layout (``/registry/deployments.apps/…``) is moved at apiserver
  start, on SQLite and on real etcd: every object is served, the old keys are gone.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import orjson
import pytest

from apiserver.keylayout import LAYOUT_KEY, LAYOUT_VERSION, earlier_roots, migrate_key_layout
from apiserver.storage import open_storage
from apiserver.storage.interface import Storage
from apiserver.storage.memory import MemoryStorage
from apiserver.watchcache import KeyRouter, WatchCache, WatchCaches
from machinery.resources import PODS, RESOURCES, ResourceInfo
from tests.apiserver.conftest import embedded_api
from tests.etcd_server import EtcdServer

# (group, plural) -> the key of an object named "web" (in namespace "default" when namespaced),
# as a Kubernetes apiserver with the default --etcd-prefix=/registry writes it.
KUBERNETES_KEYS: dict[tuple[str, str], str] = {
    ("", "namespaces"): "/registry/namespaces/web",
    ("", "pods"): "/registry/pods/default/web",
    ("", "services"): "/registry/services/specs/default/web",
    ("", "endpoints"): "/registry/services/endpoints/default/web",
    ("", "nodes"): "/registry/minions/web",
    ("", "configmaps"): "/registry/configmaps/default/web",
    ("", "secrets"): "/registry/secrets/default/web",
    ("", "serviceaccounts"): "/registry/serviceaccounts/default/web",
    ("", "events"): "/registry/events/default/web",
    ("apps", "deployments"): "/registry/deployments/default/web",
    ("apps", "replicasets"): "/registry/replicasets/default/web",
    ("apps", "statefulsets"): "/registry/statefulsets/default/web",
    ("apps", "daemonsets"): "/registry/daemonsets/default/web",
    ("apps", "controllerrevisions"): "/registry/controllerrevisions/default/web",
    ("", "replicationcontrollers"): "/registry/controllers/default/web",
    ("batch", "jobs"): "/registry/jobs/default/web",
    ("batch", "cronjobs"): "/registry/cronjobs/default/web",
    ("autoscaling", "horizontalpodautoscalers"): "/registry/horizontalpodautoscalers/default/web",
    ("coordination.k8s.io", "leases"): "/registry/leases/default/web",
    ("discovery.k8s.io", "endpointslices"): "/registry/endpointslices/default/web",
    ("networking.k8s.io", "networkpolicies"): "/registry/networkpolicies/default/web",
    ("networking.k8s.io", "ingresses"): "/registry/ingress/default/web",
    ("networking.k8s.io", "ingressclasses"): "/registry/ingressclasses/web",
    ("", "persistentvolumes"): "/registry/persistentvolumes/web",
    ("", "persistentvolumeclaims"): "/registry/persistentvolumeclaims/default/web",
    ("", "resourcequotas"): "/registry/resourcequotas/default/web",
    ("", "limitranges"): "/registry/limitranges/default/web",
    ("", "podtemplates"): "/registry/podtemplates/default/web",
    ("storage.k8s.io", "storageclasses"): "/registry/storageclasses/web",
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"):
        "/registry/mutatingwebhookconfigurations/web",
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"):
        "/registry/validatingwebhookconfigurations/web",
    ("apiextensions.k8s.io", "customresourcedefinitions"):
        "/registry/apiextensions.k8s.io/customresourcedefinitions/web",
    ("rbac.authorization.k8s.io", "clusterroles"): "/registry/clusterroles/web",
    ("rbac.authorization.k8s.io", "clusterrolebindings"): "/registry/clusterrolebindings/web",
    ("rbac.authorization.k8s.io", "roles"): "/registry/roles/default/web",
    ("rbac.authorization.k8s.io", "rolebindings"): "/registry/rolebindings/default/web",
}


def stored_builtins() -> list[ResourceInfo]:
    """Built-in kinds kept in the store (the review kinds are answered by handlers, the metrics
    are read from kubelets)."""
    seen: dict[str, ResourceInfo] = {}
    for r in RESOURCES:
        if "get" in r.verbs and r.group != "metrics.k8s.io":
            seen.setdefault(r.group_resource, r)
    return list(seen.values())


def widgets(namespaced: bool = True, plural: str = "widgets") -> ResourceInfo:
    """A custom resource as the apiextensions code registers it."""
    return ResourceInfo("example.com", "v1", "Widget", plural, "widget", namespaced,
                        storage_root=f"example.com/{plural}")


@pytest.mark.parametrize(("group", "plural"), sorted(KUBERNETES_KEYS))
def test_every_built_in_kind_has_kubernetes_key(group: str, plural: str) -> None:
    resource = next((r for r in RESOURCES if (r.group, r.plural) == (group, plural)), None)
    assert resource is not None, f"{plural}.{group} is not served"
    expected = KUBERNETES_KEYS[(group, plural)]
    assert resource.storage_key("default" if resource.namespaced else None, "web") == expected
    assert expected.startswith(resource.storage_prefix())
    if resource.namespaced:
        assert expected.startswith(resource.storage_prefix("default"))


def test_no_stored_built_in_kind_is_left_out_of_the_table() -> None:
    # A new kind must be checked against Kubernetes' storage factory and added above.
    missing = [r.group_resource for r in stored_builtins() if (r.group, r.plural) not in KUBERNETES_KEYS]
    assert missing == []


def test_custom_resources_live_under_their_group_and_plural() -> None:
    assert widgets().storage_key("default", "w") == "/registry/example.com/widgets/default/w"
    assert widgets(namespaced=False).storage_key(None, "w") == "/registry/example.com/widgets/w"


def routing_caches() -> WatchCaches:
    caches = WatchCaches(RESOURCES, MemoryStorage(), capacity=10)
    caches.add(widgets())
    caches.add(widgets(namespaced=False, plural="gadgets"))
    return caches


ROUTED_RESOURCES = [*stored_builtins(), widgets(), widgets(namespaced=False, plural="gadgets")]


@pytest.mark.parametrize("resource", ROUTED_RESOURCES, ids=lambda r: r.group_resource)
@pytest.mark.parametrize("namespace", ["default", "specs", "endpoints", "services", "widgets"])
@pytest.mark.parametrize("name", ["web", "specs", "endpoints"])
def test_watch_cache_routes_each_key_to_its_resource(resource: ResourceInfo, namespace: str, name: str) -> None:
    caches = routing_caches()
    key = resource.storage_key(namespace if resource.namespaced else None, name)
    routed = caches.router.route(key)
    assert routed is not None and routed.resource.group_resource == resource.group_resource, key


@pytest.mark.parametrize("key", [
    "/registry/services/default/web",  # a Service in the earlier layout: not a key of any resource
    "/registry/services/other/default/web",
    "/registry/services/specs",
    "/registry/deployments.apps/default/web",
    "/registry/example.com/sprockets/default/web",
    "/registry/example.com",
    "/registry/",
    "/kubelab/storage-layout",
    "/other/pods/default/web",
])
def test_keys_outside_every_root_route_nowhere(key: str) -> None:
    assert routing_caches().router.route(key) is None


def test_router_refuses_roots_that_would_shadow_each_other() -> None:
    router = KeyRouter()
    pods = WatchCache(PODS)
    router.add("services/specs", pods)
    with pytest.raises(ValueError, match="first segment"):
        router.add("services", pods)
    router.add("pods", pods)
    with pytest.raises(ValueError, match="shadowed"):
        router.add("pods/extra", pods)
    with pytest.raises(ValueError, match="one or two segments"):
        router.add("a/b/c", pods)
    with pytest.raises(ValueError, match="already holds pods"):
        router.add("pods", WatchCache(PODS))
    router.add("pods", pods)  # the same cache again: a no-op


def test_removed_custom_resource_stops_routing() -> None:
    caches = routing_caches()
    key = widgets().storage_key("default", "w")
    caches.remove(widgets())
    assert caches.router.route(key) is None
    assert caches.router.route("/registry/example.com/gadgets/g") is not None


# ---- migration ---------------------------------------------------------------------------------

def _obj(kind: str, name: str, namespace: str | None = None, api_version: str = "v1") -> bytes:
    meta: dict[str, str] = {"name": name, "uid": f"uid-{kind}-{name}"}
    if namespace:
        meta["namespace"] = namespace
    return orjson.dumps({"apiVersion": api_version, "kind": kind, "metadata": meta})


# earlier key -> current key, for objects the tests write in the earlier layout
EARLIER: dict[str, tuple[str, bytes]] = {
    "/registry/deployments.apps/default/web": (
        "/registry/deployments/default/web", _obj("Deployment", "web", "default", "apps/v1")),
    "/registry/replicasets.apps/default/web-1": (
        "/registry/replicasets/default/web-1", _obj("ReplicaSet", "web-1", "default", "apps/v1")),
    "/registry/services/default/web": ("/registry/services/specs/default/web", _obj("Service", "web", "default")),
    "/registry/services/specs/shop": ("/registry/services/specs/specs/shop", _obj("Service", "shop", "specs")),
    "/registry/endpoints/default/web": (
        "/registry/services/endpoints/default/web", _obj("Endpoints", "web", "default")),
    "/registry/nodes/node-1": ("/registry/minions/node-1", _obj("Node", "node-1")),
    "/registry/leases.coordination.k8s.io/kube-node-lease/node-1": (
        "/registry/leases/kube-node-lease/node-1",
        _obj("Lease", "node-1", "kube-node-lease", "coordination.k8s.io/v1")),
    "/registry/validatingwebhookconfigurations.admissionregistration.k8s.io/check": (
        "/registry/validatingwebhookconfigurations/check",
        _obj("ValidatingWebhookConfiguration", "check", None, "admissionregistration.k8s.io/v1")),
}
UNCHANGED: dict[str, bytes] = {
    "/registry/configmaps/default/settings": _obj("ConfigMap", "settings", "default"),
    "/registry/namespaces/default": _obj("Namespace", "default"),
    "/registry/services/specs/default/current": _obj("Service", "current", "default"),
    "/registry/services/endpoints/default/current": _obj("Endpoints", "current", "default"),
}


async def _write_earlier_layout(storage: Storage) -> None:
    for key, (_, value) in EARLIER.items():
        await storage.create(key, value)
    for key, value in UNCHANGED.items():
        await storage.create(key, value)


async def _all_keys(storage: Storage) -> dict[str, bytes]:
    listed = await storage.list("/")
    return {kv.key: kv.value for kv in listed.items}


def test_earlier_roots_are_the_group_qualified_names_of_moved_kinds() -> None:
    roots = {e.root: e.resource.key_root for e in earlier_roots()}
    assert roots["deployments.apps"] == "deployments"
    assert roots["services"] == "services/specs"
    assert roots["endpoints"] == "services/endpoints"
    assert roots["nodes"] == "minions"
    assert "pods" not in roots and "configmaps" not in roots
    assert not any(r.endswith(".authentication.k8s.io") for r in roots), "review kinds are never stored"


async def test_migration_moves_every_earlier_key_and_marks_the_layout(caplog: pytest.LogCaptureFixture) -> None:
    storage = MemoryStorage()
    await storage.start()
    await _write_earlier_layout(storage)
    with caplog.at_level(logging.INFO, logger="apiserver.keylayout"):
        moved = await migrate_key_layout(storage)
    assert moved == len(EARLIER)
    assert [r.getMessage().split(" to ")[0] for r in caplog.records] == [f"moved {len(EARLIER)} objects"]
    keys = await _all_keys(storage)
    expected = {new: value for new, value in EARLIER.values()} | UNCHANGED
    expected[LAYOUT_KEY] = LAYOUT_VERSION
    assert keys == expected
    # A later start reads the marker and writes nothing.
    revision = await storage.current_revision()
    assert await migrate_key_layout(storage) == 0
    assert await storage.current_revision() == revision


async def test_interrupted_migration_finishes_and_the_current_key_wins() -> None:
    storage = MemoryStorage()
    await storage.start()
    # Interrupted between the create and the delete: both keys exist, the current one is newer.
    await storage.create("/registry/deployments.apps/default/web", _obj("Deployment", "old", "default"))
    await storage.create("/registry/deployments/default/web", _obj("Deployment", "web", "default"))
    assert await migrate_key_layout(storage) == 1
    keys = await _all_keys(storage)
    assert keys == {"/registry/deployments/default/web": _obj("Deployment", "web", "default"),
                    LAYOUT_KEY: LAYOUT_VERSION}


async def test_migration_pages_through_many_objects() -> None:
    storage = MemoryStorage()
    await storage.start()
    for i in range(1203):
        await storage.create(f"/registry/configmaps/default/c{i}", b"{}")  # unchanged, not moved
        await storage.create(f"/registry/endpoints/ns{i % 7}/e{i}", b"{}")
    assert await migrate_key_layout(storage) == 1203
    assert await storage.count("/registry/endpoints/") == 0
    assert await storage.count("/registry/services/endpoints/") == 1203
    assert await storage.count("/registry/configmaps/") == 1203


SERVED = [
    ("/apis/apps/v1/namespaces/default/deployments/web", "Deployment"),
    ("/apis/apps/v1/namespaces/default/replicasets/web-1", "ReplicaSet"),
    ("/api/v1/namespaces/default/services/web", "Service"),
    ("/api/v1/namespaces/specs/services/shop", "Service"),
    ("/api/v1/namespaces/default/endpoints/web", "Endpoints"),
    ("/api/v1/nodes/node-1", "Node"),
    ("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1", "Lease"),
    ("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/check",
     "ValidatingWebhookConfiguration"),
    ("/api/v1/namespaces/default/configmaps/settings", "ConfigMap"),
]


async def _start_and_check(tmp_path: Path, store: str, **overrides: object) -> None:
    async with embedded_api(tmp_path, store, **overrides) as api:
        for path, kind in SERVED:
            status, body = await api.request("GET", path)
            assert status == 200, (path, body)
            assert body["kind"] == kind and body["metadata"]["uid"].startswith(f"uid-{kind}-")
            assert int(body["metadata"]["resourceVersion"]) > 0
        status, listed = await api.request("GET", "/apis/apps/v1/deployments")
        assert status == 200 and [d["metadata"]["name"] for d in listed["items"]] == ["web"]
        # The moved objects are ordinary objects: they can be changed and deleted.
        status, body = await api.request("DELETE", "/api/v1/namespaces/default/services/web")
        assert status == 200, body


async def _assert_current_layout(storage: Storage) -> None:
    keys = await _all_keys(storage)
    for old, (new, _) in EARLIER.items():
        assert old not in keys, old
        if new != "/registry/services/specs/default/web":  # deleted through the API above
            assert new in keys, new
    assert keys[LAYOUT_KEY] == LAYOUT_VERSION


async def test_apiserver_migrates_a_sqlite_state_dir(tmp_path: Path) -> None:
    storage = open_storage("sqlite", sqlite_path=tmp_path / "state.db")
    await storage.start()
    await _write_earlier_layout(storage)
    await storage.close()
    await _start_and_check(tmp_path, "sqlite")
    storage = open_storage("sqlite", sqlite_path=tmp_path / "state.db")
    await storage.start()
    try:
        await _assert_current_layout(storage)
    finally:
        await storage.close()
    await _start_and_check_again(tmp_path, "sqlite")


async def _start_and_check_again(tmp_path: Path, store: str, **overrides: object) -> None:
    # A second start finds the marker; everything is still served from the new keys.
    async with embedded_api(tmp_path, store, **overrides) as api:
        status, body = await api.request("GET", "/apis/apps/v1/namespaces/default/deployments/web")
        assert status == 200, body
        status, _ = await api.request("GET", "/api/v1/namespaces/default/services/web")
        assert status == 404


@pytest.mark.etcd
async def test_apiserver_migrates_an_etcd_store(tmp_path: Path, etcd_server: EtcdServer) -> None:
    prefix = f"/kubelab-layout-{uuid.uuid4().hex[:12]}"
    settings = {"etcd_servers": [etcd_server.client_url], "etcd_prefix": prefix}
    storage = open_storage("etcd", etcd_servers=[etcd_server.client_url], etcd_prefix=prefix)
    await storage.start()
    try:
        await _write_earlier_layout(storage)
        await _start_and_check(tmp_path, "etcd", **settings)
        await _assert_current_layout(storage)
        await _start_and_check_again(tmp_path, "etcd", **settings)
    finally:
        await storage.close()
