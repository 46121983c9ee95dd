"""Watch continuity across apiserver crashes, checked against the store's own history.

An apiserver process is killed with SIGKILL and started again several times while writers
keep creating, updating and deleting ConfigMaps in one namespace. Two real clients watch that
namespace and, whenever their stream breaks, resume from the last resourceVersion they saw
(``machinery``'s :class:`~machinery.client.ApiClient` and the official Python client, each as
its users write the loop). Afterwards the store's history of that namespace (the SQLite
revision log read straight from the database file; etcd's revisions through a storage watch
from the first revision) must equal what each client received: every change, in storage
order, none missed, none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from apiserver.settings import ApiServerSettings
from apiserver.storage import open_storage
from apiserver.storage.interface import EventType
from kubelab.testing import RunningApiServer
from machinery.client import ApiClient
from machinery.errors import ApiError, GoneError
from machinery.resources import CONFIGMAPS, NAMESPACES
from tests.e2e.chaos_harness import kill_hard, wait_until
from tests.e2e.pyclient import Watch, client, new_client

pytestmark = pytest.mark.slow

RESTARTS = 4
"""SIGKILL + start rounds per test."""
EVENTS_BETWEEN_RESTARTS = 15
"""Each watcher sees at least this many events after a restart before the next kill."""
WRITERS = 3
NAMES_PER_WRITER = 6

Change = tuple[int, str, str]
"""(resourceVersion, ADDED | MODIFIED | DELETED, name)."""


@dataclass
class Watched:
    """What one client received, and how often its stream had to be resumed."""

    changes: list[Change] = field(default_factory=list)
    resumes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, change: Change) -> None:
        with self.lock:
            self.changes.append(change)

    def count(self) -> int:
        with self.lock:
            return len(self.changes)

    def saw(self, revision: int) -> bool:
        with self.lock:
            return any(rv >= revision for rv, _, _ in self.changes)


# -- the clients -------------------------------------------------------------------------------


async def machinery_watch(api: ApiClient, namespace: str, since: str, out: Watched, stop: asyncio.Event) -> None:
    """List-then-watch as an informer does: resume from the last resourceVersion (BOOKMARKs too)."""
    rv = since
    while not stop.is_set():
        try:
            async for event in api.watch(CONFIGMAPS, namespace=namespace, resource_version=rv, timeout_seconds=5):
                rv = str(event.object["metadata"]["resourceVersion"])
                if event.type != "BOOKMARK":
                    out.add((int(rv), event.type, str(event.object["metadata"]["name"])))
        except GoneError as exc:
            raise AssertionError(f"resourceVersion {rv} expired: {exc}") from exc
        except ApiError:
            out.resumes += 1
            await asyncio.sleep(0.1)  # retry pace while the apiserver is down


def python_client_watch(server: RunningApiServer, namespace: str, since: str, out: Watched,
                        stop: threading.Event) -> None:
    """The official client's ``Watch().stream`` with ``resource_version``, resumed after any failure."""
    rv = since
    api = new_client(server)
    try:
        core = client.CoreV1Api(api)
        while not stop.is_set():
            try:
                for event in Watch().stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                                            timeout_seconds=5, _request_timeout=30):
                    assert event["type"] != "ERROR", event["raw_object"]
                    rv = event["object"].metadata.resource_version
                    out.add((int(rv), event["type"], event["object"].metadata.name))
            except client.ApiException as exc:
                assert exc.status != 410, f"resourceVersion {rv} expired: {exc}"
                out.resumes += 1
                stop.wait(0.1)
            except Exception:  # urllib3 connection errors while the apiserver is down
                out.resumes += 1
                stop.wait(0.1)
    finally:
        api.close()


# -- the writers -------------------------------------------------------------------------------


async def write_forever(api: ApiClient, namespace: str, writer: int, stop: asyncio.Event, seed: int) -> int:
    """Create, update and delete this writer's ConfigMaps until ``stop``; errors are expected
    while the apiserver is down (the store's history is the reference, not the answers)."""
    rng = random.Random(seed * 100 + writer)
    names = [f"w{writer}-{i}" for i in range(NAMES_PER_WRITER)]
    acknowledged = 0
    while not stop.is_set():
        name = rng.choice(names)
        action = rng.choice(["create", "update", "update", "delete"])
        try:
            if action == "create":
                await api.create(CONFIGMAPS, {"metadata": {"name": name}, "data": {"v": "0"}}, namespace=namespace)
            elif action == "update":
                await api.patch(CONFIGMAPS, name, {"data": {"v": str(rng.random())}}, namespace=namespace)
            else:
                await api.delete(CONFIGMAPS, name, namespace=namespace)
            acknowledged += 1
        except ApiError:  # NotFound / AlreadyExists by design; 503 while the apiserver is down
            await asyncio.sleep(0.01)
    return acknowledged


# -- the store's history -----------------------------------------------------------------------


def change_type(kind: EventType, created: bool) -> str:
    if kind == EventType.DELETE:
        return "DELETED"
    return "ADDED" if created else "MODIFIED"


def sqlite_history(server: RunningApiServer, prefix: str, after: int, until: int) -> list[Change]:
    """The revision log rows of ``prefix`` in (after, until], read from the database file."""
    path = ApiServerSettings(state_dir=server.state_dir).sqlite_path
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT revision, created, deleted, key FROM kv WHERE key >= ? AND key < ? "
            "AND revision > ? AND revision <= ? ORDER BY revision",
            (prefix, prefix + "\uffff", after, until),
        ).fetchall()
    return [(int(rev), change_type(EventType.DELETE if deleted else EventType.PUT, bool(created)),
             str(key).rsplit("/", 1)[1]) for rev, created, deleted, key in rows]


async def etcd_history(server: RunningApiServer, prefix: str, after: int, until: int) -> list[Change]:
    """etcd's revisions of ``prefix`` in (after, until], through a storage watch from ``after``."""
    storage = open_storage("etcd", etcd_servers=server.etcd_servers, etcd_prefix=server.etcd_prefix)
    await storage.start()
    found: list[Change] = []
    try:
        async with asyncio.timeout(60):
            async for event in storage.watch(prefix, after_revision=after):
                if event.revision > until:
                    break
                found.append((event.revision, change_type(event.type, event.created), event.key.rsplit("/", 1)[1]))
                if event.revision == until:
                    break
    finally:
        await storage.close()
    return found


def differences(expected: list[Change], seen: list[Change]) -> dict[str, Any]:
    expected_set, seen_set = set(expected), set(seen)
    return {
        "missed": sorted(expected_set - seen_set)[:10],
        "unexpected": sorted(seen_set - expected_set)[:10],
        "duplicated": sorted({c for c in seen if seen.count(c) > 1})[:10],
        "out of order": [pair for pair in itertools.pairwise(seen) if pair[0][0] >= pair[1][0]][:5],
    }


def progressed(*watchers: Watched) -> Callable[[], bool]:
    """A condition: every watcher received EVENTS_BETWEEN_RESTARTS more changes than it has now."""
    floors = [(watched, watched.count() + EVENTS_BETWEEN_RESTARTS) for watched in watchers]
    return lambda: all(watched.count() >= floor for watched, floor in floors)


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture
def namespace() -> str:
    return f"wc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def seed() -> Iterator[int]:
    value = random.SystemRandom().randrange(1 << 30)
    print(f"watch continuity seed {value}")
    yield value


async def test_resumed_watches_see_every_change_in_storage_order_across_sigkills(
    cluster: RunningApiServer, namespace: str, seed: int
) -> None:
    api = ApiClient.from_kubeconfig(cluster.kubeconfig, timeout=10)
    await api.create(NAMESPACES, {"metadata": {"name": namespace}})
    start = (await api.list(CONFIGMAPS, namespace=namespace))["metadata"]["resourceVersion"]
    ours, theirs = Watched(), Watched()
    stop_writes, stop_ours, stop_theirs = asyncio.Event(), asyncio.Event(), threading.Event()
    watch_ours = asyncio.create_task(machinery_watch(api, namespace, start, ours, stop_ours), name="watch-machinery")
    watch_theirs = asyncio.create_task(
        asyncio.to_thread(python_client_watch, cluster, namespace, start, theirs, stop_theirs), name="watch-pyclient")
    writers = [asyncio.create_task(write_forever(api, namespace, i, stop_writes, seed), name=f"writer-{i}")
               for i in range(WRITERS)]
    try:
        for _ in range(RESTARTS):
            await wait_until(progressed(ours, theirs), timeout=120, what="both watchers to receive new events")
            await asyncio.to_thread(kill_hard, cluster.pid)
            await asyncio.to_thread(cluster.restart)
        await wait_until(progressed(ours, theirs), timeout=120, what="both watchers to receive new events")
        stop_writes.set()
        acknowledged = sum(await asyncio.gather(*writers))
        marker = await api.create(CONFIGMAPS, {"metadata": {"name": "the-end"}}, namespace=namespace)
        until = int(marker["metadata"]["resourceVersion"])
        await wait_until(lambda: ours.saw(until) and theirs.saw(until), timeout=60,
                         what=f"both watchers to reach resourceVersion {until}")
    finally:
        stop_writes.set()
        stop_ours.set()
        stop_theirs.set()
        for task in [*writers, watch_ours]:
            task.cancel()
        await asyncio.gather(*writers, watch_ours, watch_theirs, return_exceptions=True)
        await api.close()

    prefix = f"/registry/configmaps/{namespace}/"
    if cluster.store == "sqlite":
        history = sqlite_history(cluster, prefix, int(start), until)
    else:
        history = await etcd_history(cluster, prefix, int(start), until)
    assert history[-1] == (until, "ADDED", "the-end")
    assert len(history) >= acknowledged > 0  # every acknowledged write is in the log (some replies were lost)
    assert len(history) > RESTARTS * EVENTS_BETWEEN_RESTARTS
    for name, watched in (("machinery", ours), ("python client", theirs)):
        assert watched.resumes >= RESTARTS, f"{name}: the stream was never broken ({watched.resumes} resumes)"
        seen = [change for change in watched.changes if change[0] <= until]
        assert seen == history, f"{name}: {differences(history, seen)} ({len(seen)} seen, {len(history)} in store)"
