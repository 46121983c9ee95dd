"""Request attributes for authorisation, parsed from the URL as Kubernetes' ``RequestInfoFactory`` does.

::

    GET    /api/v1/namespaces/ns/pods            list   pods            (watch with ?watch=true)
    GET    /api/v1/namespaces/ns/pods/p/log      get    pods/log  "p"
    GET    /api/v1/namespaces/ns                 get    namespaces "ns" in namespace "ns"
    POST   /apis/apps/v1/namespaces/ns/deployments          create
    DELETE /api/v1/namespaces/ns/pods            deletecollection
    GET    /api/v1/watch/namespaces/ns/pods      watch  (the legacy /watch/ prefix)
    GET    /healthz, /api, /apis/apps/v1         get on a non-resource path

A collection GET with ``fieldSelector=metadata.name=<n>`` is about ``<n>`` (``kubectl get pod p -w``).
Independent of the served resource table: an unknown resource is still a resource request, so a
caller without rights gets Forbidden before learning whether it exists, as on Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping

from apiserver.authz import Attributes

_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}
_SPECIAL_VERBS = ("proxy", "watch")
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _name_from_field_selector(selector: str) -> str:
    for term in selector.split(","):
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and key.strip() == "metadata.name" and not value.startswith("="):
                value = value.strip()
                return value if value and "/" not in value and value not in (".", "..") else ""
    return ""


def attributes_of(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """What a request wants to do (see the module docstring)."""
    parts = [p for p in path.strip("/").split("/") if p]
    non_resource = Attributes(method.lower(), path=path)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            return non_resource
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "watch" if _true(query.get("watch")) else "list"
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb, resource, api_group=group, api_version=version, subresource=subresource,
                      namespace=namespace, name=name, path=path)
