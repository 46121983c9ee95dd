"""Printers for Job, CronJob, StatefulSet, DaemonSet, ReplicationController and
ControllerRevision, with the columns of Kubernetes' ``printers.go``.

Registered in :mod:`apiserver.printing.table` through :data:`WORKLOAD_KIND_PRINTERS`. A Job's
STATUS is its first terminal or notable condition (Complete, Failed, Terminating, Suspended,
FailureTarget, SuccessCriteriaMet) else ``Running``; COMPLETIONS is ``succeeded/completions`` (or
``n/1 of <parallelism>`` for a work queue); DURATION runs from start to completion (or now).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiserver.printing.columns import AGE, CONTAINERS, IMAGES, NAME, SELECTOR, Column, Printer
from apiserver.printing.humanize import (
    NONE,
    container_cells,
    dig,
    format_label_selector,
    format_labels,
    human_duration,
    parse_time,
    since,
)

Obj = dict[str, Any]

JOB_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Status", "string", description="Status of the job."),
    Column("Completions", "string", description="The desired number of successfully finished pods the job "
                                                "should be run with."),
    Column("Duration", "string", description="Time required to complete the job."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)
CRONJOB_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Schedule", "string", description="The schedule in Cron format."),
    Column("Timezone", "string", description="The time zone name for the given schedule."),
    Column("Suspend", "boolean", description="Whether subsequent executions are suspended."),
    Column("Active", "integer", description="A list of pointers to currently running jobs."),
    Column("Last Schedule", "string", description="Information when was the last time the job was successfully "
                                                  "scheduled."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)
STATEFULSET_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Ready", "string", description="Number of the pod with ready state"),
    AGE, CONTAINERS, IMAGES,
)
DAEMONSET_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Desired", "integer", description="The total number of nodes that should be running the daemon pod."),
    Column("Current", "integer", description="The number of nodes that are running at least 1 daemon pod."),
    Column("Ready", "integer", description="The number of nodes that should be running the daemon pod and have "
                                           "one or more of the daemon pod running and ready."),
    Column("Up-to-date", "integer", description="The total number of nodes that are running updated daemon pod."),
    Column("Available", "integer", description="The number of nodes that should be running the daemon pod and "
                                               "have one or more of the daemon pod running and available."),
    Column("Node Selector", "string", description="Pods are scheduled on nodes matching this selector."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)
RC_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Desired", "integer", description="Number of desired pods."),
    Column("Current", "integer", description="Number of actual replicas."),
    Column("Ready", "integer", description="Number of ready replicas."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)
CONTROLLERREVISION_COLUMNS: tuple[Column, ...] = (
    NAME,
    Column("Controller", "string", description="Controller of the object."),
    Column("Revision", "integer", description="Revision of the ControllerRevision."),
    AGE,
)


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) else default


def _bool_ptr(value: Any) -> str:
    """Kubernetes' ``printBoolPtr``: ``True``/``False``, ``<unset>`` when absent."""
    return "<unset>" if value is None else ("True" if value else "False")


def _has(status: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in status.get("conditions") or [])


def job_status(obj: Obj) -> str:
    status = obj.get("status") or {}
    for ctype in ("Complete", "Failed"):
        if _has(status, ctype):
            return ctype
    if dig(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _has(status, ctype):
            return ctype
    return "Running"


def job_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec['completions'])}"
    elif _int(spec.get("parallelism"), 1) > 1:
        completions = f"{succeeded}/1 of {_int(spec.get('parallelism'))}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration((end or now) - start)
    names, images = container_cells(dig(spec, "template", "spec", "containers"))
    return [dig(obj, "metadata", "name") or "", job_status(obj), completions, duration,
            since(dig(obj, "metadata", "creationTimestamp"), now), names, images,
            format_label_selector(spec.get("selector"))]


def cronjob_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    last = status.get("lastScheduleTime")
    names, images = container_cells(dig(spec, "jobTemplate", "spec", "template", "spec", "containers"))
    return [dig(obj, "metadata", "name") or "", spec.get("schedule", ""), spec.get("timeZone") or NONE,
            _bool_ptr(spec.get("suspend")), len(status.get("active") or []), since(last, now) if last else NONE,
            since(dig(obj, "metadata", "creationTimestamp"), now), names, images,
            format_label_selector(dig(spec, "jobTemplate", "spec", "selector"))]


def statefulset_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = container_cells(dig(spec, "template", "spec", "containers"))
    return [dig(obj, "metadata", "name") or "", f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), 1)}",
            since(dig(obj, "metadata", "creationTimestamp"), now), names, images]


def daemonset_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = container_cells(dig(spec, "template", "spec", "containers"))
    return [dig(obj, "metadata", "name") or "", _int(status.get("desiredNumberScheduled")),
            _int(status.get("currentNumberScheduled")), _int(status.get("numberReady")),
            _int(status.get("updatedNumberScheduled")), _int(status.get("numberAvailable")),
            format_labels(dig(spec, "template", "spec", "nodeSelector")),
            since(dig(obj, "metadata", "creationTimestamp"), now), names, images,
            format_label_selector(spec.get("selector"))]


def rc_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = container_cells(dig(spec, "template", "spec", "containers"))
    return [dig(obj, "metadata", "name") or "", _int(spec.get("replicas"), 1), _int(status.get("replicas")),
            _int(status.get("readyReplicas")), since(dig(obj, "metadata", "creationTimestamp"), now), names, images,
            format_labels(spec.get("selector"))]


def controllerrevision_cells(obj: Obj, now: datetime) -> list[Any]:
    ref = next((r for r in dig(obj, "metadata", "ownerReferences") or [] if r.get("controller")), None)
    controller = NONE
    if ref is not None:
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        controller = f"{str(ref.get('kind', '')).lower()}.{group}/{ref.get('name')}"
    return [dig(obj, "metadata", "name") or "", controller, _int(obj.get("revision")),
            since(dig(obj, "metadata", "creationTimestamp"), now)]


WORKLOAD_KIND_PRINTERS: dict[tuple[str, str], Printer] = {
    ("batch", "Job"): Printer(JOB_COLUMNS, job_cells),
    ("batch", "CronJob"): Printer(CRONJOB_COLUMNS, cronjob_cells),
    ("apps", "StatefulSet"): Printer(STATEFULSET_COLUMNS, statefulset_cells),
    ("apps", "DaemonSet"): Printer(DAEMONSET_COLUMNS, daemonset_cells),
    ("", "ReplicationController"): Printer(RC_COLUMNS, rc_cells),
    ("apps", "ControllerRevision"): Printer(CONTROLLERREVISION_COLUMNS, controllerrevision_cells),
}
