"""Parse Kubernetes REST paths into a :class:`RequestTarget`.

    /api/v1[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]
    /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]

``/api/v1/namespaces/{name}[/status|/finalize]`` addresses the namespace itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from machinery.errors import NotFoundError
from machinery.resources import ResourceInfo, lookup

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class RequestTarget:
    """What a resource request addresses."""

    resource: ResourceInfo
    namespace: str | None  # None: cluster-scoped resource, or all namespaces
    name: str | None  # None: the collection
    subresource: str = ""


def parse_resource_path(path: str) -> RequestTarget | None:
    """The target of a resource path, or None when the path is not a resource path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise NotFoundError("the server could not find the requested resource")
    plural = rest[0]
    resource = lookup(group, version, plural)
    if resource is None:
        raise NotFoundError("the server could not find the requested resource")
    name = rest[1] if len(rest) >= 2 else None
    subresource = rest[2] if len(rest) == 3 else ""
    if resource.namespaced is False and namespace is not None:
        raise NotFoundError("the server could not find the requested resource")
    if subresource and resource.subresource(subresource) is None and not (
        resource.kind == "Namespace" and subresource == "finalize"
    ):
        raise NotFoundError("the server could not find the requested resource")
    return RequestTarget(resource, namespace, name, subresource)
