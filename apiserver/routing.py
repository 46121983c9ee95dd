"""Parse Kubernetes REST paths into a :class:`RequestTarget`.

    /api/v1[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]
    /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]

``/api/v1/namespaces/{name}[/status|/finalize]`` addresses the namespace itself;
``…/{pods|services|nodes}/{name}/proxy/{path…}`` is the ``proxy`` subresource (the path after
``proxy`` is the proxied one, read from the request by ``apiserver.resource_proxy``).

Trailing slashes are ignored, as kube-apiserver's router ignores them. A path that misses under
an API kube-apiserver serves (``/api/...``, ``/apis/<served group>/...``, ``/version/...``) is a
``NotFound`` Status; any other path, an unknown group included, is the plain-text
``404 page not found`` of kube-apiserver's catch-all handler (:class:`PageNotFound`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from machinery.errors import NotFoundError, StatusCause
from machinery.resources import ResourceInfo, group_versions, lookup, revision

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


class PageNotFound(Exception):
    """A path outside every served API: answered with a plain-text 404, not a Status."""


def route_not_found() -> NotFoundError:
    """A path under a served API that addresses nothing (kube-apiserver's router miss)."""
    return NotFoundError("the server could not find the requested resource",
                         causes=[StatusCause("", "404: Page Not Found", "UnexpectedServerResponse")])


def served_group(group: str) -> bool:
    """Whether ``group`` (not the core group) is an API group this server serves."""
    return _served_group(group, revision())


@lru_cache(maxsize=1024)
def _served_group(group: str, _revision: int) -> bool:
    return bool(group) and any(g == group for g, _ in group_versions())


def under_served_api(path: str) -> bool:
    """Whether ``path`` lies under an API this server serves (its misses answer a Status)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return False
    if parts[0] in ("api", "version"):
        return True
    return parts[0] == "apis" and len(parts) >= 2 and served_group(parts[1])


@dataclass(frozen=True)
class RequestTarget:
    """What a resource request addresses."""

    resource: ResourceInfo
    namespace: str | None  # None: cluster-scoped resource, or all namespaces
    name: str | None  # None: the collection
    subresource: str = ""


def parse_resource_path(path: str) -> RequestTarget | None:
    """The target of a resource path, or None when the path is not a resource path.

    Raises :class:`PageNotFound` for a group this server does not serve.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "apis" and not served_group(parts[1]):
        raise PageNotFound(path)
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
        if rest[2] != "proxy":  # {plural}/{name}/proxy/{path...}: the rest is the proxied path
            raise route_not_found()
        rest = rest[:3]
    plural = rest[0]
    resource = lookup(group, version, plural)
    if resource is None:
        raise route_not_found()
    name = rest[1] if len(rest) >= 2 else None
    subresource = rest[2] if len(rest) == 3 else ""
    if resource.namespaced is False and namespace is not None:
        raise route_not_found()
    if subresource and resource.subresource(subresource) is None:
        raise route_not_found()
    return RequestTarget(resource, namespace, name, subresource)
