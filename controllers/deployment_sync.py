"""I/O steps shared by every Deployment strategy (Kubernetes' ``deployment/sync.go``).

Called by ``deployment_rollout`` and ``deployment``. ``DeploymentSync`` finds or creates the new
ReplicaSet (revision bookkeeping, rollback-by-template reuse with revision max+1, hash collisions),
scales ReplicaSets (proportionally when the Deployment is resized mid-rollout), cleans up old
history, and computes and writes the Deployment status with Kubernetes' conditions. Every write
carries the cached ``resourceVersion``; a 409 propagates so the key is retried from a fresh cache.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controllers import deployment_util as du
from controllers.ownership import is_terminating, new_controller_ref
from machinery import errors
from machinery.client import ApiClient, EventRecorder
from machinery.meta import parse_rfc3339
from machinery.resources import DEPLOYMENTS, REPLICASETS

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class DeploymentSync:
    """The building blocks of one Deployment sync; ``d`` is a private deep copy of the cached object."""

    def __init__(self, client: ApiClient, d: Obj, *, now: Callable[[], datetime],
                 requeue_after: Callable[[float], None], recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.d = d
        self.now = now
        self.requeue_after = requeue_after
        self.recorder = recorder

    @property
    def name(self) -> str:
        return str(self.d["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.d["metadata"]["namespace"])

    # -- the new ReplicaSet ---------------------------------------------------------------------

    async def get_all_rss(self, rss: list[Obj], *, create: bool) -> tuple[Obj | None, list[Obj]]:
        """(new RS or None, all old RSs); syncs the new RS's revision and the Deployment's."""
        existing = du.find_new_rs(self.d, rss)
        old = du.find_old_rss(self.d, rss, existing)
        new = await self._new_rs(existing, old, create=create)
        return new, old

    async def _new_rs(self, existing: Obj | None, old: list[Obj], *, create: bool) -> Obj | None:
        new_revision = du.max_revision(old) + 1
        spec = self.d.get("spec") or {}
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = du.set_new_rs_annotations(self.d, rs, new_revision, exists=True)
            min_ready = int(spec.get("minReadySeconds") or 0)
            if changed or int((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                return await self.client.update(REPLICASETS, rs)
            status = copy.deepcopy(self.d.get("status") or {})
            rev_changed = self._set_revision(str(rs["metadata"].get("annotations", {}).get(du.REVISION, "")))
            if du.progress_deadline(self.d) is not None and du.get_condition(status, du.PROGRESSING) is None:
                du.set_condition(status, du.new_condition(
                    du.PROGRESSING, "True", du.FOUND_NEW_RS, f'Found new replica set "{rs["metadata"]["name"]}"',
                    self.now()))
                await self.write(status, annotations_changed=rev_changed)
            elif rev_changed:
                await self.write(status, annotations_changed=True)
            return rs
        if not create:
            return None
        collision = (self.d.get("status") or {}).get("collisionCount")
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = du.compute_hash(template, collision)
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), du.HASH_LABEL: pod_hash}
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), du.HASH_LABEL: pod_hash}
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{self.name}-{pod_hash}", "namespace": self.namespace,
                         "labels": dict(tmeta["labels"]),
                         "ownerReferences": [new_controller_ref(self.d, api_version="apps/v1", kind="Deployment")]},
            "spec": {"replicas": 0, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                     "selector": selector, "template": template},
        }
        rs["spec"]["replicas"] = du.new_rs_replicas(self.d, [*old, rs], rs)
        du.set_new_rs_annotations(self.d, rs, new_revision, exists=False)
        already = False
        try:
            created = await self.client.create(REPLICASETS, rs, namespace=self.namespace)
        except errors.AlreadyExistsError:
            created = await self.client.get(REPLICASETS, rs["metadata"]["name"], namespace=self.namespace)
            owner = next((r for r in created["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
            if (owner is None or owner.get("uid") != self.d["metadata"]["uid"]
                    or not du.equal_ignore_hash(created["spec"].get("template"), spec.get("template"))):
                # A hash collision: bump collisionCount so the next sync picks another name.
                status = copy.deepcopy(self.d.get("status") or {})
                status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                await self.write(status)
                raise
            already = True
        except errors.ApiError as exc:
            if du.progress_deadline(self.d) is not None:
                status = copy.deepcopy(self.d.get("status") or {})
                du.set_condition(status, du.new_condition(
                    du.PROGRESSING, "False", du.FAILED_RS_CREATE,
                    f'Failed to create new replica set "{rs["metadata"]["name"]}": {exc}', self.now()))
                await self.write(status)
            raise
        status = copy.deepcopy(self.d.get("status") or {})
        rev_changed = self._set_revision(str(new_revision))
        if not already and du.progress_deadline(self.d) is not None:
            du.set_condition(status, du.new_condition(
                du.PROGRESSING, "True", du.NEW_RS_CREATED, f'Created new replica set "{created["metadata"]["name"]}"',
                self.now()))
            await self.write(status, annotations_changed=rev_changed)
        elif rev_changed:
            await self.write(status, annotations_changed=True)
        return created

    def _set_revision(self, value: str) -> bool:
        ann = du.ann_of(self.d)
        if not value or ann.get(du.REVISION) == value:
            return False
        ann[du.REVISION] = value
        return True

    # -- writes ---------------------------------------------------------------------------------

    async def write(self, status: Obj, *, annotations_changed: bool = False) -> None:
        """Persist annotations (main resource) then ``status`` (status subresource)."""
        if annotations_changed:
            updated = await self.client.update(DEPLOYMENTS, {**self.d, "status": self.d.get("status") or {}})
            self.d["metadata"] = updated["metadata"]
        body = {**self.d, "status": _strip_zero(status)}
        updated = await self.client.update(DEPLOYMENTS, body, subresource="status")
        self.d["metadata"] = updated["metadata"]
        self.d["status"] = updated.get("status") or {}

    async def scale_rs(self, rs: Obj, size: int) -> tuple[bool, Obj]:
        """Scale ``rs`` to ``size`` and refresh its replica annotations; (scaled?, the RS)."""
        want = du.replicas(self.d)
        max_total = want + du.max_surge(self.d)
        size_changed = du.replicas(rs) != size
        if not size_changed and not du.replicas_annotations_need_update(rs, want, max_total):
            return False, rs
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = size
        du.set_replicas_annotations(body, want, max_total)
        updated = await self.client.update(REPLICASETS, body)
        if size_changed:
            direction = "up" if size > du.replicas(rs) else "down"
            log.info("deployment %s/%s: scaled %s replica set %s to %d from %d", self.namespace, self.name,
                     direction, rs["metadata"]["name"], size, du.replicas(rs))
            if self.recorder is not None:
                self.recorder.event(self.d, "Normal", "ScalingReplicaSet",
                                    f"Scaled {direction} replica set {rs['metadata']['name']} "
                                    f"from {du.replicas(rs)} to {size}")
        return size_changed, updated

    # -- scaling (not a rollout) ----------------------------------------------------------------

    async def scale(self, new: Obj | None, old: list[Obj]) -> None:
        """``scale``: resize the active ReplicaSets to match ``spec.replicas``."""
        want = du.replicas(self.d)
        all_rss = [rs for rs in [new, *old] if rs is not None]
        actives = du.active(all_rss)
        target: Obj | None = None
        if len(actives) == 1:
            target = actives[0]
        elif not actives:
            target = new if new is not None else (max(old, key=du.created_key) if old else None)
        if target is not None and len(actives) <= 1:
            if du.replicas(target) != want:
                await self.scale_rs(target, want)
            return
        if du.is_saturated(self.d, new):
            for rs in du.active(old):
                await self.scale_rs(rs, 0)
            return
        if du.is_rolling(self.d):
            sizes = du.proportional_sizes(self.d, actives)
            for rs in actives:
                await self.scale_rs(rs, sizes[rs["metadata"]["name"]])

    async def cleanup(self, old: list[Obj]) -> None:
        """Delete the oldest zero-sized ReplicaSets beyond ``revisionHistoryLimit``."""
        limit = (self.d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old if not is_terminating(rs)]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        for rs in sorted(alive, key=lambda r: (du.revision(r), du.created_key(r)))[:diff]:
            meta = rs["metadata"]
            if (du.status_int(rs, "replicas") != 0 or du.replicas(rs) != 0
                    or int(meta.get("generation") or 0) > du.status_int(rs, "observedGeneration")):
                continue
            log.info("deployment %s/%s: deleting old replica set %s", self.namespace, self.name, meta["name"])
            try:
                await self.client.delete(REPLICASETS, meta["name"], namespace=self.namespace,
                                         preconditions={"uid": meta["uid"]})
            except errors.NotFoundError:
                pass

    # -- status ---------------------------------------------------------------------------------

    def calculate_status(self, all_rss: list[Obj], new: Obj | None) -> Obj:
        """``calculateStatus``: counters from the ReplicaSets plus the Available condition."""
        available = du.sum_status(all_rss, "availableReplicas")
        old_status = self.d.get("status") or {}
        status: Obj = {
            "observedGeneration": int(self.d["metadata"].get("generation") or 0),
            "replicas": du.sum_status(all_rss, "replicas"),
            "updatedReplicas": du.sum_status([new], "replicas"),
            "readyReplicas": du.sum_status(all_rss, "readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(du.sum_spec(all_rss) - available, 0),
        }
        if old_status.get("collisionCount") is not None:
            status["collisionCount"] = old_status["collisionCount"]
        if old_status.get("conditions"):
            status["conditions"] = copy.deepcopy(old_status["conditions"])
        if available >= du.replicas(self.d) - du.max_unavailable(self.d):
            cond = du.new_condition(du.AVAILABLE, "True", du.MIN_AVAILABLE, "Deployment has minimum availability.",
                                    self.now())
        else:
            cond = du.new_condition(du.AVAILABLE, "False", du.MIN_UNAVAILABLE,
                                    "Deployment does not have minimum availability.", self.now())
        du.set_condition(status, cond)
        return status

    async def sync_status(self, all_rss: list[Obj], new: Obj | None) -> None:
        """``syncDeploymentStatus``: write the counters if they changed (scaling / paused path)."""
        status = self.calculate_status(all_rss, new)
        if not _status_equal(status, self.d.get("status")):
            await self.write(status)

    async def sync_rollout_status(self, all_rss: list[Obj], new: Obj | None) -> None:
        """``syncRolloutStatus``: counters plus the Progressing condition (deadline included)."""
        status = self.calculate_status(all_rss, new)
        deadline = du.progress_deadline(self.d)
        if deadline is None:
            du.remove_condition(status, du.PROGRESSING)
        current = du.get_condition(self.d.get("status") or {}, du.PROGRESSING)
        complete = (int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                    and current is not None and current.get("reason") == du.NEW_RS_AVAILABLE)
        now = self.now()
        rs_name = new["metadata"]["name"] if new is not None else None
        if deadline is not None and not complete:
            if du.deployment_complete(self.d, status):
                msg = f'ReplicaSet "{rs_name}" has successfully progressed.' if rs_name else \
                    f'Deployment "{self.name}" has successfully progressed.'
                du.set_condition(status, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_AVAILABLE, msg, now))
            elif du.deployment_progressing(self.d, status):
                msg = f'ReplicaSet "{rs_name}" is progressing.' if rs_name else \
                    f'Deployment "{self.name}" is progressing.'
                cond = du.new_condition(du.PROGRESSING, "True", du.RS_UPDATED, msg, now)
                if current is not None and current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                du.remove_condition(status, du.PROGRESSING)
                du.set_condition(status, cond)
            elif du.deployment_timed_out(self.d, status, now):
                msg = f'ReplicaSet "{rs_name}" has timed out progressing.' if rs_name else \
                    f'Deployment "{self.name}" has timed out progressing.'
                du.set_condition(status, du.new_condition(du.PROGRESSING, "False", du.TIMED_OUT, msg, now))
        failures = [c for rs in all_rss for c in (rs.get("status") or {}).get("conditions") or []
                    if c.get("type") == du.REPLICA_FAILURE and c.get("status") == "True"]
        if failures:
            f = failures[0]
            du.set_condition(status, du.new_condition(du.REPLICA_FAILURE, "True", str(f.get("reason", "")),
                                                      str(f.get("message", "")), now))
        else:
            du.remove_condition(status, du.REPLICA_FAILURE)
        if _status_equal(status, self.d.get("status")):
            self._requeue_stuck(status)
            return
        await self.write(status)

    def _requeue_stuck(self, status: Obj) -> None:
        deadline = du.progress_deadline(self.d)
        current = du.get_condition(status, du.PROGRESSING)
        if deadline is None or current is None or du.deployment_complete(self.d, status):
            return
        if current.get("reason") == du.TIMED_OUT or not current.get("lastUpdateTime"):
            return
        since = parse_rfc3339(str(current["lastUpdateTime"]))
        after = (since.timestamp() + deadline) - self.now().timestamp()
        self.requeue_after(max(after, 1.0))


def _strip_zero(status: Obj) -> Obj:
    """DeploymentStatus fields are ``omitempty``: drop zero counters as Kubernetes does."""
    return {k: v for k, v in status.items() if v not in (0, None, [])}


def _status_equal(a: Obj | None, b: Obj | None) -> bool:
    return _strip_zero(a or {}) == _strip_zero(b or {})
