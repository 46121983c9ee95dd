"""Pod workers: serialized per key, coalescing, bounded, retrying; and the CrashLoopBackOff clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubelet.podworkers import PodWorkers
from kubelet.settings import KubeletSettings, parse_labels, parse_taint
from kubelet.sync import CrashLoopBackoff, should_restart


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
