"""SharedInformer, Store and InformerFactory: against the real apiserver, and a fake transport for 410s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from machinery.client.informer import InformerFactory, SharedInformer
from machinery.client.rest import ApiClient, WatchEvent
from machinery.client.store import INDEX_NAMESPACE, INDEX_NODE, INDEX_OWNER_UID, Store
from machinery.errors import GoneError, ServiceUnavailableError
from machinery.resources import NAMESPACES, PODS, ResourceInfo
from tests.machinery.client.conftest import pod


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def obj(name: str, rv: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv}, "spec": spec}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.deleted: list[dict[str, Any]] = []

    def attach(self, informer: SharedInformer) -> None:
        informer.add_handler(on_add=lambda o: self.calls.append(("add", o["metadata"]["name"])),
                             on_update=lambda old, new: self.calls.append(("update", new["metadata"]["name"])),
                             on_delete=self._delete)

    def _delete(self, o: dict[str, Any]) -> None:
        self.calls.append(("delete", o["metadata"]["name"]))
        self.deleted.append(o)


# -- Store ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "value", "expected"),
    [
        pytest.param(INDEX_NAMESPACE, "a", ["a/p1", "a/p2"], id="namespace"),
        pytest.param(INDEX_NODE, "n1", ["a/p1", "b/p3"], id="node"),
        pytest.param(INDEX_OWNER_UID, "rs-1", ["a/p2", "b/p3"], id="owner"),
        pytest.param(INDEX_NODE, "absent", [], id="no-match"),
    ],
)
def test_store_indexes(index: str, value: str, expected: list[str]) -> None:
    store = Store()
    store.upsert(obj("p1", "1", "a", nodeName="n1"))
    store.upsert(obj("p2", "2", "a") | {"metadata": {"name": "p2", "namespace": "a",
                                                      "ownerReferences": [{"uid": "rs-1"}]}})
    store.upsert(obj("p3", "3", "b", nodeName="n1") | {"metadata": {"name": "p3", "namespace": "b",
                                                                      "ownerReferences": [{"uid": "rs-1"}]}})
    assert store.index_keys(index, value) == expected


def test_store_keeps_indexes_current_on_update_delete_replace() -> None:
    store = Store()
    store.add_indexer("label-app", lambda o: [o["metadata"].get("labels", {}).get("app", "")])
    store.upsert(obj("p1", "1", nodeName="n1"))
    store.upsert(obj("p1", "2", nodeName="n2"))
    assert store.by_index(INDEX_NODE, "n1") == []
    assert [o["metadata"]["resourceVersion"] for o in store.by_index(INDEX_NODE, "n2")] == ["2"]
    added, updated, deleted = store.replace([obj("p2", "3")])
    assert [o["metadata"]["name"] for o in added] == ["p2"]
    assert updated == []
    assert [o["metadata"]["resourceVersion"] for o in deleted] == ["2"], "deletes carry the last known state"
    assert store.by_index(INDEX_NODE, "n2") == []
    assert store.keys() == ["default/p2"]
    assert store.delete("default/p2") is not None
    assert store.by_index(INDEX_NAMESPACE, "default") == []


# -- against the real apiserver ------------------------------------------------------------------


async def test_informer_syncs_and_calls_handlers(client: ApiClient) -> None:
    await client.create(PODS, pod("before"))
    informer = SharedInformer(client, PODS)
    rec = Recorder()
    rec.attach(informer)
    await informer.start()
    await informer.wait_synced(5)
    assert informer.has_synced()
    assert informer.store.keys() == ["default/before"]
    assert rec.calls == [("add", "before")]

    await client.create(PODS, pod("new", namespace="kube-system"))
    await client.bind("default", "before", "node-a")
    await eventually(lambda: ("update", "before") in rec.calls and ("add", "new") in rec.calls)
    assert [p["metadata"]["name"] for p in informer.store.by_index(INDEX_NODE, "node-a")] == ["before"]
    assert [p["metadata"]["name"] for p in informer.store.by_index(INDEX_NAMESPACE, "kube-system")] == ["new"]

    await client.delete(PODS, "new", namespace="kube-system", grace_period_seconds=0)
    await eventually(lambda: ("delete", "new") in rec.calls)
    assert informer.store.get("kube-system/new") is None
    await informer.stop()


async def test_informer_owner_index_and_late_handler(client: ApiClient) -> None:
    owner = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "uid-rs", "controller": True}]
    await client.create(PODS, pod("child", ownerReferences=owner))
    await client.create(PODS, pod("orphan"))
    informer = SharedInformer(client, PODS, namespace="default")
    await informer.start()
    await informer.wait_synced(5)
    assert [p["metadata"]["name"] for p in informer.store.by_index(INDEX_OWNER_UID, "uid-rs")] == ["child"]
    rec = Recorder()
    rec.attach(informer)  # added after sync: replays the cache as adds
    assert sorted(rec.calls) == [("add", "child"), ("add", "orphan")]
    await informer.stop()


async def test_informer_resumes_after_server_closes_watch(client: ApiClient) -> None:
    informer = SharedInformer(client, PODS, watch_timeout_seconds=1)
    rec = Recorder()
    rec.attach(informer)
    await informer.start()
    await informer.wait_synced(5)
    await eventually(lambda: informer.watches >= 2, timeout=5)  # the first stream ended; watching again
    await client.create(PODS, pod("after-resume"))
    await eventually(lambda: ("add", "after-resume") in rec.calls)
    assert informer.lists == 1, "a closed stream resumes from the resourceVersion, without re-listing"
    await informer.stop()


async def test_informer_resync_calls_update(client: ApiClient) -> None:
    informer = SharedInformer(client, NAMESPACES, resync_seconds=0.1)
    rec = Recorder()
    rec.attach(informer)
    await informer.start()
    await informer.wait_synced(5)
    await eventually(lambda: rec.calls.count(("update", "default")) >= 2, timeout=3)
    await informer.stop()


async def test_factory_shares_informers(client: ApiClient) -> None:
    factory = InformerFactory(client)
    pods = factory.informer(PODS)
    assert factory.informer(PODS) is pods
    assert factory.informer(PODS, namespace="a") is not pods
    namespaces = factory.informer(NAMESPACES)
    await factory.start()
    await factory.start()  # idempotent
    await factory.wait_synced(5)
    assert pods.has_synced() and namespaces.has_synced()
    assert len(namespaces.store) == 4
    await factory.stop()


# -- the reflector's recovery paths, with a scripted transport ----------------------------------


class ScriptedTransport:
    """Answers lists from ``lists`` and watches from ``watches`` (events, or an exception to raise)."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[list[WatchEvent] | Exception]) -> None:
        self.lists = lists
        self.watches = watches
        self.list_calls = 0
        self.watch_from: list[str] = []
        self.done = asyncio.Event()

    async def list(self, resource: ResourceInfo, **kwargs: Any) -> dict[str, Any]:
        items = self.lists[min(self.list_calls, len(self.lists) - 1)]
        self.list_calls += 1
        rv = max((int(i["metadata"]["resourceVersion"]) for i in items), default=1)
        return {"items": [dict(i) for i in items], "metadata": {"resourceVersion": str(rv)}}

    async def watch(self, resource: ResourceInfo, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        self.watch_from.append(kwargs["resource_version"])
        if not self.watches:
            self.done.set()
            await asyncio.sleep(3600)
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        for event in step:
            yield event


async def test_reflector_relists_on_gone_and_reports_differences() -> None:
    transport = ScriptedTransport(
        lists=[[obj("a", "5"), obj("b", "6")], [obj("a", "20"), obj("c", "21")]],
        watches=[
            [WatchEvent("MODIFIED", obj("a", "7")), WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "9"}})],
            GoneError("too old resource version"),
        ],
    )
    informer = SharedInformer(transport, PODS)
    rec = Recorder()
    rec.attach(informer)
    await informer.start()
    await asyncio.wait_for(transport.done.wait(), 5)
    await informer.stop()
    assert transport.watch_from == ["6", "9", "21"], "re-watch from the bookmark; after 410, from the new list"
    assert transport.list_calls == 2
    assert rec.calls == [("add", "a"), ("add", "b"), ("update", "a"),
                         ("add", "c"), ("update", "a"), ("delete", "b")]
    assert rec.deleted[0]["metadata"]["resourceVersion"] == "6", "last known state"
    assert sorted(informer.store.keys()) == ["default/a", "default/c"]


async def test_reflector_backs_off_and_rewatches_on_errors() -> None:
    transport = ScriptedTransport(
        lists=[[obj("a", "5")]],
        watches=[ServiceUnavailableError("connection reset"), [WatchEvent("DELETED", obj("a", "8"))]],
    )
    informer = SharedInformer(transport, PODS)
    rec = Recorder()
    rec.attach(informer)
    await informer.start()
    await asyncio.wait_for(transport.done.wait(), 5)
    await informer.stop()
    assert transport.list_calls == 1
    assert transport.watch_from == ["5", "5", "8"]
    assert rec.calls == [("add", "a"), ("delete", "a")]
    assert informer.store.keys() == []


async def test_handler_errors_do_not_stop_the_reflector() -> None:
    transport = ScriptedTransport(lists=[[obj("a", "5")]], watches=[[WatchEvent("ADDED", obj("b", "6"))]])
    informer = SharedInformer(transport, PODS)

    def broken(o: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    informer.add_handler(on_add=broken)
    await informer.start()
    await asyncio.wait_for(transport.done.wait(), 5)
    assert sorted(informer.store.keys()) == ["default/a", "default/b"]
    await informer.stop()
