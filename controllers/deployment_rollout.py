"""The two Deployment strategies: RollingUpdate and Recreate (``rolling.go``, ``recreate.go``).

Called by ``controllers.deployment`` once a sync is neither paused nor a pure scaling event.
A rolling step scales the new ReplicaSet up within ``replicas + maxSurge`` and old ones down while
keeping ``replicas - maxUnavailable`` available; Recreate scales every old ReplicaSet to zero,
waits until their pods are gone, then scales the new one up. Each step writes at most what the
current cache justifies and returns; the next event continues the rollout (level-triggered).
"""

from __future__ import annotations

from typing import Any

from controllers import deployment_util as du
from controllers.deployment_sync import DeploymentSync

Obj = dict[str, Any]


async def rollout_rolling(s: DeploymentSync, rss: list[Obj]) -> None:
    """One RollingUpdate step."""
    new, old = await s.get_all_rss(rss, create=True)
    assert new is not None
    all_rss = [*old, new]
    if await _reconcile_new(s, all_rss, new):
        await s.sync_rollout_status(all_rss, new)
        return
    if await _reconcile_old(s, all_rss, du.active(old), new):
        await s.sync_rollout_status(all_rss, new)
        return
    if du.deployment_complete(s.d, s.d.get("status") or {}):
        await s.cleanup(old)
    await s.sync_rollout_status(all_rss, new)


async def _reconcile_new(s: DeploymentSync, all_rss: list[Obj], new: Obj) -> bool:
    want = du.replicas(s.d)
    if du.replicas(new) == want:
        return False
    size = want if du.replicas(new) > want else du.new_rs_replicas(s.d, all_rss, new)
    scaled, updated = await s.scale_rs(new, size)
    _replace(all_rss, updated)
    return scaled


async def _reconcile_old(s: DeploymentSync, all_rss: list[Obj], old: list[Obj], new: Obj) -> bool:
    if du.sum_spec(old) == 0:
        return False
    all_pods = du.sum_spec(all_rss)
    min_available = du.replicas(s.d) - du.max_unavailable(s.d)
    new_unavailable = du.replicas(new) - du.status_int(new, "availableReplicas")
    max_scaled_down = all_pods - min_available - new_unavailable
    if max_scaled_down <= 0:
        return False
    old, cleaned = await _cleanup_unhealthy(s, old, max_scaled_down)
    for rs in old:
        _replace(all_rss, rs)
    scaled = await _scale_down_old(s, [*old, new], old)
    return cleaned + scaled > 0


async def _cleanup_unhealthy(s: DeploymentSync, old: list[Obj], max_cleanup: int) -> tuple[list[Obj], int]:
    """Scale down old ReplicaSets' unavailable pods first: they serve nobody."""
    result = sorted(old, key=du.created_key)
    total = 0
    for i, rs in enumerate(result):
        if total >= max_cleanup:
            break
        size, available = du.replicas(rs), du.status_int(rs, "availableReplicas")
        # A status that lags a scale-down can report more available pods than the spec asks for:
        # then there is nothing unhealthy to remove (and size - available would scale *up*).
        if size == 0 or available >= size:
            continue
        count = min(max_cleanup - total, size - available)
        _, result[i] = await s.scale_rs(rs, size - count)
        total += count
    return result, total


async def _scale_down_old(s: DeploymentSync, all_rss: list[Obj], old: list[Obj]) -> int:
    min_available = du.replicas(s.d) - du.max_unavailable(s.d)
    # An RS just scaled down may still report the pods it is deleting as available: never count
    # more available pods than an RS is asked to keep, or the scale-down overshoots maxUnavailable.
    available = sum(min(du.status_int(rs, "availableReplicas"), du.replicas(rs)) for rs in all_rss)
    if available <= min_available:
        return 0
    to_scale = available - min_available
    total = 0
    for rs in sorted(old, key=du.created_key):
        if total >= to_scale:
            break
        if du.replicas(rs) == 0:
            continue
        count = min(du.replicas(rs), to_scale - total)
        await s.scale_rs(rs, du.replicas(rs) - count)
        total += count
    return total


async def rollout_recreate(s: DeploymentSync, rss: list[Obj], pods_by_rs: dict[str, list[Obj]]) -> None:
    """One Recreate step: old ReplicaSets to zero, wait for their pods, then the new one up."""
    new, old = await s.get_all_rss(rss, create=False)
    all_rss = [rs for rs in [*old, new] if rs is not None]
    scaled = False
    for rs in du.active(old):
        changed, _ = await s.scale_rs(rs, 0)
        scaled = scaled or changed
    if scaled:
        await s.sync_rollout_status(all_rss, new)
        return
    if _old_pods_running(new, old, pods_by_rs):
        await s.sync_rollout_status(all_rss, new)
        return
    if new is None:
        new, old = await s.get_all_rss(rss, create=True)
        all_rss = [*old] + ([new] if new is not None else [])
    if new is not None:
        _, updated = await s.scale_rs(new, du.replicas(s.d))
        _replace(all_rss, updated)
        new = updated
    if du.deployment_complete(s.d, s.d.get("status") or {}):
        await s.cleanup(old)
    await s.sync_rollout_status(all_rss, new)


def _old_pods_running(new: Obj | None, old: list[Obj], pods_by_rs: dict[str, list[Obj]]) -> bool:
    if du.sum_status(old, "replicas") > 0:
        return True
    new_uid = (new or {}).get("metadata", {}).get("uid")
    for uid, pods in pods_by_rs.items():
        if uid == new_uid:
            continue
        for pod in pods:
            if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                return True
    return False


def _replace(rss: list[Obj], updated: Obj) -> None:
    uid = updated["metadata"].get("uid")
    for i, rs in enumerate(rss):
        if rs["metadata"].get("uid") == uid:
            rss[i] = updated
