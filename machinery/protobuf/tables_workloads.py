"""Protobuf field tables for apps/v1 (Deployment, ReplicaSet) and batch/v1 (Job, CronJob).

Field numbers and names are Kubernetes' own (api ``apps/v1`` and ``batch/v1``
``generated.proto``); ``keep=True`` marks Go pointer or non-``omitempty`` fields.
Read by :mod:`machinery.protobuf.schema`.
"""

from __future__ import annotations

from machinery.protobuf.fields import MessageTable, b, i, ios, msg, s, time

WORKLOAD_MESSAGES: dict[str, MessageTable] = {
    "Deployment": {
        1: msg("metadata", "ObjectMeta"),
        2: msg("spec", "DeploymentSpec"),
        3: msg("status", "DeploymentStatus"),
    },
    "DeploymentSpec": {
        1: i("replicas", keep=True),
        2: msg("selector", "LabelSelector"),
        3: msg("template", "PodTemplateSpec"),
        4: msg("strategy", "DeploymentStrategy"),
        5: i("minReadySeconds"),
        6: i("revisionHistoryLimit", keep=True),
        7: b("paused"),
        9: i("progressDeadlineSeconds", keep=True),
    },
    "DeploymentStrategy": {1: s("type"), 2: msg("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ios("maxUnavailable"), 2: ios("maxSurge")},
    "DeploymentStatus": {
        1: i("observedGeneration"),
        2: i("replicas"),
        3: i("updatedReplicas"),
        4: i("availableReplicas"),
        5: i("unavailableReplicas"),
        6: msg("conditions", "DeploymentCondition", repeated=True),
        7: i("readyReplicas"),
        8: i("collisionCount", keep=True),
        9: i("terminatingReplicas", keep=True),
    },
    "DeploymentCondition": {
        1: s("type", keep=True),
        2: s("status", keep=True),
        4: s("reason"),
        5: s("message"),
        6: time("lastUpdateTime"),
        7: time("lastTransitionTime"),
    },
    "ReplicaSet": {
        1: msg("metadata", "ObjectMeta"),
        2: msg("spec", "ReplicaSetSpec"),
        3: msg("status", "ReplicaSetStatus"),
    },
    "ReplicaSetSpec": {
        1: i("replicas", keep=True),
        2: msg("selector", "LabelSelector"),
        3: msg("template", "PodTemplateSpec"),
        4: i("minReadySeconds"),
    },
    "ReplicaSetStatus": {
        1: i("replicas", keep=True),
        2: i("fullyLabeledReplicas"),
        3: i("observedGeneration"),
        4: i("readyReplicas"),
        5: i("availableReplicas"),
        6: msg("conditions", "ReplicaSetCondition", repeated=True),
        7: i("terminatingReplicas", keep=True),
    },
    "ReplicaSetCondition": {
        1: s("type", keep=True),
        2: s("status", keep=True),
        3: time("lastTransitionTime"),
        4: s("reason"),
        5: s("message"),
    },
    "Job": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "JobSpec"), 3: msg("status", "JobStatus")},
    "JobSpec": {
        1: i("parallelism", keep=True),
        2: i("completions", keep=True),
        3: i("activeDeadlineSeconds", keep=True),
        4: msg("selector", "LabelSelector"),
        5: b("manualSelector", keep=True),
        6: msg("template", "PodTemplateSpec"),
        7: i("backoffLimit", keep=True),
        8: i("ttlSecondsAfterFinished", keep=True),
        9: s("completionMode", keep=True),
        10: b("suspend", keep=True),
        12: i("backoffLimitPerIndex", keep=True),
        13: i("maxFailedIndexes", keep=True),
        14: s("podReplacementPolicy", keep=True),
        15: s("managedBy", keep=True),
    },
    "JobStatus": {
        1: msg("conditions", "JobCondition", repeated=True),
        2: time("startTime"),
        3: time("completionTime"),
        4: i("active"),
        5: i("succeeded"),
        6: i("failed"),
        7: s("completedIndexes"),
        9: i("ready", keep=True),
        10: s("failedIndexes", keep=True),
        11: i("terminating", keep=True),
    },
    "JobCondition": {
        1: s("type", keep=True),
        2: s("status", keep=True),
        3: time("lastProbeTime"),
        4: time("lastTransitionTime"),
        5: s("reason"),
        6: s("message"),
    },
    "JobTemplateSpec": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "JobSpec")},
    "CronJob": {
        1: msg("metadata", "ObjectMeta"),
        2: msg("spec", "CronJobSpec"),
        3: msg("status", "CronJobStatus"),
    },
    "CronJobSpec": {
        1: s("schedule", keep=True),
        2: i("startingDeadlineSeconds", keep=True),
        3: s("concurrencyPolicy"),
        4: b("suspend", keep=True),
        5: msg("jobTemplate", "JobTemplateSpec"),
        6: i("successfulJobsHistoryLimit", keep=True),
        7: i("failedJobsHistoryLimit", keep=True),
        8: s("timeZone", keep=True),
    },
    "CronJobStatus": {
        1: msg("active", "ObjectReference", repeated=True),
        4: time("lastScheduleTime"),
        5: time("lastSuccessfulTime"),
    },
}
