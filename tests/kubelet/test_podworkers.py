"""Pod workers: serialized per key, coalescing, bounded, retrying; and the CrashLoopBackOff clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubelet.podworkers import TRACEBACK_FAILURES, PodWorkers
from kubelet.settings import KubeletSettings, parse_labels, parse_taint
from kubelet.sync import CrashLoopBackoff, should_restart
from machinery.client.rest import ApiClient
from machinery.resources import PODS
from tests.kubelet.conftest import GroupFactory, eventually


async def test_one_sync_at_a_time_per_key_and_updates_coalesce() -> None:
    running: set[str] = set()
    calls: list[str] = []
    release = asyncio.Event()

    async def sync(key: str) -> None:
        assert key not in running, "two syncs of one key at once"
        running.add(key)
        calls.append(key)
        await release.wait()
        running.discard(key)

    workers = PodWorkers(sync)
    workers.update("a")
    await asyncio.sleep(0)
    for _ in range(5):
        workers.update("a")  # while the first sync runs: coalesced into one more
    workers.update("b")
    await asyncio.sleep(0.01)
    release.set()
    await workers.wait_idle()
    assert sorted(calls) == ["a", "a", "b"]
    assert len(workers) == 0


async def test_concurrency_is_bounded() -> None:
    active = peak = 0

    async def sync(_key: str) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1

    workers = PodWorkers(sync, concurrency=3)
    for i in range(20):
        workers.update(f"k{i}")
    await workers.wait_idle()
    assert peak == 3


async def test_failures_are_retried_and_timers_fire() -> None:
    attempts: list[float] = []

    async def sync(_key: str) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise ValueError("boom")

    workers = PodWorkers(sync, retry_base=0.01)
    workers.update("a")
    async with asyncio.timeout(2):
        while len(attempts) < 3:
            await asyncio.sleep(0.005)
    workers.update_after("a", 0.02)
    async with asyncio.timeout(2):
        while len(attempts) < 4:
            await asyncio.sleep(0.005)
    await workers.close()


def test_crash_loop_backoff_doubles_to_the_maximum() -> None:
    now = [0.0]
    backoff = CrashLoopBackoff(base=10, maximum=40, clock=lambda: now[0])
    assert backoff.remaining("k") == 0  # the first restart is immediate
    delays = []
    for _ in range(5):
        backoff.next("k")
        delays.append(backoff.delay("k"))
        now[0] += backoff.delay("k")
    assert delays == [10, 20, 40, 40, 40]
    backoff.next("k")
    now[0] += 5
    assert backoff.remaining("k") == 35
    now[0] += 100  # idle for more than 2 * maximum: forgotten
    assert backoff.remaining("k") == 0
    assert backoff.delay("k") == 0


@pytest.mark.parametrize(
    ("policy", "exit_code", "restart"),
    [
        pytest.param("Always", 0, True, id="always-success"),
        pytest.param("Always", 1, True, id="always-failure"),
        pytest.param("OnFailure", 0, False, id="onfailure-success"),
        pytest.param("OnFailure", 1, True, id="onfailure-failure"),
        pytest.param("Never", 1, False, id="never"),
    ],
)
def test_should_restart(policy: str, exit_code: int, restart: bool) -> None:
    assert should_restart(policy, exit_code) is restart


@pytest.mark.parametrize(
    ("text", "taint"),
    [
        pytest.param("dedicated=gpu:NoSchedule", {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                     id="key-value"),
        pytest.param("maintenance:NoExecute", {"key": "maintenance", "effect": "NoExecute"}, id="key-only"),
    ],
)
def test_parse_taint(text: str, taint: dict[str, str]) -> None:
    assert parse_taint(text) == taint


@pytest.mark.parametrize("text", [pytest.param("a=b", id="no-effect"), pytest.param("a=b:Sometimes", id="bad"),
                                  pytest.param("=b:NoSchedule", id="empty-key")])
def test_parse_taint_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid taint"):
        parse_taint(text)


def test_parse_labels_and_node_names() -> None:
    assert parse_labels("zone=a, tier=web,") == {"zone": "a", "tier": "web"}
    with pytest.raises(ValueError):
        parse_labels("zone")
    kc = Path("/k")
    assert KubeletSettings(kubeconfig=kc, node_name="n").node_names == ["n"]
    assert KubeletSettings(kubeconfig=kc, node_name="h", hollow=True, count=3).node_names == ["h-1", "h-2", "h-3"]


async def test_a_failing_sync_is_retried_until_it_succeeds_with_bounded_logs(
        caplog: pytest.LogCaptureFixture) -> None:
    calls = 0
    synced = asyncio.Event()

    async def sync(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls <= 12:
            raise ConnectionError("apiserver away")
        synced.set()

    workers = PodWorkers(sync, retry_base=0.001, retry_max=0.005)
    workers.update("ns/p")
    await asyncio.wait_for(synced.wait(), 30)
    await workers.close()
    records = [r for r in caplog.records if r.name == "kubelet.podworkers"]
    assert len(records) == 12
    assert sum(r.exc_info is not None for r in records) == TRACEBACK_FAILURES, "tracebacks for the first only"


def pod_on(node: str, name: str = "web") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]}}


async def restart_count(client: ApiClient, name: str) -> int:
    status = (await client.get(PODS, name, namespace="default")).get("status") or {}
    return int(((status.get("containerStatuses") or [{}])[0]).get("restartCount", 0))


async def test_periodic_resync_repairs_what_no_event_reported(client: ApiClient, start_group: GroupFactory) -> None:
    """A container that exits while its runtime event is lost is restarted by the next resync."""
    group = await start_group(sync_frequency=0.3)
    await client.create(PODS, pod_on("node-a"))

    async def running() -> bool:
        pod = await client.get(PODS, "web", namespace="default")
        return (pod.get("status") or {}).get("phase") == "Running"
    await eventually(running, timeout=30)

    async def settled() -> bool:
        """The kubelet has seen its own last status write and has nothing left to do."""
        api_rv = (await client.get(PODS, "web", namespace="default"))["metadata"]["resourceVersion"]
        cached = group.informer.store.get("default/web")
        return (cached is not None and cached["metadata"]["resourceVersion"] == api_rv and len(group.workers) == 0
                and not group.workers.scheduled("default/web"))
    await eventually(settled, timeout=30)
    runtime = group.nodes["node-a"].runtime
    pod = await client.get(PODS, "web", namespace="default")
    [container] = await runtime.list_containers(pod["metadata"]["uid"])
    runtime.set_event_handler(lambda _event: None)  # the exit below is never reported
    await runtime.stop_container(container.id, timeout=0)
    assert await eventually(lambda: _restarted(client), timeout=30)


async def _restarted(client: ApiClient) -> bool:
    return await restart_count(client, "web") >= 1


def test_sync_frequency_defaults_to_kubernetes() -> None:
    assert KubeletSettings(kubeconfig=Path("kubeconfig"), node_name="n").sync_frequency == 60.0
