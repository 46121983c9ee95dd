"""Defaults and validation of Job, CronJob, StatefulSet, DaemonSet and ReplicationController, with
Kubernetes' field paths and messages; cron schedules as the standard parser reads them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from machinery import api, cronschedule
from machinery.api.defaults_workloads import generate_job_selector
from machinery.errors import InvalidError

Obj = dict[str, Any]


def _template(restart: str = "Always", labels: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"labels": labels or {"app": "x"}},
            "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]}}


JOB: Obj = {"metadata": {"name": "j", "namespace": "default"}, "spec": {"template": _template("Never")}}
CRONJOB: Obj = {"metadata": {"name": "cj", "namespace": "default"},
                "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": _template("OnFailure")}}}}
STS: Obj = {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "x"}}, "template": _template()}}
DS: Obj = {"metadata": {"name": "ds", "namespace": "default"},
           "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": _template()}}
RC: Obj = {"metadata": {"name": "rc", "namespace": "default"}, "spec": {"template": _template()}}


def _prepared(kind: str, api_version: str, body: Obj) -> Obj:
    """Decoded and defaulted; a Job also gets its UID and generated selector, as on create."""
    obj, _ = api.prepare(copy.deepcopy(body), api_version=api_version, kind=kind)
    if kind == "Job":
        obj["metadata"]["uid"] = "0f4e2a9c-0000-4000-8000-000000000001"
        generate_job_selector(obj)
    return obj


def _errors(kind: str, api_version: str, body: Obj, old: Obj | None = None) -> str:
    try:
        api.validate(_prepared(kind, api_version, body), old=old)
    except InvalidError as exc:
        return str(exc)
    return ""


def _with(base: Obj, path: str, value: Any) -> Obj:
    body = copy.deepcopy(base)
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return body


def test_job_defaults() -> None:
    job = _prepared("Job", "batch/v1", JOB)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"], spec["completionMode"],
            spec["suspend"], spec["podReplacementPolicy"]) == (1, 1, 6, "NonIndexed", False, "TerminatingOrFailed")
    only_parallelism = _prepared("Job", "batch/v1", _with(JOB, "spec.parallelism", 3))["spec"]
    assert "completions" not in only_parallelism, "a work queue job has no completions"


def test_other_defaults() -> None:
    cj = _prepared("CronJob", "batch/v1", CRONJOB)["spec"]
    assert (cj["concurrencyPolicy"], cj["suspend"], cj["successfulJobsHistoryLimit"],
            cj["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    sts = _prepared("StatefulSet", "apps/v1", STS)["spec"]
    assert (sts["replicas"], sts["podManagementPolicy"], sts["updateStrategy"], sts["revisionHistoryLimit"],
            sts["persistentVolumeClaimRetentionPolicy"]) == (
        1, "OrderedReady", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}, 10,
        {"whenDeleted": "Retain", "whenScaled": "Retain"})
    ds = _prepared("DaemonSet", "apps/v1", DS)["spec"]
    assert ds["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    rc = _prepared("ReplicationController", "v1", RC)
    assert rc["spec"]["selector"] == {"app": "x"} and rc["metadata"]["labels"] == {"app": "x"}


@pytest.mark.parametrize(("kind", "api_version", "body", "message"), [
    pytest.param("Job", "batch/v1", _with(JOB, "spec.template.spec.restartPolicy", "Always"),
                 'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", '
                 '"Never"', id="job-restart-always"),
    pytest.param("Job", "batch/v1", _with(_with(JOB, "spec.completionMode", "Indexed"), "spec.parallelism", 2),
                 "spec.completions: Required value: when completion mode is Indexed", id="job-indexed-completions"),
    pytest.param("Job", "batch/v1", _with(JOB, "spec.backoffLimit", -1),
                 "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0", id="job-backoff"),
    pytest.param("Job", "batch/v1", _with(_with(JOB, "spec.template.spec.restartPolicy", "OnFailure"),
                                          "spec.podFailurePolicy",
                                          {"rules": [{"action": "FailJob",
                                                      "onExitCodes": {"operator": "In", "values": [1]}}]}),
                 'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when '
                 "podFailurePolicy is specified", id="job-failure-policy-restart"),
    pytest.param("CronJob", "batch/v1", _with(CRONJOB, "spec.schedule", "61 * * * *"),
                 'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61',
                 id="cron-range"),
    pytest.param("CronJob", "batch/v1", _with(CRONJOB, "spec.schedule", "TZ=UTC * * * * *"),
                 "cannot use TZ or CRON_TZ in schedule, use timeZone field instead", id="cron-tz"),
    pytest.param("CronJob", "batch/v1", _with(CRONJOB, "spec.timeZone", "Local"),
                 "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
                 id="cron-local"),
    pytest.param("CronJob", "batch/v1", _with(CRONJOB, "metadata.name", "x" * 53),
                 "must be no more than 52 characters", id="cron-name"),
    pytest.param("CronJob", "batch/v1", _with(CRONJOB, "spec.concurrencyPolicy", "Sometimes"),
                 'spec.concurrencyPolicy: Unsupported value: "Sometimes"', id="cron-policy"),
    pytest.param("StatefulSet", "apps/v1", _with(STS, "spec.podManagementPolicy", "Random"),
                 'spec.podManagementPolicy: Unsupported value: "Random"', id="sts-policy"),
    pytest.param("StatefulSet", "apps/v1", _with(STS, "spec.template", _template(labels={"app": "y"})),
                 'spec.template.metadata.labels: Invalid value: map[string]string{"app":"y"}: `selector` does not '
                 "match template `labels`", id="sts-selector"),
    pytest.param("DaemonSet", "apps/v1", _with(DS, "spec.template.spec.restartPolicy", "Never"),
                 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
                 id="ds-restart"),
    pytest.param("ReplicationController", "v1", _with(RC, "spec.selector", {"app": "other"}),
                 "`selector` does not match template `labels`", id="rc-selector"),
])
def test_invalid_objects_get_kubernetes_messages(kind: str, api_version: str, body: Obj, message: str) -> None:
    assert message in _errors(kind, api_version, body)


def test_valid_objects_pass() -> None:
    assert _errors("Job", "batch/v1", _with(_with(JOB, "spec.completions", 1), "spec.parallelism", 5)) == "", \
        "completions < parallelism is valid"
    assert _errors("CronJob", "batch/v1", _with(CRONJOB, "spec.timeZone", "Europe/Paris")) == ""
    for kind, api_version, body in (("StatefulSet", "apps/v1", STS), ("DaemonSet", "apps/v1", DS),
                                    ("ReplicationController", "v1", RC)):
        assert _errors(kind, api_version, body) == ""


def test_statefulset_mounts_may_name_claim_templates() -> None:
    body = _with(STS, "spec.volumeClaimTemplates", [{"metadata": {"name": "www"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}])
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "www", "mountPath": "/data"}]
    assert _errors("StatefulSet", "apps/v1", body) == ""
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "other", "mountPath": "/data"}]
    assert 'volumeMounts[0].name: Not found: "other"' in _errors("StatefulSet", "apps/v1", body)


def test_statefulset_updates_limited_to_the_mutable_fields() -> None:
    old = _prepared("StatefulSet", "apps/v1", STS)
    assert _errors("StatefulSet", "apps/v1", _with(STS, "spec.replicas", 5), old=old) == ""
    assert "updates to statefulset spec for fields other than" in _errors(
        "StatefulSet", "apps/v1", _with(STS, "spec.serviceName", "other"), old=old)


@pytest.mark.parametrize(("schedule", "error"), [
    pytest.param("@hourly", None, id="descriptor"),
    pytest.param("0 0 ? * MON-FRI", None, id="question-mark-and-names"),
    pytest.param("* * * *", "expected exactly 5 fields, found 4: * * * *", id="four-fields"),
    pytest.param("*/x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax',
                 id="not-a-number"),
    pytest.param("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2", id="backwards"),
    pytest.param("*/0 * * * *", "step of range should be a positive number: */0", id="zero-step"),
    pytest.param("@fortnightly", "unrecognized descriptor: @fortnightly", id="descriptor-unknown"),
])
def test_cron_schedule_parsing(schedule: str, error: str | None) -> None:
    if error is None:
        cronschedule.check(schedule)
    else:
        with pytest.raises(cronschedule.ScheduleError) as exc:
            cronschedule.check(schedule)
        assert str(exc.value) == error
