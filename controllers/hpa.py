"""The horizontal pod autoscaler controller (Kubernetes' ``podautoscaler`` HorizontalController).

Started by ``controllers.manager`` as ``horizontalpodautoscaling``. Every HPA is synced once per
``horizontal_pod_autoscaler_sync_period`` (15 s; the first time one period after it appears, as
upstream's fixed-interval queue does): its target's ``/scale`` is read, each metric proposes a
replica count (:mod:`controllers.hpa_replicas`, fed by the resource metrics API through
:mod:`controllers.hpa_metrics`), the highest proposal is normalized
(:mod:`controllers.hpa_behavior`: stabilization, policies, min/max), the target is rescaled
through ``/scale`` when the count changes, and the status (current and desired replicas, current
metrics, ``lastScaleTime``, conditions ``AbleToScale`` / ``ScalingActive`` / ``ScalingLimited``)
is written when it changed. Events use upstream's reasons and messages (``SuccessfulRescale``
"New size: 3; reason: cpu resource utilization (percentage of request) above target",
``FailedGetResourceMetric``, ``FailedComputeMetricsReplicas``, ``FailedGetScale``,
``FailedRescale``). Resource and ContainerResource metrics are computed; Pods, Object and External
metrics need a custom metrics API, which is not served, and report ``FailedGetPodsMetric`` /
``FailedGetObjectMetric`` / ``FailedGetExternalMetric``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controllers.hpa_behavior import ScalingHistory
from controllers.hpa_metrics import ResourceMetricsClient, ScaleTargets
from controllers.hpa_replicas import ReplicaCalculationError, ReplicaCalculator
from controllers.settings import ControllerManagerSettings
from machinery import errors
from machinery.client import ApiClient, EventRecorder, InformerFactory, run_workers, wait_for_cache_sync
from machinery.meta import object_key, utcnow
from machinery.quantity import parse_quantity
from machinery.resources import HORIZONTALPODAUTOSCALERS, PODS
from machinery.selectors import parse_label_selector

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_SOURCE_ERRORS = {"Pods": "FailedGetPodsMetric", "Object": "FailedGetObjectMetric",
                  "External": "FailedGetExternalMetric"}


def _rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _milli(milli: int) -> str:
    """A milli-unit count as Kubernetes prints ``resource.NewMilliQuantity(v, DecimalSI)``."""
    return f"{milli // 1000}" if milli % 1000 == 0 else f"{milli}m"


@dataclass
class _Proposal:
    replicas: int
    metric: str
    status: Obj


@dataclass
class _Sync:
    """One reconcile of one HPA: the object being changed and what was seen."""

    hpa: Obj
    now: datetime
    conditions: list[Obj] = field(default_factory=list)

    def set_condition(self, type_: str, status: str, reason: str, message: str) -> None:
        """setCondition: keep lastTransitionTime unless the status flips."""
        for cond in self.conditions:
            if cond.get("type") == type_:
                if cond.get("status") != status:
                    cond["lastTransitionTime"] = _rfc3339(self.now)
                cond.update(status=status, reason=reason, message=message)
                return
        self.conditions.append({"type": type_, "status": status, "lastTransitionTime": _rfc3339(self.now),
                                "reason": reason, "message": message})


class HorizontalPodAutoscalerController:
    """Scales targets to keep their metrics at the HPAs' targets (see the module docstring)."""

    name = "horizontalpodautoscaling"

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.sync_period = settings.horizontal_pod_autoscaler_sync_period
        self.calculator = ReplicaCalculator(
            tolerance=settings.horizontal_pod_autoscaler_tolerance,
            cpu_initialization_period=settings.horizontal_pod_autoscaler_cpu_initialization_period,
            delay_of_initial_readiness=settings.horizontal_pod_autoscaler_initial_readiness_delay)
        self.history = ScalingHistory(settings.horizontal_pod_autoscaler_downscale_stabilization)
        self.metrics = ResourceMetricsClient(client)
        self.targets = ScaleTargets(client)
        self.hpa_informer = factory.informer(HORIZONTALPODAUTOSCALERS)
        self.pod_informer = factory.informer(PODS)
        self.queue = settings.workqueue(self.name)
        self.recorder = EventRecorder(client, component="horizontal-pod-autoscaler")
        self.hpa_informer.add_handler(on_add=self._enqueue, on_update=lambda old, cur: self._enqueue(cur),
                                      on_delete=self._deleted)

    def _enqueue(self, hpa: Obj) -> None:
        # Upstream's queue delays every add by the sync period; a pending add is kept.
        self.queue.add_after(object_key(hpa), self.sync_period)

    def _deleted(self, hpa: Obj) -> None:
        self.history.forget(object_key(hpa))

    async def run(self, workers: int) -> None:
        """Sync HPAs with ``workers`` workers until cancelled."""
        await wait_for_cache_sync(self.hpa_informer, self.pod_informer)
        try:
            await run_workers(self.queue, self.sync, workers=workers, name=self.name)
        finally:
            await self.recorder.close()
            self.queue.shutdown()

    async def sync(self, key: str) -> None:
        """Reconcile the HPA ``key`` and schedule its next sync."""
        cached = self.hpa_informer.store.get(key)
        if cached is None:
            self.history.forget(key)
            return
        try:
            await self.reconcile(copy.deepcopy(cached))
        finally:
            self.queue.add_after(key, self.sync_period)

    async def reconcile(self, hpa: Obj) -> None:
        """reconcileAutoscaler: one pass over one HPA (``hpa`` is a copy this call may change)."""
        key = object_key(hpa)
        namespace = hpa["metadata"]["namespace"]
        spec = hpa.get("spec") or {}
        original_status = copy.deepcopy(hpa.get("status") or {})
        run = _Sync(hpa, self.clock(), copy.deepcopy(original_status.get("conditions") or []))
        ref = spec.get("scaleTargetRef") or {}
        reference = f"{ref.get('kind')}/{ref.get('name')}"
        try:
            target = await self.targets.resource_for(ref)
            scale = await self.client.get(target, str(ref.get("name")), namespace=namespace, subresource="scale")
        except errors.ApiError as err:
            run.set_condition("AbleToScale", "False", "FailedGetScale",
                              f"the HPA controller was unable to get the target's current scale: {err}")
            self.recorder.event(hpa, "Warning", "FailedGetScale", str(err))
            await self._write_status(hpa, original_status, run, original_status.get("currentReplicas", 0),
                                     original_status.get("desiredReplicas", 0), None, rescaled=False)
            # Tried again at the next sync period, as upstream's fixed-interval queue does.
            log.info("hpa %s: failed to query scale subresource for %s: %s", key, reference, err)
            return
        run.set_condition("AbleToScale", "True", "SucceededGetScale",
                          "the HPA controller was able to get the target's current scale")
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        self.history.record_initial(key, current, run.now)
        min_replicas = int(spec.get("minReplicas") or 1)
        max_replicas = int(spec.get("maxReplicas") or 0)
        statuses: list[Obj] | None = None
        reason = ""
        desired = 0
        rescale = True
        if current == 0 and min_replicas != 0:
            rescale = False
            run.set_condition("ScalingActive", "False", "ScalingDisabled",
                              "scaling is disabled since the replica count of the target is zero")
        elif current > max_replicas:
            reason, desired = "Current number of replicas above Spec.MaxReplicas", max_replicas
        elif current < min_replicas:
            reason, desired = "Current number of replicas below Spec.MinReplicas", min_replicas
        else:
            proposal, metric, statuses, failure = await self._replicas_for_metrics(run, scale, namespace)
            if proposal < 0:
                await self._write_status(hpa, original_status, run, current, original_status.get(
                    "desiredReplicas", 0), statuses, rescaled=False)
                self.recorder.event(hpa, "Warning", "FailedComputeMetricsReplicas", failure)
                log.info("hpa %s: failed to compute desired number of replicas based on listed metrics for %s: %s",
                         key, reference, failure)
                return
            desired = proposal
            if desired > current:
                reason = f"{metric} above target"
            elif desired < current:
                reason = "All metrics below target"
            desired = self._normalize(run, key, spec, current, desired, min_replicas, max_replicas)
            rescale = desired != current
        if rescale:
            scale = copy.deepcopy(scale)
            scale.setdefault("spec", {})["replicas"] = desired
            try:
                await self.client.update(target, scale, subresource="scale")
            except errors.ApiError as err:
                self.recorder.event(hpa, "Warning", "FailedRescale",
                                    f"New size: {desired}; reason: {reason}; error: {err}")
                run.set_condition("AbleToScale", "False", "FailedUpdateScale",
                                  f"the HPA controller was unable to update the target scale: {err}")
                await self._write_status(hpa, original_status, run, current, original_status.get(
                    "desiredReplicas", 0), statuses, rescaled=False)
                log.info("hpa %s: failed to rescale %s: %s", key, reference, err)
                return
            run.set_condition("AbleToScale", "True", "SucceededRescale",
                              f"the HPA controller was able to update the target scale to {desired}")
            self.recorder.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            self.history.store_scale_event(key, spec.get("behavior"), current, desired, run.now)
            log.info("hpa %s: rescaled %s from %d to %d (%s)", key, reference, current, desired, reason)
        else:
            desired = current
        await self._write_status(hpa, original_status, run, current, desired, statuses, rescaled=rescale)

    def _normalize(self, run: _Sync, key: str, spec: Obj, current: int, desired: int, min_replicas: int,
                   max_replicas: int) -> int:
        behavior = spec.get("behavior")
        if behavior is None:
            result = self.history.normalize(key, current=current, desired=desired, min_replicas=min_replicas,
                                            max_replicas=max_replicas, now=run.now)
        else:
            result = self.history.normalize_with_behavior(key, behavior, current=current, desired=desired,
                                                          min_replicas=min_replicas, max_replicas=max_replicas,
                                                          now=run.now)
        run.set_condition("AbleToScale", "True", *result.able_to_scale)
        run.set_condition("ScalingLimited", "True" if result.limited else "False", *result.limit)
        return result.replicas

    async def _replicas_for_metrics(self, run: _Sync, scale: Obj, namespace: str
                                    ) -> tuple[int, str, list[Obj], str]:
        """computeReplicasForMetrics: (the highest proposal or -1, its metric, statuses, error text)."""
        specs = list((run.hpa.get("spec") or {}).get("metrics") or [])
        selector_text = str((scale.get("status") or {}).get("selector") or "")
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        if not selector_text:
            message = "selector is required"
            run.set_condition("ScalingActive", "False", "InvalidSelector", "the HPA target's scale is missing a "
                              "selector")
            self.recorder.event(run.hpa, "Warning", "SelectorRequired", message)
            return -1, "", [], message
        try:
            selector = parse_label_selector(selector_text)
        except errors.ApiError as err:
            message = f"couldn't convert selector into a corresponding internal selector object: {err}"
            run.set_condition("ScalingActive", "False", "InvalidSelector", message)
            self.recorder.event(run.hpa, "Warning", "InvalidSelector", message)
            return -1, "", [], message
        pods = [p for p in self.pod_informer.store.list()
                if p["metadata"].get("namespace") == namespace and selector.matches(p["metadata"].get("labels"))]
        statuses: list[Obj] = []
        best: _Proposal | None = None
        invalid = 0
        first_error = ""
        first_condition: tuple[str, str] = ("", "")
        for spec in specs:
            try:
                proposal = await self._replicas_for_metric(spec, current, namespace, selector_text, pods, run.now)
            except _MetricFailure as failure:
                statuses.append({"type": ""})
                if invalid == 0:
                    first_error, first_condition = failure.message, (failure.reason, failure.condition_message)
                invalid += 1
                self.recorder.event(run.hpa, "Warning", failure.reason, failure.message)
                continue
            statuses.append(proposal.status)
            if best is None or proposal.replicas > best.replicas:
                best = proposal
        statuses = [s for s in statuses if s.get("type")]
        if invalid and (invalid >= len(specs) or best is None or best.replicas < current):
            run.set_condition("ScalingActive", "False", *first_condition)
            return -1, "", statuses, f"invalid metrics ({invalid} invalid out of {len(specs)}), first error is: " \
                f"{first_error}"
        assert best is not None
        run.set_condition("ScalingActive", "True", "ValidMetricFound",
                          f"the HPA was able to successfully calculate a replica count from {best.metric}")
        return best.replicas, best.metric, statuses, ""

    async def _replicas_for_metric(self, spec: Obj, current: int, namespace: str, selector: str,
                                   pods: list[Obj], now: datetime) -> _Proposal:
        kind = spec.get("type")
        if kind not in ("Resource", "ContainerResource"):
            reason = _SOURCE_ERRORS.get(str(kind), "FailedGetMetric")
            message = f"unable to get metric of type {kind}: the custom and external metrics APIs are not served"
            raise _MetricFailure(reason, message)
        field_name = "resource" if kind == "Resource" else "containerResource"
        source = spec.get(field_name) or {}
        resource = str(source.get("name") or "")
        container = str(source.get("container") or "") if kind == "ContainerResource" else ""
        target = source.get("target") or {}
        failed = "FailedGetResourceMetric" if kind == "Resource" else "FailedGetContainerResourceMetric"
        what = f"{resource} container resource" if container else f"{resource} resource"
        try:
            metrics, _ = await self.metrics.pod_metrics(namespace, selector, resource, container)
            if target.get("averageValue") is not None:
                wanted = parse_quantity(str(target["averageValue"])).milli_value()
                replicas, usage = self.calculator.raw_resource_replicas(
                    current_replicas=current, target_usage=wanted, resource=resource, metrics=metrics,
                    pods=pods, now=now)
                status = {"name": resource, "current": {"averageValue": _milli(usage)}}
                if container:
                    status["container"] = container
                return _Proposal(replicas, what, {"type": kind, field_name: status})
            if target.get("averageUtilization") is None:
                raise ReplicaCalculationError("invalid resource metric source: neither an average utilization "
                                              "target nor an average value (usage) target was set")
            replicas, utilization, raw = self.calculator.resource_replicas(
                current_replicas=current, target_utilization=int(target["averageUtilization"]),
                resource=resource, metrics=metrics, pods=pods, now=now, container=container)
        except ReplicaCalculationError as err:
            message = f"failed to get {resource} utilization: {err}"
            if container:
                message = f"failed to get {resource} utilization for container {container}: {err}"
            raise _MetricFailure(failed, message) from err
        status = {"name": resource, "current": {"averageUtilization": utilization, "averageValue": _milli(raw)}}
        if container:
            status["container"] = container
        return _Proposal(replicas, f"{what} utilization (percentage of request)", {"type": kind, field_name: status})

    async def _write_status(self, hpa: Obj, original: Obj, run: _Sync, current: int, desired: int,
                            statuses: list[Obj] | None, *, rescaled: bool) -> None:
        """setStatus + updateStatusIfNeeded."""
        status: Obj = {k: original[k] for k in ("observedGeneration", "lastScaleTime") if k in original}
        if current:
            status["currentReplicas"] = current
        status["desiredReplicas"] = desired
        if statuses:
            status["currentMetrics"] = statuses
        if rescaled:
            status["lastScaleTime"] = _rfc3339(run.now)
        if run.conditions:
            status["conditions"] = run.conditions
        if status == original:
            return
        hpa["status"] = status
        try:
            await self.client.update(HORIZONTALPODAUTOSCALERS, hpa, subresource="status")
        except errors.NotFoundError:
            return


class _MetricFailure(Exception):
    """A metric that proposes nothing: the event reason, and the message for events and conditions."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.condition_message = f"the HPA was unable to compute the replica count: {message}"
