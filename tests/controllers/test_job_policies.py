"""Job controller against the embedded apiserver, the policies of Kubernetes 1.29-1.33:
``podReplacementPolicy`` and ``status.terminating``, ``backoffLimitPerIndex`` with
``maxFailedIndexes`` and ``FailIndex``, ``successPolicy``; the pure rules behind them; the 422
answer for a bad policy."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers import job_perindex as jp
from controllers import job_successpolicy as jsp
from controllers import job_util as ju
from controllers.job import JobController
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import ApiClient, InformerFactory
from machinery.meta import parse_rfc3339
from machinery.resources import JOBS, PODS
from tests.controllers.helpers import cluster, eventually, running_controller
from tests.controllers.test_job import _cond, _finish_running, _job, _pods, _status, finish

Obj = dict[str, Any]


@contextlib.asynccontextmanager
async def _running(tmp_path: Path) -> AsyncIterator[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> JobController:
        return JobController(client, factory, ControllerManagerSettings(), backoff_base=0.05)
    async with running_controller(tmp_path, make, workers=2, name="job") as client:
        yield client


def _index(pod: Obj) -> int:
    return int(pod["metadata"]["annotations"][ju.COMPLETION_INDEX])


def _live(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and ju.phase(p) not in ("Succeeded", "Failed")]


async def _wait_pods(client: ApiClient, job: str, count: int) -> list[Obj]:
    async def enough() -> bool:
        return len(_live(await _pods(client, job))) >= count
    await eventually(enough, what=f"{count} running pods of {job}")
    return _live(await _pods(client, job))


# -- podReplacementPolicy ------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["Failed", "TerminatingOrFailed"])
async def test_pod_replacement_policy(tmp_path: Path, policy: str) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("rep", podReplacementPolicy=policy))
        first = (await _wait_pods(client, "rep", 1))[0]
        await client.delete(PODS, first["metadata"]["name"], namespace="default")
        if policy == "TerminatingOrFailed":
            async def replaced() -> bool:
                pods = _live(await _pods(client, "rep"))
                return len(pods) == 1 and pods[0]["metadata"]["uid"] != first["metadata"]["uid"]
            await eventually(replaced, what="a replacement while the old pod terminates")
            assert (await _status(client, "rep")).get("failed") == 1
            return

        async def terminating() -> bool:
            return (await _status(client, "rep")).get("terminating") == 1
        await eventually(terminating, what="status.terminating 1")
        pods = await _pods(client, "rep")
        assert [p["metadata"]["uid"] for p in pods] == [first["metadata"]["uid"]], \
            "no replacement while the old pod is terminating"
        status = await _status(client, "rep")
        assert not status.get("failed") and not status.get("active")
        await finish(client, pods[0], exit_code=137)

        async def replaced_after_failure() -> bool:
            pods = _live(await _pods(client, "rep"))
            status = await _status(client, "rep")
            return len(pods) == 1 and status.get("failed") == 1 and not status.get("terminating")
        await eventually(replaced_after_failure, what="a replacement once the old pod failed")


# -- backoffLimitPerIndex ------------------------------------------------------------------------

async def test_backoff_limit_per_index_fails_only_that_index(tmp_path: Path) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("pi", completionMode="Indexed", completions=3, parallelism=3,
                                       backoffLimitPerIndex=1))
        pods = await _wait_pods(client, "pi", 3)
        assert {p["metadata"]["annotations"][jp.FAILURE_COUNT] for p in pods} == {"0"}
        await finish(client, next(p for p in pods if _index(p) == 1), exit_code=1)

        async def retried() -> bool:
            return any(_index(p) == 1 for p in _live(await _pods(client, "pi")))
        await eventually(retried, what="index 1 retried")
        second = next(p for p in _live(await _pods(client, "pi")) if _index(p) == 1)
        assert second["metadata"]["annotations"][jp.FAILURE_COUNT] == "1"
        assert (await _status(client, "pi")).get("failedIndexes") == "", "one retry left"
        await finish(client, second, exit_code=1)

        async def index_failed() -> bool:
            return (await _status(client, "pi")).get("failedIndexes") == "1"
        await eventually(index_failed, what="failedIndexes 1")
        assert not any(_index(p) == 1 for p in _live(await _pods(client, "pi"))), "a failed index never runs again"
        assert _cond(await _status(client, "pi"), "Failed") is None, "the other indexes keep running"

        async def failed() -> bool:
            await _finish_running(client, "pi")
            return _cond(await _status(client, "pi"), "Failed") is not None
        await eventually(failed, timeout=30, what="Failed")
        status = await _status(client, "pi")
        cond = _cond(status, "Failed")
        assert cond is not None and (cond["reason"], cond["message"]) == ("FailedIndexes", "Job has failed indexes")
        assert (status["completedIndexes"], status["failedIndexes"], status["failed"], status["succeeded"]) == \
            ("0,2", "1", 2, 2)
        assert all(not ju.has_finalizer(p) for p in await _pods(client, "pi"))


@pytest.mark.parametrize(("extra", "exit_code", "reason"), [
    pytest.param({"backoffLimitPerIndex": 0, "maxFailedIndexes": 0}, 1, "MaxFailedIndexesExceeded",
                 id="max-failed-indexes"),
    pytest.param({"backoffLimitPerIndex": 5, "maxFailedIndexes": 0, "podFailurePolicy": {"rules": [
        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]}}, 42,
        "MaxFailedIndexesExceeded", id="fail-index-action"),
])
async def test_failed_indexes_beyond_the_maximum_fail_the_job(tmp_path: Path, extra: Obj, exit_code: int,
                                                             reason: str) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("mx", completionMode="Indexed", completions=4, parallelism=2, **extra))
        pods = await _wait_pods(client, "mx", 2)
        await finish(client, pods[0], exit_code=exit_code)

        async def failed() -> bool:
            return _cond(await _status(client, "mx"), "Failed") is not None
        await eventually(failed, timeout=30, what="Failed")
        status = await _status(client, "mx")
        cond = _cond(status, "Failed")
        assert cond is not None and cond["reason"] == reason
        assert cond["message"] == "Job has exceeded the specified maximal number of failed indexes"
        assert status["failedIndexes"] == str(_index(pods[0]))
        assert _live(await _pods(client, "mx")) == [], "the running pods were terminated"


# -- successPolicy ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("rules", "succeed", "message"), [
    pytest.param([{"succeededIndexes": "0"}], [0], "Matched rules at index 0", id="indexes"),
    pytest.param([{"succeededIndexes": "3-4"}, {"succeededCount": 2}], [1, 2],
                 "Matched rules at index 1", id="count"),
])
async def test_success_policy_completes_early_and_stops_the_rest(tmp_path: Path, rules: list[Obj],
                                                                 succeed: list[int], message: str) -> None:
    async with _running(tmp_path) as client:
        await client.create(JOBS, _job("sp", completionMode="Indexed", completions=5, parallelism=5,
                                       successPolicy={"rules": rules}))
        pods = await _wait_pods(client, "sp", 5)
        for pod in pods:
            if _index(pod) in succeed:
                await finish(client, pod)

        async def complete() -> bool:
            return _cond(await _status(client, "sp"), "Complete") is not None
        await eventually(complete, timeout=30, what="Complete")
        status = await _status(client, "sp")
        for ctype in ("SuccessCriteriaMet", "Complete"):
            cond = _cond(status, ctype)
            assert cond is not None and (cond["status"], cond["reason"], cond["message"]) == \
                ("True", "SuccessPolicy", message)
        assert status["completedIndexes"] == ju.format_indexes(succeed)
        assert status.get("completionTime") and not status.get("active") and not status.get("terminating")
        assert _live(await _pods(client, "sp")) == [], "the other pods were terminated"


# -- the rules, pure ------------------------------------------------------------------------------

@pytest.mark.parametrize(("rules", "succeeded", "expected"), [
    pytest.param([{"succeededIndexes": "0,2"}], {0}, None, id="indexes-partly"),
    pytest.param([{"succeededIndexes": "0,2"}], {0, 2, 3}, "Matched rules at index 0", id="indexes-all"),
    pytest.param([{"succeededIndexes": "0-3", "succeededCount": 2}], {1, 3}, "Matched rules at index 0",
                 id="count-within-indexes"),
    pytest.param([{"succeededIndexes": "0-3", "succeededCount": 2}], {1, 4}, None, id="count-outside-indexes"),
    pytest.param([{"succeededIndexes": "9"}, {"succeededCount": 1}], {4}, "Matched rules at index 1",
                 id="invalid-indexes-skipped"),
    pytest.param([{"succeededCount": 1}], set(), None, id="nothing-succeeded"),
])
def test_success_policy_rules(rules: list[Obj], succeeded: set[int], expected: str | None) -> None:
    assert jsp.match({"rules": rules}, 5, succeeded) == expected


def _failed_pod(count: int, ignored: int = 0, code: int = 1) -> Obj:
    annotations = {jp.FAILURE_COUNT: str(count), ju.COMPLETION_INDEX: "0"}
    if ignored:
        annotations[jp.IGNORED_FAILURE_COUNT] = str(ignored)
    return {"metadata": {"uid": "u", "annotations": annotations, "finalizers": [ju.TRACKING_FINALIZER]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "main", "state": {"terminated": {
                "exitCode": code, "finishedAt": "2026-01-01T00:00:00Z"}}}]}}


IGNORE_137 = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [137]}}]}


@pytest.mark.parametrize(("spec", "pod", "index_failed", "annotations"), [
    pytest.param({"backoffLimitPerIndex": 1}, _failed_pod(0), False, {jp.FAILURE_COUNT: "1"}, id="first-failure"),
    pytest.param({"backoffLimitPerIndex": 1}, _failed_pod(1), True, {jp.FAILURE_COUNT: "2"}, id="limit-reached"),
    pytest.param({"backoffLimitPerIndex": 0, "podFailurePolicy": IGNORE_137}, _failed_pod(0, 1, code=137), False,
                 {jp.FAILURE_COUNT: "0", jp.IGNORED_FAILURE_COUNT: "2"}, id="ignored"),
])
def test_index_failure_counting(spec: Obj, pod: Obj, index_failed: bool, annotations: dict[str, str]) -> None:
    full = {"completionMode": "Indexed", "completions": 1, **spec}
    assert jp.is_index_failed(full, pod) is index_failed
    assert jp.replacement_annotations(full, pod) == annotations


def test_index_backoff_counts_every_failure_of_the_index() -> None:
    pod = _failed_pod(1, 1)
    finished = ju.finished_at(pod, parse_rfc3339("2026-01-01T00:00:00Z"))
    assert jp.remaining(pod, finished, base=10.0) == 40.0, "third failure: 10 s doubled twice"
    assert jp.remaining(None, finished, base=10.0) == 0.0


async def test_a_bad_policy_is_refused_with_422_naming_the_field(tmp_path: Path) -> None:
    async with cluster(tmp_path) as client:
        with pytest.raises(errors.InvalidError) as caught:
            await client.create(JOBS, _job("bad", backoffLimitPerIndex=1), namespace="default")
        assert caught.value.code == 422
        assert [c.field for c in caught.value.causes] == ["spec.backoffLimitPerIndex"]
        assert "requires indexed completion mode" in str(caught.value)
