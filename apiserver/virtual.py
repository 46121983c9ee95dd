"""Virtual resources: create-only API objects answered by a handler and never stored.

Kubernetes serves several resources this way — TokenReview, SelfSubjectReview, the
``serviceaccounts/<name>/token`` TokenRequest, and the access reviews (SubjectAccessReview,
SelfSubjectAccessReview, SelfSubjectRulesReview, LocalSubjectAccessReview). Each is listed in
``machinery.resources`` like any other resource (so discovery, and kubectl, find it) and here as a
:class:`VirtualResource` binding its path to a :data:`VirtualHandler`. :func:`add_routes` puts
those routes ahead of the stored-resource routes; a POST decodes the body, checks its apiVersion
and kind, calls the handler with a :class:`VirtualCall` and answers ``201 Created`` with the
object the handler returns. Any other method is a 405, as on kube-apiserver.

To serve another one, write ``async def handler(call) -> dict`` and add a ``VirtualResource`` to
the list given to :func:`add_routes` (``apiserver.app`` holds that list).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from apiserver.authn import USER, UserInfo
from apiserver.codec import parse_object
from apiserver.context import CONTEXT, ApiContext
from apiserver.requests import RESOURCE, SUBRESOURCE, VERB, check_acceptable, dry_run, json_response
from machinery.errors import BadRequestError, MethodNotAllowedError
from machinery.resources import ResourceInfo


@dataclass(frozen=True)
class VirtualCall:
    """One create of a virtual resource, as its handler sees it."""

    ctx: ApiContext
    request: web.Request
    user: UserInfo
    """The caller after impersonation."""
    resource: VirtualResource
    namespace: str | None
    name: str | None
    """The parent object's name for a subresource (``serviceaccounts/<name>/token``)."""
    body: dict[str, Any]
    dry_run: bool

    @property
    def api_version(self) -> str:
        return self.resource.api_version


VirtualHandler = Callable[[VirtualCall], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class VirtualResource:
    """Where a virtual resource is served and who answers it.

    ``plural`` is the resource (``tokenreviews``) or, with ``subresource``, its parent
    (``serviceaccounts`` + ``token``). ``group``/``version``/``kind`` describe the body.
    """

    group: str
    version: str
    kind: str
    plural: str
    handler: VirtualHandler
    namespaced: bool = False
    subresource: str = ""
    path_group: str | None = None
    """The group version of the URL when it differs from the body's (TokenRequest is served
    under ``/api/v1`` but is an ``authentication.k8s.io/v1`` object): ``"group/version"``."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self) -> str:
        gv = self.path_group if self.path_group is not None else self.api_version
        base = f"/apis/{gv}" if "/" in gv else f"/api/{gv}"
        ns = "/namespaces/{namespace}" if self.namespaced else ""
        if self.subresource:
            return f"{base}{ns}/{self.plural}/{{name}}/{self.subresource}"
        return f"{base}{ns}/{self.plural}"


def _check_type(body: dict[str, Any], resource: VirtualResource) -> None:
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version and api_version != resource.api_version:
        raise BadRequestError(f"the API version in the data ({api_version}) does not match the expected API "
                              f"version ({resource.api_version})")
    if kind and kind != resource.kind:
        raise BadRequestError(f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})")


def _route(resource: VirtualResource) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        request[RESOURCE] = resource.plural
        request[SUBRESOURCE] = resource.subresource
        if request.method != "POST":
            raise MethodNotAllowedError(
                f"the server does not allow this method on the requested resource ({request.method})")
        request[VERB] = "create"
        check_acceptable(request)
        # The header as sent: aiohttp reports a missing one as application/octet-stream, but a body
        # without Content-Type is JSON to Kubernetes (the Python client sends reviews so).
        body = parse_object(await request.read(), request.headers.get("Content-Type"))
        _check_type(body, resource)
        call = VirtualCall(ctx=request.app[CONTEXT], request=request, user=request[USER], resource=resource,
                           namespace=request.match_info.get("namespace"), name=request.match_info.get("name"),
                           body=body, dry_run=dry_run(request))
        return json_response(await resource.handler(call), status=201)

    return serve


def add_routes(app: web.Application, resources: Iterable[VirtualResource]) -> None:
    """Route each virtual resource's path (with or without a trailing slash) to its handler.

    Call before the stored-resource routes are added: aiohttp matches routes in order.
    """
    for resource in resources:
        handler = _route(resource)
        app.router.add_route("*", resource.path(), handler)
        app.router.add_route("*", resource.path() + "/", handler)


async def cached_object(ctx: ApiContext, resource: ResourceInfo, namespace: str | None,
                        name: str) -> dict[str, Any] | None:
    """One object from the watch cache, or from the store when the cache has not seen it yet."""
    key = resource.storage_key(namespace, name)
    obj = ctx.caches.get(resource).get(key)
    if obj is not None:
        return obj
    kv = await ctx.storage.get(key)
    return orjson.loads(kv.value) if kv is not None else None
