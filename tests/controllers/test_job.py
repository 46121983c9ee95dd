"""Job controller against the embedded apiserver: completions, parallelism, Indexed, backoff limit,
pod failure policy, deadline, suspend, finalizer tracking, expectations; pure helpers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers import job_util as ju
from controllers.job import JobController
from controllers.settings import ControllerManagerSettings
from controllers.ttlafterfinished import expires_at
from machinery import errors
from machinery.client import ApiClient, InformerFactory
from machinery.meta import now_rfc3339, object_key
from machinery.resources import JOBS, PODS
from tests.controllers.helpers import cluster, eventually, manager, running_controller

Obj = dict[str, Any]


def _job(name: str, **spec: Any) -> Obj:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": template, **spec}}


def _controller(**kw: Any) -> Any:
    def make(client: ApiClient, factory: InformerFactory) -> JobController:
        return JobController(client, factory, ControllerManagerSettings(), **kw)
    return make


@contextlib.asynccontextmanager
async def _running(tmp_path: Path, **kw: Any) -> AsyncIterator[ApiClient]:
    async with running_controller(tmp_path, _controller(backoff_base=0.05, **kw), workers=2, name="job") as client:
        yield client


async def _pods(client: ApiClient, job: str) -> list[Obj]:
    items: list[Obj] = (await client.list(PODS, namespace="default",
                                          label_selector=f"batch.kubernetes.io/job-name={job}"))["items"]
    return items


async def finish(client: ApiClient, pod: Obj, exit_code: int = 0, conditions: list[Obj] | None = None) -> None:
    """Play the kubelet: the pod's only container exited with ``exit_code``."""
    now = now_rfc3339()
    status = {"phase": "Succeeded" if exit_code == 0 else "Failed", "conditions": conditions or [],
              "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": False,
                                     "restartCount": 0, "state": {"terminated": {
                                         "exitCode": exit_code, "startedAt": now, "finishedAt": now,
                                         "reason": "Completed" if exit_code == 0 else "Error"}}}]}
    with contextlib.suppress(Exception):
        await client.patch(PODS, pod["metadata"]["name"], {"status": status}, namespace="default",
                           subresource="status")


async def _finish_running(client: ApiClient, job: str, exit_code: int = 0) -> int:
    done = 0
    for pod in await _pods(client, job):
        if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") \
                and not pod["metadata"].get("deletionTimestamp"):
            await finish(client, pod, exit_code)
            done += 1
    return done


async def _status(client: ApiClient, name: str) -> Obj:
    status: Obj = (await client.get(JOBS, name, namespace="default")).get("status") or {}
    return status


def _cond(status: Obj, ctype: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), None)


async def test_completions_with_parallelism_complete_and_untrack_every_pod(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("pi", completions=3, parallelism=2))
        max_active = 0
        async def completed() -> bool:
            nonlocal max_active
            pods = await _pods(client, "pi")
            max_active = max(max_active, sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Pending"))
            await _finish_running(client, "pi")
            return _cond(await _status(client, "pi"), "Complete") is not None
        await eventually(completed, timeout=30, what="Complete")
        status = await _status(client, "pi")
        assert status["succeeded"] == 3 and not status.get("failed") and not status.get("active")
        assert status.get("completionTime") and status.get("startTime")
        for ctype in ("SuccessCriteriaMet", "Complete"):
            cond = _cond(status, ctype)
            assert cond is not None and (cond["status"], cond["reason"]) == ("True", "CompletionsReached")
        assert not status.get("uncountedTerminatedPods")
        pods = await _pods(client, "pi")
        assert len(pods) == 3, "exactly `completions` pods were run"
        assert max_active <= 2
        assert all(ju.TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []) for p in pods)
        assert all(p["metadata"]["name"].startswith("pi-") for p in pods)


async def test_indexed_job_gives_each_pod_its_index(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("idx", completions=3, parallelism=3, completionMode="Indexed"))

        async def three() -> bool:
            return len(await _pods(client, "idx")) == 3
        await eventually(three, what="3 pods")
        pods = await _pods(client, "idx")
        indexes = sorted(int(p["metadata"]["annotations"][ju.COMPLETION_INDEX]) for p in pods)
        assert indexes == [0, 1, 2]
        for pod in pods:
            index = pod["metadata"]["annotations"][ju.COMPLETION_INDEX]
            assert pod["metadata"]["labels"][ju.COMPLETION_INDEX] == index
            assert pod["spec"]["hostname"] == f"idx-{index}"
            assert pod["metadata"]["name"].startswith(f"idx-{index}-")
            env = pod["spec"]["containers"][0]["env"]
            assert env[0]["name"] == "JOB_COMPLETION_INDEX"
            assert env[0]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{ju.COMPLETION_INDEX}']"
        await finish(client, next(p for p in pods if p["metadata"]["annotations"][ju.COMPLETION_INDEX] == "1"))

        async def one_done() -> bool:
            return (await _status(client, "idx")).get("completedIndexes") == "1"
        await eventually(one_done, what="completedIndexes 1")

        async def done() -> bool:
            await _finish_running(client, "idx")
            return _cond(await _status(client, "idx"), "Complete") is not None
        await eventually(done, timeout=30, what="Complete")
        assert (await _status(client, "idx"))["completedIndexes"] == "0-2"


async def test_backoff_limit_exceeded_fails_the_job(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("bad", backoffLimit=1))

        async def failed() -> bool:
            await _finish_running(client, "bad", exit_code=1)
            return _cond(await _status(client, "bad"), "Failed") is not None
        await eventually(failed, timeout=30, what="Failed")
        status = await _status(client, "bad")
        cond = _cond(status, "Failed")
        assert cond is not None and cond["reason"] == "BackoffLimitExceeded"
        assert cond["message"] == "Job has reached the specified backoff limit"
        assert _cond(status, "FailureTarget") is not None
        assert status["failed"] == 2 and len(await _pods(client, "bad")) == 2


@pytest.mark.parametrize(("rules", "code", "pod_conditions", "reason"), [
    pytest.param([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}], 42, None,
                 "PodFailurePolicy", id="failjob-exit-code"),
    pytest.param([{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                  {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}}], 137,
                 [{"type": "DisruptionTarget", "status": "True"}], None, id="ignore-disruption"),
])
async def test_pod_failure_policy(tmp_path: Path, rules: list[Obj], code: int, pod_conditions: list[Obj] | None,
                                  reason: str | None) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("pfp", backoffLimit=6, podFailurePolicy={"rules": rules}))

        async def one() -> bool:
            return len(await _pods(client, "pfp")) == 1
        await eventually(one, what="a pod")
        first = (await _pods(client, "pfp"))[0]
        await finish(client, first, code, pod_conditions)
        if reason is not None:
            async def failed() -> bool:
                return _cond(await _status(client, "pfp"), "Failed") is not None
            await eventually(failed, timeout=30, what="Failed")
            cond = _cond(await _status(client, "pfp"), "Failed")
            assert cond is not None and cond["reason"] == reason
            assert f"failed with exit code {code} matching FailJob rule at index 0" in cond["message"]
        else:
            async def replaced() -> bool:
                return len(await _pods(client, "pfp")) == 2
            await eventually(replaced, what="a replacement pod")
            status = await _status(client, "pfp")
            assert not status.get("failed"), "an ignored failure is not counted"


async def test_active_deadline_fails_the_job_and_deletes_its_pods(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("slow", activeDeadlineSeconds=1, parallelism=2, completions=4))

        async def failed() -> bool:
            return _cond(await _status(client, "slow"), "Failed") is not None
        await eventually(failed, timeout=30, what="Failed")
        cond = _cond(await _status(client, "slow"), "Failed")
        assert cond is not None and cond["reason"] == "DeadlineExceeded"
        assert cond["message"] == "Job was active longer than specified deadline"
        assert [p for p in await _pods(client, "slow") if not p["metadata"].get("deletionTimestamp")] == []


async def test_suspend_deletes_active_pods_and_resume_recreates_them(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("sus", suspend=True, parallelism=2, completions=2))

        async def suspended() -> bool:
            cond = _cond(await _status(client, "sus"), "Suspended")
            return cond is not None and cond["status"] == "True"
        await eventually(suspended, what="Suspended")
        assert await _pods(client, "sus") == []
        await client.patch(JOBS, "sus", {"spec": {"suspend": False}}, namespace="default")

        async def resumed() -> bool:
            cond = _cond(await _status(client, "sus"), "Suspended")
            return cond is not None and cond["status"] == "False" and len(await _pods(client, "sus")) == 2
        await eventually(resumed, what="resumed with 2 pods")


async def test_job_sync_before_the_cache_catches_up_creates_nothing(tmp_path: Path) -> None:
    """Without expectations, a second sync on a stale pod cache would start the pods again."""
    async with cluster(tmp_path) as client:
        ctl = JobController(client, InformerFactory(client), ControllerManagerSettings())
        job = await client.create(JOBS, _job("exp", completions=3, parallelism=3), namespace="default")
        key = object_key(job)
        ctl.job_informer.store.upsert(job)
        await ctl.sync(key)
        created = await _pods(client, "exp")
        assert len(created) == 3
        ctl.pod_informer.store.upsert(created[0])
        ctl._pod_added(created[0])
        for _ in range(2):
            ctl.job_informer.store.upsert(await client.get(JOBS, "exp", namespace="default"))
            await ctl.sync(key)
        assert len(await _pods(client, "exp")) == 3
        assert ctl.expectations.pending(key) == (2, 0)
        for pod in created[1:]:
            ctl.pod_informer.store.upsert(pod)
            ctl._pod_added(pod)
        assert ctl.expectations.satisfied(key)


@pytest.mark.parametrize(("indexes", "text"), [
    pytest.param([], "", id="empty"),
    pytest.param([0, 1, 2, 5], "0-2,5", id="range-and-single"),
    pytest.param([7, 3, 4], "3-4,7", id="unsorted"),
])
def test_index_intervals_round_trip(indexes: list[int], text: str) -> None:
    assert ju.format_indexes(indexes) == text
    assert ju.parse_indexes(text) == set(indexes)


@pytest.mark.parametrize(("failures", "delay"), [
    pytest.param(0, 0.0, id="none"), pytest.param(1, 10.0, id="first"), pytest.param(3, 40.0, id="third"),
    pytest.param(10, 360.0, id="capped"),
])
def test_backoff_doubles_from_ten_seconds_to_six_minutes(failures: int, delay: float) -> None:
    assert ju.backoff_delay(failures) == delay


async def test_pod_recreation_waits_for_the_backoff(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        ctl = JobController(client, InformerFactory(client), ControllerManagerSettings(), backoff_base=3600.0)
        job = await client.create(JOBS, _job("wait", backoffLimit=3), namespace="default")
        key = object_key(job)

        async def sync() -> None:
            ctl.job_informer.store.upsert(await client.get(JOBS, "wait", namespace="default"))
            for pod in await _pods(client, "wait"):
                if ctl.pod_informer.store.get(object_key(pod)) is None:
                    ctl._pod_added(pod)
                ctl.pod_informer.store.upsert(pod)
            await ctl.sync(key)
        await sync()
        await sync()
        assert len(await _pods(client, "wait")) == 1
        await _finish_running(client, "wait", exit_code=1)
        await sync()
        await sync()
        assert (await _status(client, "wait")).get("failed") == 1
        assert len(await _pods(client, "wait")) == 1, "replaced before the backoff elapsed"
        assert ctl.backoff[key][0] == 1
        ctl.backoff_base = 0.0
        await sync()
        assert len(await _pods(client, "wait")) == 2, "replaced once the backoff elapsed"


async def test_ttl_after_finished_deletes_the_job_and_its_pods(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client, manager(client, controllers=("job", "ttl-after-finished",
                                                                       "garbagecollector")):
        await client.create(JOBS, _job("ttl", ttlSecondsAfterFinished=1))

        async def gone() -> bool:
            await _finish_running(client, "ttl")
            try:
                await client.get(JOBS, "ttl", namespace="default")
            except errors.NotFoundError:
                return True
            return False
        await eventually(gone, timeout=60, what="the job deleted after its TTL")

        async def no_pods() -> bool:
            return await _pods(client, "ttl") == []
        await eventually(no_pods, timeout=60, what="its pods deleted")


@pytest.mark.parametrize(("job", "expected"), [
    pytest.param({"spec": {}, "status": {"conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}, None, id="no-ttl"),
    pytest.param({"spec": {"ttlSecondsAfterFinished": 60}, "status": {}}, None, id="running"),
    pytest.param({"spec": {"ttlSecondsAfterFinished": 60}, "status": {"conditions": [
        {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}},
        "2026-01-01T00:01:00+00:00", id="failed"),
])
def test_ttl_expiry(job: Obj, expected: str | None) -> None:
    at = expires_at({"metadata": {}, **job})
    assert (at.isoformat() if at else None) == expected


async def test_deleting_a_running_job_releases_its_pods(tmp_path: Path) -> None:
    """Background deletion: the Job is gone at once; its pods' tracking finalizers are removed
    so the garbage collector's deletions complete instead of leaving them terminating forever."""
    async with cluster(tmp_path) as client, manager(client, controllers=("job", "garbagecollector")):
        await client.create(JOBS, _job("gone", parallelism=2, completions=4))

        async def two() -> bool:
            return len(await _pods(client, "gone")) == 2
        await eventually(two, what="2 pods")
        await client.delete(JOBS, "gone", namespace="default", propagation_policy="Background")

        async def no_pods() -> bool:
            return await _pods(client, "gone") == []
        await eventually(no_pods, timeout=60, what="the pods deleted for good")


async def test_finalizer_removal_ignores_a_stale_resource_version(tmp_path: Path) -> None:
    """The kubelet writes a finished pod's status again while the controller works from its cache:
    only the tracking finalizer goes (others stay), with no conflict to retry."""
    async with cluster(tmp_path) as client:
        ctl = JobController(client, InformerFactory(client), ControllerManagerSettings())
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "namespace": "default",
                            "finalizers": [ju.TRACKING_FINALIZER, "example.com/keep"]},
               "spec": {"containers": [{"name": "main", "image": "busybox"}]}}
        stale = await client.create(PODS, pod)
        fresh = await client.patch(PODS, "p", {"metadata": {"labels": {"touched": "yes"}}}, namespace="default")
        assert fresh["metadata"]["resourceVersion"] != stale["metadata"]["resourceVersion"]
        assert await ctl._remove_finalizers("default/j", [stale]) == []
        after = await client.get(PODS, "p", namespace="default")
        assert after["metadata"]["finalizers"] == ["example.com/keep"]
        assert ctl.finalizers_pending["default/j"] == {stale["metadata"]["uid"]}


async def test_a_sync_reads_its_own_status_write_while_the_cache_lags(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        ctl = JobController(client, InformerFactory(client), ControllerManagerSettings())

        def job(rv: str, succeeded: int) -> Obj:
            return {"metadata": {"name": "j", "namespace": "default", "resourceVersion": rv},
                    "status": {"succeeded": succeeded}}
        ctl.status_written("default/j", job("1", 0), job("2", 0))
        ctl.status_written("default/j", job("2", 0), job("3", 1))
        for stale in ("1", "2"):
            assert ctl._freshest("default/j", job(stale, 0)) == job("3", 1)
        assert ctl._freshest("default/j", job("5", 1)) == job("5", 1), "a newer copy wins"
        assert ctl._freshest("default/j", job("1", 0)) == job("1", 0), "the record is gone once caught up"
        assert ctl._freshest("default/j", None) is None

