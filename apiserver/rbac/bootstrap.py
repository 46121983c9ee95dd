"""Reconciles the default policy (:mod:`apiserver.rbac.policy`) into the store at apiserver start.

As kube-apiserver's ``rbac/bootstrap-roles`` post-start hook:

* a missing default ClusterRole or ClusterRoleBinding is created;
* an existing one annotated ``rbac.authorization.kubernetes.io/autoupdate: "false"`` is left alone;
* otherwise it is repaired additively: missing rules (or subjects) and default labels and
  annotations are added, extra ones kept; an aggregated role's rules are recomputed from every
  ClusterRole in the store (:mod:`machinery.rbac_aggregation`), so ``admin``/``edit``/``view`` are
  usable even before the aggregation controller runs.

Writes go through the registries without a caller, so escalation checks do not apply to them.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import orjson

from apiserver.context import ApiContext
from apiserver.rbac import policy
from apiserver.write_options import WriteOptions
from machinery.errors import AlreadyExistsError, ConflictError
from machinery.rbac_aggregation import converge
from machinery.resources import ResourceInfo, lookup_kind

log = logging.getLogger(__name__)


def _resource(kind: str) -> ResourceInfo:
    resource = lookup_kind(f"{policy.RBAC_GROUP}/v1", kind)
    assert resource is not None, kind
    return resource


async def _stored(ctx: ApiContext, resource: ResourceInfo) -> dict[str, dict[str, Any]]:
    listed = await ctx.storage.list(resource.storage_prefix())
    objects = (orjson.loads(kv.value) for kv in listed.items)
    return {obj["metadata"]["name"]: obj for obj in objects}


def _frozen(obj: dict[str, Any]) -> bool:
    return (obj.get("metadata", {}).get("annotations") or {}).get(policy.AUTOUPDATE) == "false"


def _merge_meta(live: dict[str, Any], default: dict[str, Any]) -> None:
    meta, want = live.setdefault("metadata", {}), default["metadata"]
    for key in ("labels", "annotations"):
        merged = {**want.get(key, {}), **(meta.get(key) or {})}
        if merged:
            meta[key] = merged


def _reconcile_role(live: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(live)
    _merge_meta(out, default)
    rules = out.setdefault("rules", [])
    if default.get("aggregationRule"):
        selectors = (out.setdefault("aggregationRule", {}).setdefault("clusterRoleSelectors", []))
        selectors += [s for s in default["aggregationRule"]["clusterRoleSelectors"] if s not in selectors]
    else:
        rules += [r for r in default["rules"] if r not in rules]
    return out


def _reconcile_binding(live: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(live)
    _merge_meta(out, default)
    subjects = out.setdefault("subjects", [])
    subjects += [s for s in default["subjects"] if s not in subjects]
    return out


async def _write(ctx: ApiContext, resource: ResourceInfo, live: dict[str, Any] | None, want: dict[str, Any]) -> None:
    registry = ctx.registry(resource)
    name = want["metadata"]["name"]
    try:
        if live is None:
            await registry.create(None, want, WriteOptions())
            log.info("created %s %s", resource.kind, name)
        elif want != live:
            await registry.update(None, name, want, WriteOptions())
            log.info("reconciled %s %s", resource.kind, name)
    except (AlreadyExistsError, ConflictError):
        log.info("%s %s changed while reconciling; the next start reconciles it", resource.kind, name)


async def ensure_default_policy(ctx: ApiContext) -> int:
    """Create or repair the default roles and bindings; returns the store revision afterwards."""
    roles_resource, bindings_resource = _resource("ClusterRole"), _resource("ClusterRoleBinding")
    live_roles = await _stored(ctx, roles_resource)
    desired = {name: copy.deepcopy(role) for name, role in live_roles.items()}
    for default in policy.cluster_roles():
        name = default["metadata"]["name"]
        live = live_roles.get(name)
        if live is None:
            desired[name] = default
        elif not _frozen(live):
            desired[name] = _reconcile_role(live, default)
    converge(desired)
    for name, want in desired.items():
        live = live_roles.get(name)
        if live is None or not _frozen(live):
            await _write(ctx, roles_resource, live, want)
    live_bindings = await _stored(ctx, bindings_resource)
    for default in policy.cluster_role_bindings():
        live = live_bindings.get(default["metadata"]["name"])
        if live is None:
            await _write(ctx, bindings_resource, None, default)
        elif not _frozen(live):
            await _write(ctx, bindings_resource, live, _reconcile_binding(live, default))
    return await ctx.storage.current_revision()
