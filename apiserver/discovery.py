"""API discovery documents: ``/version``, ``/api``, ``/apis``, group-version resource lists,
and the aggregated discovery (apidiscovery.k8s.io v2 and v2beta1) kubectl asks for first.

Everything is built from ``machinery.resources`` and served as bytes, rebuilt only when the
set of served resources changes (a CustomResourceDefinition is established or removed: the
caches are keyed on ``resources.revision()``). The aggregated answer must carry its exact
Content-Type, or kubectl finds no resources.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

import orjson

from machinery.resources import ResourceInfo, all_resources, group_versions, revision

SERVER_MINOR = "32"
VERSION_INFO: dict[str, str] = {
    "major": "1",
    "minor": SERVER_MINOR,
    "gitVersion": f"v1.{SERVER_MINOR}.0-kubelab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> str | None:
    """``v2`` / ``v2beta1`` when the Accept header asks for aggregated discovery (first match wins)."""
    for part in accept.split(","):
        if "as=APIGroupDiscoveryList" in part and "g=apidiscovery.k8s.io" in part:
            if "v=v2beta1" in part:
                return "v2beta1"
            if "v=v2" in part:
                return "v2"
    return None


def _resource_entry(r: ResourceInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    return entry


def _subresource_entry(r: ResourceInfo, sub_name: str) -> dict[str, Any]:
    sub = r.subresource(sub_name)
    assert sub is not None
    entry: dict[str, Any] = {"name": f"{r.plural}/{sub.name}", "singularName": "", "namespaced": r.namespaced,
                             "kind": sub.kind, "verbs": list(sub.verbs)}
    if sub.version and (sub.group, sub.version) != (r.group, r.version):
        # Named only when the kind lives elsewhere (``autoscaling/v1`` Scale, ``policy/v1`` Eviction).
        entry["group"] = sub.group
        entry["version"] = sub.version
    return entry


def resource_list(group: str, version: str) -> bytes | None:
    """``APIResourceList`` for one group version (``/api/v1``, ``/apis/apps/v1``)."""
    return _resource_list(group, version, revision())


@lru_cache(maxsize=512)
def _resource_list(group: str, version: str, _revision: int) -> bytes | None:
    members = [r for r in all_resources() if r.group == group and r.version == version]
    if not members:
        return None
    resources: list[dict[str, Any]] = []
    for r in members:
        resources.append(_resource_entry(r))
        resources.extend(_subresource_entry(r, s.name) for s in r.subresources)
    gv = f"{group}/{version}" if group else version
    return orjson.dumps({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                         "resources": resources})


@cache
def legacy_api_versions(server_address: str) -> bytes:
    return orjson.dumps({"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                         "serverAddress": server_address}]})


def _group_entry(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions() if g == group]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> bytes:
    return _api_group_list(revision())


@lru_cache(maxsize=8)
def _api_group_list(_revision: int) -> bytes:
    groups: list[dict[str, Any]] = []
    for g, _v in group_versions():
        if g and all(x["name"] != g for x in groups):
            groups.append(_group_entry(g))
    return orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})


def api_group(group: str) -> bytes | None:
    return _api_group(group, revision())


@lru_cache(maxsize=512)
def _api_group(group: str, _revision: int) -> bytes | None:
    if not any(g == group for g, _ in group_versions()):
        return None
    return orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)})


def _aggregated_resource(r: ResourceInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    subs = []
    for s in r.subresources:
        subs.append({
            "subresource": s.name,
            "responseKind": {"group": s.group if s.version else r.group,
                             "version": s.version or r.version, "kind": s.kind},
            "verbs": list(s.verbs),
        })
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(version: str, legacy: bool) -> bytes:
    """The APIGroupDiscoveryList for ``/api`` (legacy=True) or ``/apis``."""
    return _aggregated(version, legacy, revision())


@lru_cache(maxsize=16)
def _aggregated(version: str, legacy: bool, _revision: int) -> bytes:
    items = []
    groups: list[str] = []
    for g, _v in group_versions():
        if (g == "") == legacy and g not in groups:
            groups.append(g)
    for g in groups:
        versions = []
        for gg, v in group_versions():
            if gg != g:
                continue
            resources = [_aggregated_resource(r) for r in all_resources() if r.group == g and r.version == v]
            versions.append({"version": v, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
    return orjson.dumps({"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
                         "metadata": {}, "items": items})
