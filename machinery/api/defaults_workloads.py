"""Defaults of the batch and stateful/node workload kinds (``SetDefaults_*`` of batch/v1, apps/v1
StatefulSet and DaemonSet, core/v1 ReplicationController), and the Job's generated selector.

Registered in :data:`machinery.api.defaults.DEFAULTERS`. :func:`generate_job_selector` is the
Job strategy's create step (the apiserver calls it once the Job has its UID): unless
``manualSelector`` is true, the Job selects its pods by ``batch.kubernetes.io/controller-uid`` and
the template carries that label, the job-name label and their legacy unprefixed twins.
"""

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
MAX_INT32 = 2**31 - 1


def _pod_template(spec: Obj, key: str = "template") -> None:
    # Imported here: machinery.api.defaults registers this module's defaulters.
    from machinery.api.defaults import pod_spec

    template = spec.get(key)
    if template is not None:
        pod_spec(template.setdefault("spec", {}))


def _labels_from_template(obj: Obj, spec: Obj) -> None:
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    meta = obj.setdefault("metadata", {})
    if labels and not meta.get("labels"):
        meta["labels"] = dict(labels)


def _job_spec(spec: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    policy = spec.get("podFailurePolicy")
    if policy is not None:
        for rule in policy.get("rules") or []:
            for pattern in rule.get("onPodConditions") or []:
                pattern.setdefault("status", "True")
    spec.setdefault("podReplacementPolicy", "Failed" if policy is not None else "TerminatingOrFailed")


def job(obj: Obj) -> None:
    """SetDefaults_Job: completions/parallelism 1, backoffLimit 6, NonIndexed, labels from the template."""
    spec = obj.setdefault("spec", {})
    _job_spec(spec)
    _labels_from_template(obj, spec)
    _pod_template(spec)


def cron_job(obj: Obj) -> None:
    """SetDefaults_CronJob: Allow, not suspended, history limits 3 and 1."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_spec = (spec.get("jobTemplate") or {}).get("spec")
    if job_spec is not None:
        _pod_template(job_spec)


def stateful_set(obj: Obj) -> None:
    """SetDefaults_StatefulSet: OrderedReady, RollingUpdate partition 0, Retain claims, 1 replica."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    for claim in spec.get("volumeClaimTemplates") or []:
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        cspec = claim.setdefault("spec", {})
        cspec.setdefault("volumeMode", "Filesystem")
        claim.setdefault("status", {"phase": "Pending"})
    _labels_from_template(obj, spec)
    _pod_template(spec)


def daemon_set(obj: Obj) -> None:
    """SetDefaults_DaemonSet: RollingUpdate with maxUnavailable 1 and maxSurge 0, history 10."""
    spec = obj.setdefault("spec", {})
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _labels_from_template(obj, spec)
    _pod_template(spec)


def replication_controller(obj: Obj) -> None:
    """SetDefaults_ReplicationController: selector and labels from the template, 1 replica."""
    spec = obj.setdefault("spec", {})
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        _labels_from_template(obj, spec)
    spec.setdefault("replicas", 1)
    _pod_template(spec)


def generate_job_selector(obj: Obj) -> None:
    """The Job strategy's create step: the controller-uid selector and the pod template's labels."""
    spec = obj.get("spec")
    meta = obj.get("metadata") or {}
    if not isinstance(spec, dict) or spec.get("manualSelector") is True:
        return
    uid, name = str(meta.get("uid", "")), str(meta.get("name", ""))
    template = spec.setdefault("template", {})
    tlabels = template.setdefault("metadata", {}).setdefault("labels", {})
    # Job labels defaulted from the template follow it (as a re-defaulted read shows on Kubernetes).
    follow = not meta.get("labels") or meta.get("labels") == tlabels
    for key, value in ((CONTROLLER_UID, uid), (JOB_NAME, name), (LEGACY_CONTROLLER_UID, uid),
                       (LEGACY_JOB_NAME, name)):
        tlabels.setdefault(key, value)
    selector = spec.get("selector") or {}
    spec["selector"] = selector
    selector.setdefault("matchLabels", {}).setdefault(CONTROLLER_UID, uid)
    if follow:
        meta["labels"] = dict(tlabels)


WORKLOAD_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Job": job,
    "CronJob": cron_job,
    "StatefulSet": stateful_set,
    "DaemonSet": daemon_set,
    "ReplicationController": replication_controller,
}
