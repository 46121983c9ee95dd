"""Server-side printing of Job, CronJob, StatefulSet, DaemonSet, ReplicationController and
ControllerRevision rows (Kubernetes' printers.go cells)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apiserver.printing.workload_kinds import (
    controllerrevision_cells,
    cronjob_cells,
    daemonset_cells,
    job_cells,
    rc_cells,
    statefulset_cells,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
META = {"name": "x", "creationTimestamp": "2026-01-01T11:58:00Z"}
TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def _job(spec: dict[str, Any], status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {**META, **meta}, "spec": {"template": TEMPLATE, **spec}, "status": status}


@pytest.mark.parametrize(("job", "cells"), [
    pytest.param(_job({"completions": 3}, {"succeeded": 1, "startTime": "2026-01-01T11:59:00Z"}),
                 ["Running", "1/3", "60s"], id="running"),
    pytest.param(_job({"completions": 1}, {"succeeded": 1, "startTime": "2026-01-01T11:59:00Z",
                                           "completionTime": "2026-01-01T11:59:05Z",
                                           "conditions": [{"type": "Complete", "status": "True"}]}),
                 ["Complete", "1/1", "5s"], id="complete"),
    pytest.param(_job({"parallelism": 3}, {"conditions": [{"type": "Failed", "status": "True"}]}),
                 ["Failed", "0/1 of 3", ""], id="failed-work-queue"),
    pytest.param(_job({"completions": 2, "suspend": True}, {"conditions": [{"type": "Suspended", "status": "True"}]}),
                 ["Suspended", "0/2", ""], id="suspended"),
    pytest.param(_job({"completions": 2}, {}, deletionTimestamp="2026-01-01T12:00:00Z"),
                 ["Terminating", "0/2", ""], id="terminating"),
])
def test_job_cells(job: dict[str, Any], cells: list[Any]) -> None:
    assert job_cells(job, NOW)[1:4] == cells


def test_cronjob_statefulset_daemonset_rc_revision_cells() -> None:
    cj = {"metadata": META, "spec": {"schedule": "*/5 * * * *", "suspend": False,
                                     "jobTemplate": {"spec": {"template": TEMPLATE}}},
          "status": {"active": [{"name": "a"}], "lastScheduleTime": "2026-01-01T11:55:00Z"}}
    assert cronjob_cells(cj, NOW)[:7] == ["x", "*/5 * * * *", "<none>", "False", 1, "5m", "2m"]
    sts = {"metadata": META, "spec": {"replicas": 3, "template": TEMPLATE}, "status": {"readyReplicas": 2}}
    assert statefulset_cells(sts, NOW) == ["x", "2/3", "2m", "c", "busybox"]
    ds = {"metadata": META, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": TEMPLATE},
          "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                     "updatedNumberScheduled": 3, "numberAvailable": 2}}
    assert daemonset_cells(ds, NOW) == ["x", 3, 3, 2, 3, 2, "<none>", "2m", "c", "busybox", "a=b"]
    rc = {"metadata": META, "spec": {"replicas": 2, "selector": {"app": "x"}, "template": TEMPLATE},
          "status": {"replicas": 2, "readyReplicas": 1}}
    assert rc_cells(rc, NOW) == ["x", 2, 2, 1, "2m", "c", "busybox", "app=x"]
    rev = {"metadata": {**META, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                                     "controller": True}]}, "revision": 2}
    assert controllerrevision_cells(rev, NOW) == ["x", "statefulset.apps/web", 2, "2m"]
