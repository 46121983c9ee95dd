"""Validation of Job, CronJob, StatefulSet, DaemonSet and ReplicationController, with
Kubernetes' field paths and messages (``ValidateJob``, ``ValidateCronJob``, ``ValidateStatefulSet``,
``ValidateDaemonSet``, ``ValidateReplicationController`` and their updates).

Registered in :data:`machinery.api.validation.CHECKS`.
"""

from collections.abc import Callable
from typing import Any

from machinery import cronschedule
from machinery.api import names
from machinery.api.defaults_workloads import CONTROLLER_UID
from machinery.api.names import Errors
from machinery.api.validation_job import job_policies
from machinery.api.validation_pod import label_selector, pod_spec

Obj = dict[str, Any]
Check = Callable[[Errors, Obj, Obj | None], None]

IMMUTABLE = "field is immutable"
CRONJOB_NAME_MAX = 52
STATEFULSET_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy",
                         "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _matches(selector: Obj, labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key", ""), req.get("operator"), req.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _template(errs: Errors, path: str, template: Obj | None, *, restart: tuple[str, ...],
              claims: tuple[str, ...] = ()) -> Obj:
    """The pod template's labels and spec (``claims``: volumes a StatefulSet's claim templates add);
    returns its labels."""
    if template is None:
        errs.required(path)
        return {}
    labels: dict[str, str] = (template.get("metadata") or {}).get("labels") or {}
    for key, value in labels.items():
        errs.check(f"{path}.metadata.labels", key, names.qualified_name)
        errs.check(f"{path}.metadata.labels", value, names.label_value)
    tspec = template.get("spec") or {}
    if claims:
        tspec = {**tspec, "volumes": [*(tspec.get("volumes") or []),
                                      *({"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims)]}
    pod_spec(errs, f"{path}.spec", tspec)
    policy = tspec.get("restartPolicy")
    if policy not in restart:
        errs.not_supported(f"{path}.spec.restartPolicy", policy, restart)
    return labels


def _selected(errs: Errors, path: str, selector: Obj | None, labels: dict[str, str], *, what: str) -> None:
    if not selector:
        errs.required(f"{path}.selector")
        return
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.invalid(f"{path}.selector", selector, f"empty selector is invalid for {what}")
        return
    label_selector(errs, f"{path}.selector", selector)
    if not _matches(selector, labels):
        errs.invalid(f"{path}.template.metadata.labels", labels, "`selector` does not match template `labels`")


def job_spec(errs: Errors, path: str, spec: Obj, *, generated: bool) -> None:
    """ValidateJobSpec (``generated``: the selector was filled in by the apiserver)."""
    for field in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                  "ttlSecondsAfterFinished"):
        errs.non_negative(f"{path}.{field}", spec.get(field))
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline == 0:
        errs.invalid(f"{path}.activeDeadlineSeconds", deadline, "must be greater than 0")
    mode = spec.get("completionMode")
    errs.enum(f"{path}.completionMode", mode, ("NonIndexed", "Indexed"))
    if mode == "Indexed":
        completions = spec.get("completions")
        if completions is None:
            errs.required(f"{path}.completions", "when completion mode is Indexed")
        elif isinstance(spec.get("parallelism"), int) and spec["parallelism"] > 100000:
            errs.invalid(f"{path}.parallelism", spec["parallelism"],
                         "must be less than or equal to 100000 when completion mode is Indexed")
    job_policies(errs, path, spec)
    template = spec.get("template")
    labels = _template(errs, f"{path}.template", template, restart=("OnFailure", "Never"))
    if generated or spec.get("selector") is not None:
        _selected(errs, path, spec.get("selector"), labels, what="job")
    policy = spec.get("podFailurePolicy")
    if policy is not None:
        _pod_failure_policy(errs, f"{path}.podFailurePolicy", policy, template)


def _pod_failure_policy(errs: Errors, path: str, policy: Obj, template: Obj | None) -> None:
    tspec = (template or {}).get("spec") or {}
    if tspec.get("restartPolicy") != "Never":
        errs.invalid(path.rsplit(".", 1)[0] + ".template.spec.restartPolicy", tspec.get("restartPolicy"),
                     'only "Never" is supported when podFailurePolicy is specified')
    containers = {c.get("name") for c in (tspec.get("containers") or []) + (tspec.get("initContainers") or [])}
    for i, rule in enumerate(policy.get("rules") or []):
        p = f"{path}.rules[{i}]"
        errs.enum(f"{p}.action", rule.get("action"), ("Count", "FailIndex", "FailJob", "Ignore"))
        on_codes, on_conds = rule.get("onExitCodes"), rule.get("onPodConditions")
        if on_codes is not None and on_conds is not None:
            errs.invalid(p, "", "specifying both OnExitCodes and OnPodConditions is not supported")
        elif on_codes is None and on_conds is None:
            errs.invalid(p, "", "specifying one of OnExitCodes and OnPodConditions is required")
        if on_codes is not None:
            q = f"{p}.onExitCodes"
            errs.enum(f"{q}.operator", on_codes.get("operator"), ("In", "NotIn"))
            values = on_codes.get("values") or []
            if not values:
                errs.invalid(f"{q}.values", values, "at least one value is required")
            if on_codes.get("operator") == "In" and 0 in values:
                errs.invalid(f"{q}.values[{values.index(0)}]", 0, "must not be 0 for the In operator")
            name = on_codes.get("containerName")
            if name is not None and name not in containers:
                errs.invalid(f"{q}.containerName", name, "must be one of the container or initContainer names "
                                                          "in the pod template")
        for j, pattern in enumerate(on_conds or []):
            errs.enum(f"{p}.onPodConditions[{j}].status", pattern.get("status"), ("True", "False", "Unknown"))
            if not pattern.get("type"):
                errs.required(f"{p}.onPodConditions[{j}].type")


def _job(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    generated = spec.get("manualSelector") is not True
    job_spec(errs, "spec", spec, generated=generated)
    if generated and old is None:
        uid = (obj.get("metadata") or {}).get("uid")
        selector = spec.get("selector") or {}
        if uid and (selector.get("matchLabels") or {}).get(CONTROLLER_UID) != uid:
            errs.invalid("spec.selector", selector, "`selector` not auto-generated")
    if old is not None:
        ospec = old.get("spec") or {}
        for field in ("completions", "selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex",
                      "successPolicy"):
            if field == "completions" and spec.get("completions") != ospec.get("completions") \
                    and spec.get("completionMode") == "Indexed" and spec.get("completions") == spec.get("parallelism"):
                continue  # elastic Indexed jobs may scale completions with parallelism
            if spec.get(field) != ospec.get(field):
                errs.invalid(f"spec.{field}", spec.get(field), IMMUTABLE)
        otemplate, template = ospec.get("template") or {}, spec.get("template") or {}
        if template != otemplate and not (ospec.get("suspend") and _template_mutable_only(template, otemplate)):
            errs.invalid("spec.template", template, IMMUTABLE)


def _template_mutable_only(template: Obj, old: Obj) -> bool:
    """Only scheduling directives, labels and annotations changed (allowed while suspended)."""
    a, b = dict(template.get("spec") or {}), dict(old.get("spec") or {})
    for key in ("nodeSelector", "tolerations", "affinity", "schedulingGates"):
        a.pop(key, None)
        b.pop(key, None)
    return a == b


def _cron_job(errs: Errors, obj: Obj, old: Obj | None) -> None:
    name = str((obj.get("metadata") or {}).get("name") or "")
    if len(name) > CRONJOB_NAME_MAX:
        errs.invalid("metadata.name", name, f"must be no more than {CRONJOB_NAME_MAX} characters")
    spec = obj.get("spec") or {}
    schedule = spec.get("schedule")
    if not schedule:
        errs.required("spec.schedule")
    else:
        try:
            cronschedule.check(str(schedule))
        except cronschedule.ScheduleError as exc:
            errs.invalid("spec.schedule", schedule, str(exc))
    zone = spec.get("timeZone")
    if zone is not None:
        try:
            cronschedule.time_zone(str(zone))
        except cronschedule.ScheduleError as exc:
            errs.invalid("spec.timeZone", zone, str(exc))
    errs.non_negative("spec.startingDeadlineSeconds", spec.get("startingDeadlineSeconds"))
    policy = spec.get("concurrencyPolicy")
    if not policy:
        errs.required("spec.concurrencyPolicy")
    else:
        errs.enum("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace"))
    errs.non_negative("spec.successfulJobsHistoryLimit", spec.get("successfulJobsHistoryLimit"))
    errs.non_negative("spec.failedJobsHistoryLimit", spec.get("failedJobsHistoryLimit"))
    job_template = spec.get("jobTemplate")
    if job_template is None:
        errs.required("spec.jobTemplate")
        return
    jspec = job_template.get("spec") or {}
    job_spec(errs, "spec.jobTemplate.spec", jspec, generated=jspec.get("manualSelector") is not True
             and jspec.get("selector") is not None)


def _stateful_set(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    errs.enum("spec.podManagementPolicy", spec.get("podManagementPolicy"), ("OrderedReady", "Parallel"))
    strategy = spec.get("updateStrategy") or {}
    errs.enum("spec.updateStrategy.type", strategy.get("type"), ("RollingUpdate", "OnDelete"))
    if strategy.get("type") == "OnDelete" and strategy.get("rollingUpdate") is not None:
        errs.invalid("spec.updateStrategy.rollingUpdate", strategy["rollingUpdate"],
                     "only allowed for updateStrategy 'RollingUpdate'")
    rolling = strategy.get("rollingUpdate") or {}
    errs.non_negative("spec.updateStrategy.rollingUpdate.partition", rolling.get("partition"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for field in ("whenDeleted", "whenScaled"):
        errs.enum(f"spec.persistentVolumeClaimRetentionPolicy.{field}", retention.get(field), ("Retain", "Delete"))
    for field in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        errs.non_negative(f"spec.{field}", spec.get(field))
    claims = tuple(str((c.get("metadata") or {}).get("name") or "") for c in spec.get("volumeClaimTemplates") or [])
    labels = _template(errs, "spec.template", spec.get("template"), restart=("Always",), claims=claims)
    _selected(errs, "spec", spec.get("selector"), labels, what="statefulset")
    for i, claim in enumerate(spec.get("volumeClaimTemplates") or []):
        cname = (claim.get("metadata") or {}).get("name")
        if not cname:
            errs.required(f"spec.volumeClaimTemplates[{i}].metadata.name", "name or generateName is required")
    if old is not None:
        ospec = old.get("spec") or {}
        rest = {k: v for k, v in spec.items() if k not in STATEFULSET_UPDATABLE}
        orest = {k: v for k, v in ospec.items() if k not in STATEFULSET_UPDATABLE}
        if rest != orest:
            errs.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                   "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                                   "'minReadySeconds' are forbidden")


def _daemon_set(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    labels = _template(errs, "spec.template", spec.get("template"), restart=("Always",))
    _selected(errs, "spec", spec.get("selector"), labels, what="daemonset")
    strategy = spec.get("updateStrategy") or {}
    errs.enum("spec.updateStrategy.type", strategy.get("type"), ("RollingUpdate", "OnDelete"))
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == "RollingUpdate" and rolling is not None \
            and rolling.get("maxUnavailable") in (0, "0%") and rolling.get("maxSurge") in (0, "0%", None):
        errs.invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", rolling.get("maxUnavailable"),
                     "may not be 0 when `maxSurge` is 0")
    for field in ("minReadySeconds", "revisionHistoryLimit"):
        errs.non_negative(f"spec.{field}", spec.get(field))
    if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
        errs.invalid("spec.selector", spec.get("selector"), IMMUTABLE)


def _replication_controller(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    errs.non_negative("spec.replicas", spec.get("replicas"))
    errs.non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    selector: dict[str, str] = spec.get("selector") or {}
    if not selector:
        errs.required("spec.selector")
    for key, value in selector.items():
        errs.check("spec.selector", key, names.qualified_name)
        errs.check("spec.selector", value, names.label_value)
    template = spec.get("template")
    if template is None:
        if int(spec.get("replicas") or 0) > 0:
            errs.required("spec.template")
        return
    labels = _template(errs, "spec.template", template, restart=("Always",))
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        errs.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")


def _controller_revision(errs: Errors, obj: Obj, old: Obj | None) -> None:
    errs.non_negative("revision", obj.get("revision"))
    if old is not None and obj.get("data") != old.get("data"):
        errs.invalid("data", "", IMMUTABLE)


WORKLOAD_CHECKS: dict[str, Check] = {
    "Job": _job,
    "CronJob": _cron_job,
    "StatefulSet": _stateful_set,
    "DaemonSet": _daemon_set,
    "ReplicationController": _replication_controller,
    "ControllerRevision": _controller_revision,
}
