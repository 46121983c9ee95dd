"""CronJob controller against the embedded apiserver with a hand-moved clock: job names and
annotations, one job per time, concurrency policies, starting deadline, missed times, history."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controllers.cronjob import SCHEDULED_TIMESTAMP, CronJobController, job_name
from controllers.settings import ControllerManagerSettings
from machinery.client import ApiClient, InformerFactory
from machinery.meta import now_rfc3339, object_key
from machinery.resources import CRONJOBS, EVENTS, JOBS
from tests.controllers.helpers import cluster

Obj = dict[str, Any]
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _cj(name: str = "tick", **spec: Any) -> Obj:
    template = {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": "default"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                                                               "spec": {"template": template}}, **spec}}


class Harness:
    def __init__(self, client: ApiClient, ctl: CronJobController, clock: Clock) -> None:
        self.client, self.ctl, self.clock = client, ctl, clock

    async def create(self, body: Obj) -> None:
        cj = await self.client.create(CRONJOBS, body, namespace="default")
        # The controller measures missed times from creation: pin it to the test's clock.
        cj["metadata"]["creationTimestamp"] = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.ctl.cj_informer.store.upsert(cj)
        self.cached = cj

    async def sync(self, name: str = "tick") -> None:
        """Refresh the caches from the API (keeping the pinned creation time), then sync."""
        cj = await self.client.get(CRONJOBS, name, namespace="default")
        cj["metadata"]["creationTimestamp"] = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.ctl.cj_informer.store.upsert(cj)
        for job in (await self.client.list(JOBS, namespace="default"))["items"]:
            self.ctl.job_informer.store.upsert(job)
        for key in list(self.ctl.job_informer.store.keys()):
            ns, n = key.split("/", 1)
            try:
                await self.client.get(JOBS, n, namespace=ns)
            except Exception:
                self.ctl.job_informer.store.delete(key)
        await self.ctl.sync(object_key(cj))

    async def jobs(self) -> list[Obj]:
        items: list[Obj] = (await self.client.list(JOBS, namespace="default"))["items"]
        return sorted((j for j in items if not j["metadata"].get("deletionTimestamp")),
                      key=lambda j: j["metadata"]["name"])

    async def status(self, name: str = "tick") -> Obj:
        status: Obj = (await self.client.get(CRONJOBS, name, namespace="default")).get("status") or {}
        return status

    async def finish(self, job: Obj, ok: bool = True) -> None:
        now = now_rfc3339()
        ctype = "Complete" if ok else "Failed"
        status: Obj = {"conditions": [{"type": ctype, "status": "True", "lastTransitionTime": now}]}
        if ok:
            status.update(completionTime=now, startTime=now, succeeded=1)
        await self.client.patch(JOBS, job["metadata"]["name"], {"status": status}, namespace="default",
                                subresource="status")

    async def reasons(self) -> list[str]:
        return [e.get("reason", "") for e in (await self.client.list(EVENTS, namespace="default"))["items"]]


@contextlib.asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with cluster(tmp_path) as client:
        clock = Clock()
        ctl = CronJobController(client, InformerFactory(client), ControllerManagerSettings(), clock=clock)
        yield Harness(client, ctl, clock)
        await ctl.recorder.close()


async def test_creates_one_job_per_scheduled_time(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.create(_cj())
        h.clock.now = T0 + timedelta(minutes=3)
        await h.sync()
        assert await h.jobs() == [], "no time has come yet"
        h.clock.now = T0 + timedelta(minutes=5, seconds=2)
        await h.sync()
        await h.sync()
        jobs = await h.jobs()
        scheduled = T0 + timedelta(minutes=5)
        assert [j["metadata"]["name"] for j in jobs] == [job_name("tick", scheduled)]
        assert jobs[0]["metadata"]["name"] == f"tick-{int(scheduled.timestamp()) // 60}"
        assert jobs[0]["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2026-03-01T12:05:00Z"
        assert jobs[0]["metadata"]["labels"]["team"] == "a"
        ref = jobs[0]["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["controller"]) == ("CronJob", True)
        status = await h.status()
        assert status["lastScheduleTime"] == "2026-03-01T12:05:00Z"
        assert [a["name"] for a in status["active"]] == [jobs[0]["metadata"]["name"]]
        await h.finish(jobs[0])
        await h.sync()
        status = await h.status()
        assert "active" not in status and status.get("lastSuccessfulTime")


@pytest.mark.parametrize(("policy", "expected_jobs"), [
    pytest.param("Allow", 2, id="allow"),
    pytest.param("Forbid", 1, id="forbid"),
    pytest.param("Replace", 1, id="replace"),
])
async def test_concurrency_policy(tmp_path: Path, policy: str, expected_jobs: int) -> None:
    async with harness(tmp_path) as h:
        await h.create(_cj(concurrencyPolicy=policy))
        h.clock.now = T0 + timedelta(minutes=5, seconds=1)
        await h.sync()
        first = (await h.jobs())[0]["metadata"]["name"]
        h.clock.now = T0 + timedelta(minutes=10, seconds=1)
        await h.sync()
        jobs = [j["metadata"]["name"] for j in await h.jobs()]
        assert len(jobs) == expected_jobs
        if policy == "Replace":
            assert jobs == [job_name("tick", T0 + timedelta(minutes=10))] and first not in jobs
        if policy == "Forbid":
            assert jobs == [first] and "JobAlreadyActive" in await h.reasons()


async def test_starting_deadline_skips_a_missed_window(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.create(_cj(startingDeadlineSeconds=30))
        h.clock.now = T0 + timedelta(minutes=6)  # 60 s late for 12:05 with a 30 s window
        await h.sync()
        assert await h.jobs() == []


async def test_too_many_missed_times_runs_only_the_latest(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.create(_cj(schedule="* * * * *"))
        h.clock.now = T0 + timedelta(hours=3, seconds=5)
        await h.sync()
        assert [j["metadata"]["name"] for j in await h.jobs()] == [job_name("tick", T0 + timedelta(hours=3))]
        assert "TooManyMissedTimes" in await h.reasons()


async def test_suspended_cronjob_starts_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.create(_cj(suspend=True))
        h.clock.now = T0 + timedelta(minutes=20)
        await h.sync()
        assert await h.jobs() == []


async def test_time_zone_names_the_local_schedule_time(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.create(_cj(schedule="0 21 * * *", timeZone="Asia/Tokyo"))  # 21:00 JST = 12:00 UTC
        h.clock.now = T0 + timedelta(days=1, seconds=1)
        await h.sync()
        jobs = await h.jobs()
        assert [j["metadata"]["name"] for j in jobs] == [job_name("tick", T0 + timedelta(days=1))]
        assert jobs[0]["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2026-03-02T21:00:00+09:00"


async def test_history_limits_keep_the_newest_finished_jobs(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.create(_cj(successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1))
        for i in range(1, 6):
            h.clock.now = T0 + timedelta(minutes=5 * i, seconds=1)
            await h.sync()
            newest = (await h.jobs())[-1]
            await h.finish(newest, ok=i != 1)
        await h.sync()
        names = [j["metadata"]["name"] for j in await h.jobs()]
        kept = [job_name("tick", T0 + timedelta(minutes=5 * i)) for i in (1, 4, 5)]
        assert names == sorted(kept)
