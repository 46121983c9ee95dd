"""LeaderElector against the real apiserver: one leader, take-over, expiry, CAS."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from machinery.client.leaderelection import LeaderElector, format_micro_time
from machinery.client.rest import ApiClient
from machinery.errors import ConflictError
from machinery.resources import LEASES

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 1.0, 0.7, 0.2


def elector(client: ApiClient, identity: str) -> LeaderElector:
    return LeaderElector(client, lease_name="test-lock", namespace="default", identity=identity,
                         lease_duration=LEASE_DURATION, renew_deadline=RENEW_DEADLINE, retry_period=RETRY_PERIOD)


async def lease(client: ApiClient) -> dict[str, Any]:
    spec: dict[str, Any] = (await client.get(LEASES, "test-lock", namespace="default"))["spec"]
    return spec


async def wait_for(condition: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_micro_time_format() -> None:
    assert format_micro_time(datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2024-01-02T03:04:05.000006Z"


async def test_one_leader_then_takeover_after_stop(client: ApiClient) -> None:
    leading: dict[str, int] = {"a": 0, "b": 0}
    electors = {name: elector(client, name) for name in leading}

    def lead_fn(name: str) -> Any:
        async def lead() -> None:
            leading[name] += 1
            await asyncio.sleep(3600)
        return lead

    tasks = {n: asyncio.create_task(e.run(lead_fn(n)), name=f"elector-{n}") for n, e in electors.items()}
    await wait_for(lambda: any(e.is_leader for e in electors.values()), 3)
    await asyncio.sleep(1.2)  # longer than the lease: the leader keeps renewing, nobody else leads
    leaders = [n for n, e in electors.items() if e.is_leader]
    assert len(leaders) == 1
    first = leaders[0]
    other = "b" if first == "a" else "a"
    assert leading == {first: 1, other: 0}
    spec = await lease(client)
    assert spec["holderIdentity"] == first and spec["leaseDurationSeconds"] == 1
    assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]

    await stop(tasks[first])  # releases the lease
    assert (await lease(client))["holderIdentity"] in ("", other)
    # lead() starts as a task just after is_leader flips: wait for both.
    await wait_for(lambda: electors[other].is_leader and leading[other] == 1, 3.0)
    spec = await lease(client)
    assert spec["holderIdentity"] == other
    assert spec["leaseTransitions"] >= 1
    await stop(tasks[other])


@pytest.mark.parametrize(
    ("renewed_ago", "expect_takeover"),
    [
        pytest.param(5.0, True, id="expired-lease-is-taken-over"),
        pytest.param(0.0, False, id="fresh-lease-is-respected"),
    ],
)
async def test_foreign_lease_expiry(client: ApiClient, renewed_ago: float, expect_takeover: bool) -> None:
    renewed = format_micro_time(datetime.now(UTC) - timedelta(seconds=renewed_ago))
    await client.create(LEASES, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "test-lock", "namespace": "default"},
        "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 2, "acquireTime": renewed,
                 "renewTime": renewed, "leaseTransitions": 3},
    })
    candidate = elector(client, "me")
    assert await candidate.try_acquire_or_renew() is expect_takeover
    spec = await lease(client)
    if expect_takeover:
        assert spec["holderIdentity"] == "me" and spec["leaseTransitions"] == 4
    else:
        assert spec["holderIdentity"] == "ghost"


async def test_stale_write_loses_cas(client: ApiClient) -> None:
    a, b = elector(client, "a"), elector(client, "b")
    assert await a.try_acquire_or_renew()
    # b read the lease while it was free-looking: simulate by releasing and racing on one version.
    await a.release()
    snapshot = await client.get(LEASES, "test-lock", namespace="default")
    assert await b.try_acquire_or_renew()
    stale = dict(snapshot, spec=dict(snapshot["spec"], holderIdentity="a"))
    with pytest.raises(ConflictError):
        await client.update(LEASES, stale)
    assert (await lease(client))["holderIdentity"] == "b"


async def test_leader_whose_lead_fails_releases_and_competes_again(client: ApiClient) -> None:
    runs = 0

    async def lead() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("lead crashed")

    e = elector(client, "solo")
    task = asyncio.create_task(e.run(lead))
    await wait_for(lambda: runs >= 2, 3)
    await stop(task)
    assert (await lease(client))["holderIdentity"] == ""


async def test_crashed_leader_is_replaced_after_lease_duration(client: ApiClient) -> None:
    a, b = elector(client, "a"), elector(client, "b")
    started = asyncio.Event()

    async def lead() -> None:
        started.set()
        await asyncio.sleep(3600)

    task_a = asyncio.create_task(a.run(lead))
    await asyncio.wait_for(started.wait(), 3)

    async def no_release() -> None:  # a crash: the lease is left held
        return None

    a.release = no_release  # type: ignore[method-assign]
    await stop(task_a)
    assert (await lease(client))["holderIdentity"] == "a"
    task_b = asyncio.create_task(b.run(lead))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await wait_for(lambda: b.is_leader, 3)
    assert loop.time() - t0 <= LEASE_DURATION + 2 * RETRY_PERIOD + 1.0  # slack for a loaded machine
    await stop(task_b)
