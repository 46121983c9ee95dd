"""A real apiserver process over a real 3-member etcd cluster keeps serving while members die.

Clients create ConfigMaps through the API without pause while etcd members are SIGKILLed one
at a time and started again: a follower, then the leader, then any member not killed yet, so
the member the apiserver's storage watch is on dies at some point (quorum holds throughout).
The API must answer a write again within 5 s of each kill and answer no write with an error;
at the end the API lists exactly the acknowledged ConfigMaps at their acknowledged
resourceVersions, and a client watch opened before the kills received every one of them once,
in order, on one stream that never broke: the apiserver's own storage watch moved to another
member without ending (no 410, no relist).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubelab.testing import RunningApiServer, start_apiserver
from machinery.client import ApiClient
from machinery.errors import ApiError
from machinery.resources import CONFIGMAPS, NAMESPACES
from tests.e2e.chaos_harness import wait_until
from tests.etcd_server import EtcdCluster, EtcdError, EtcdMember

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

RECOVERY_LIMIT = 5.0
"""Seconds from a kill to the first write the API acknowledges after it."""
WRITERS = 3
WRITES_BETWEEN_KILLS = 30


@dataclass
class Answers:
    """What the writers were told."""

    acked: dict[str, int] = field(default_factory=dict)  # name -> resourceVersion
    times: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered), monotonic
    errors: list[str] = field(default_factory=list)

    def first_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the answer of the first write sent after it."""
        later = [answered for sent, answered in self.times if sent >= moment]
        return min(later) - moment if later else None


@dataclass
class Stream:
    """What the client watch received."""

    added: list[tuple[int, str]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    ended: BaseException | bool = False


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd")
    try:
        cluster.start()
    except EtcdError as exc:
        pytest.fail(f"cannot start a 3-member etcd: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def apiserver(tmp_path: Path, etcd_cluster: EtcdCluster) -> Iterator[RunningApiServer]:
    server = start_apiserver(tmp_path / "state", store="etcd", etcd_servers=etcd_cluster.client_urls,
                             etcd_prefix=f"/kubelab-failover-{uuid.uuid4().hex[:8]}")
    with server:
        yield server


async def write_forever(api: ApiClient, namespace: str, writer: int, out: Answers, stop: asyncio.Event) -> None:
    for i in itertools.count():
        if stop.is_set():
            return
        name = f"w{writer}-{i:05d}"
        sent = time.monotonic()
        try:
            created = await api.create(CONFIGMAPS, {"metadata": {"name": name}, "data": {"i": str(i)}},
                                       namespace=namespace)
        except ApiError as exc:
            out.errors.append(f"{name}: {exc}")
            await asyncio.sleep(0.05)
            continue
        out.acked[name] = int(created["metadata"]["resourceVersion"])
        out.times.append((sent, time.monotonic()))


async def watch_once(api: ApiClient, namespace: str, since: str, out: Stream) -> None:
    """One watch stream, never resumed: if it ends before the test cancels it, the test fails."""
    try:
        async for event in api.watch(CONFIGMAPS, namespace=namespace, resource_version=since, timeout_seconds=600):
            if event.type == "ADDED":
                meta = event.object["metadata"]
                out.added.append((int(meta["resourceVersion"]), str(meta["name"])))
            elif event.type != "BOOKMARK":
                out.other.append(f"{event.type}: {event.object}")
        out.ended = True
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # recorded and asserted on
        out.ended = exc


def floor_reached(answers: Answers, count: int) -> Callable[[], bool]:
    floor = len(answers.times) + count
    return lambda: len(answers.times) >= floor


async def kill_and_measure(cluster: EtcdCluster, member: EtcdMember, answers: Answers) -> float:
    enough = floor_reached(answers, WRITES_BETWEEN_KILLS)
    await asyncio.to_thread(cluster.kill, member)
    killed = time.monotonic()
    await wait_until(lambda: answers.first_after(killed) is not None, timeout=60, what="a write after the kill")
    await wait_until(enough, timeout=120, what=f"{WRITES_BETWEEN_KILLS} writes after the kill")
    recovery = answers.first_after(killed)
    assert recovery is not None
    return round(recovery, 3)


async def test_the_api_keeps_answering_while_etcd_members_die(
        apiserver: RunningApiServer, etcd_cluster: EtcdCluster) -> None:
    api = ApiClient.from_kubeconfig(apiserver.kubeconfig, timeout=30)
    namespace = f"failover-{uuid.uuid4().hex[:6]}"
    answers, stream, stop = Answers(), Stream(), asyncio.Event()
    try:
        await api.create(NAMESPACES, {"metadata": {"name": namespace}})
        since = (await api.list(CONFIGMAPS, namespace=namespace))["metadata"]["resourceVersion"]
        watcher = asyncio.create_task(watch_once(api, namespace, since, stream), name="failover-watch")
        writers = [asyncio.create_task(write_forever(api, namespace, w, answers, stop), name=f"failover-writer-{w}")
                   for w in range(WRITERS)]
        try:
            await wait_until(floor_reached(answers, WRITES_BETWEEN_KILLS), timeout=120, what="writes before the kills")
            # A follower, then the leader, then the member not killed yet: whichever member the
            # apiserver's storage watch is on dies at some point, so it has to move.
            recovered: dict[str, float] = {}
            killed: set[str] = set()
            while len(killed) < len(etcd_cluster.members):
                leader = await asyncio.to_thread(etcd_cluster.wait_leader)
                if not killed:
                    victim, role = next(m for m in etcd_cluster.members if m is not leader), "follower"
                elif len(recovered) == 1:
                    victim, role = leader, "leader"
                else:
                    victim = next(m for m in etcd_cluster.members if m.name not in killed)
                    role = "leader" if victim is leader else "follower"
                killed.add(victim.name)
                recovered[f"{len(recovered) + 1}: {role} {victim.name}"] = await kill_and_measure(
                    etcd_cluster, victim, answers)
                await asyncio.to_thread(etcd_cluster.restart, victim)
        finally:
            stop.set()
            await asyncio.gather(*writers)
        print(f"API recovery after etcd kills (s): {recovered}; {len(answers.acked)} creates acknowledged")

        assert answers.errors == []
        assert all(seconds < RECOVERY_LIMIT for seconds in recovered.values()), recovered

        listed = await api.list(CONFIGMAPS, namespace=namespace)
        assert {i["metadata"]["name"]: int(i["metadata"]["resourceVersion"]) for i in listed["items"]} == answers.acked

        last = max(answers.acked.values())
        await wait_until(lambda: (bool(stream.added) and stream.added[-1][0] >= last) or stream.ended is not False,
                         timeout=60, what="the watch to receive the last create")
        assert stream.ended is False, f"the watch stream ended: {stream.ended!r}"
        watcher.cancel()
        assert stream.other == []
        assert stream.added == sorted((rv, name) for name, rv in answers.acked.items())
        assert "resuming after revision" in apiserver.log_path.read_text(), "the storage watch never moved"
    finally:
        stop.set()
        await api.close()
