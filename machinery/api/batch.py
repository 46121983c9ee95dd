"""batch/v1 Job and CronJob (spec, pod failure policy, status with conditions).

Registered as kinds in ``machinery.api``; OpenAPI names under ``io.k8s.api.batch.v1``. Read by
the Job and CronJob controllers through plain dicts; these models only check and clean input.
"""

from typing import ClassVar

from pydantic import Field

from machinery.api.base import Int32, Int64, K8sModel, Time, merge_key
from machinery.api.meta import LabelSelector, ObjectMeta
from machinery.api.pod import ObjectReference, PodTemplateSpec


class BatchModel(K8sModel):
    """Base of the batch/v1 types."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.batch.v1"


class PodFailurePolicyOnExitCodesRequirement(BatchModel):
    """Matches a failed pod by its containers' exit codes."""

    k8s_required: ClassVar[tuple[str, ...]] = ("operator", "values")
    containerName: str | None = None
    operator: str | None = None
    values: list[Int32] | None = Field(None, json_schema_extra=merge_key(None, "set"))


class PodFailurePolicyOnPodConditionsPattern(BatchModel):
    """Matches a failed pod by one of its conditions."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None


class PodFailurePolicyRule(BatchModel):
    """An action (FailJob, FailIndex, Ignore, Count) for pods matching exit codes or conditions."""

    k8s_required: ClassVar[tuple[str, ...]] = ("action",)
    action: str | None = None
    onExitCodes: PodFailurePolicyOnExitCodesRequirement | None = None
    onPodConditions: list[PodFailurePolicyOnPodConditionsPattern] | None = None


class PodFailurePolicy(BatchModel):
    """How pod failures count towards the backoff limit."""

    k8s_required: ClassVar[tuple[str, ...]] = ("rules",)
    rules: list[PodFailurePolicyRule] | None = None


class SuccessPolicyRule(BatchModel):
    """Indexes (or a count of them) whose success makes the job succeed."""

    succeededIndexes: str | None = None
    succeededCount: Int32 | None = None


class SuccessPolicy(BatchModel):
    """When an Indexed job is declared succeeded."""

    k8s_required: ClassVar[tuple[str, ...]] = ("rules",)
    rules: list[SuccessPolicyRule] | None = None


class JobSpec(BatchModel):
    """The desired state of a job."""

    k8s_required: ClassVar[tuple[str, ...]] = ("template",)
    parallelism: Int32 | None = None
    completions: Int32 | None = None
    activeDeadlineSeconds: Int64 | None = None
    podFailurePolicy: PodFailurePolicy | None = None
    successPolicy: SuccessPolicy | None = None
    backoffLimit: Int32 | None = None
    backoffLimitPerIndex: Int32 | None = None
    maxFailedIndexes: Int32 | None = None
    selector: LabelSelector | None = None
    manualSelector: bool | None = None
    template: PodTemplateSpec | None = None
    ttlSecondsAfterFinished: Int32 | None = None
    completionMode: str | None = None
    suspend: bool | None = None
    podReplacementPolicy: str | None = None
    managedBy: str | None = None


class JobCondition(BatchModel):
    """A condition of a job (Complete, Failed, Suspended, SuccessCriteriaMet, FailureTarget)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastProbeTime: Time | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class UncountedTerminatedPods(BatchModel):
    """UIDs of finished pods whose tracking finalizer is being removed."""

    succeeded: list[str] | None = Field(None, json_schema_extra=merge_key(None, "set"))
    failed: list[str] | None = Field(None, json_schema_extra=merge_key(None, "set"))


class JobStatus(BatchModel):
    """The observed state of a job."""

    conditions: list[JobCondition] | None = Field(None, json_schema_extra=merge_key("type"))
    startTime: Time | None = None
    completionTime: Time | None = None
    active: Int32 | None = None
    succeeded: Int32 | None = None
    failed: Int32 | None = None
    terminating: Int32 | None = None
    completedIndexes: str | None = None
    failedIndexes: str | None = None
    uncountedTerminatedPods: UncountedTerminatedPods | None = None
    ready: Int32 | None = None


class Job(BatchModel):
    """A run-to-completion workload."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("batch", "v1", "Job")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: JobSpec | None = None
    status: JobStatus | None = None


class JobTemplateSpec(BatchModel):
    """The job a CronJob creates."""

    metadata: ObjectMeta | None = None
    spec: JobSpec | None = None


class CronJobSpec(BatchModel):
    """The schedule and the job template of a cron job."""

    k8s_required: ClassVar[tuple[str, ...]] = ("schedule", "jobTemplate")
    schedule: str | None = None
    timeZone: str | None = None
    startingDeadlineSeconds: Int64 | None = None
    concurrencyPolicy: str | None = None
    suspend: bool | None = None
    jobTemplate: JobTemplateSpec | None = None
    successfulJobsHistoryLimit: Int32 | None = None
    failedJobsHistoryLimit: Int32 | None = None


class CronJobStatus(BatchModel):
    """The observed state of a cron job."""

    active: list[ObjectReference] | None = None
    lastScheduleTime: Time | None = None
    lastSuccessfulTime: Time | None = None


class CronJob(BatchModel):
    """Runs a job on a schedule."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("batch", "v1", "CronJob")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: CronJobSpec | None = None
    status: CronJobStatus | None = None
