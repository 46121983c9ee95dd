"""HTTP handlers for resource paths: one entry point that parses the path and dispatches by verb.

    GET    collection        list (or watch with ?watch=true)
    GET    item[/status]     get
    POST   collection        create
    PUT    item[/status]     update (replace)
    PATCH  item[/status]     patch (json, merge, strategic, apply)
    DELETE item              delete (graceful, finalizers, propagation policy); an immediate
                             delete answers a Success Status (see RETURNS_DELETED_OBJECT)
    DELETE collection        deletecollection
Subresources other than status (scale, binding, eviction, finalize, log, exec) live in
``subresources.py``; watches in ``watch.py``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from apiserver import printing, subresources
from apiserver.codec import JSON_TYPES, duplicate_fields, media_type, parse_object
from apiserver.context import CONTEXT, ApiContext
from apiserver.listing import ListQuery, list_objects, make_filter
from apiserver.patching import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    apply_patch,
    parse_patch,
    patch_type,
)
from apiserver.requests import (
    RESOURCE,
    SUBRESOURCE,
    VERB,
    check_acceptable,
    dry_run,
    field_validation,
    json_response,
    options_invalid,
    query_bool,
    query_int,
    send_json,
    status_response,
    wants_table,
)
from apiserver.routing import RequestTarget, parse_resource_path, route_not_found
from apiserver.watch import serve_watch
from apiserver.write_options import DeleteOptions, WriteOptions
from machinery.errors import (
    BadRequestError,
    DecodingError,
    MethodNotAllowedError,
    NotFoundError,
    StatusCause,
    UnsupportedMediaTypeError,
    invalid,
)
from machinery.resources import ResourceInfo

_OWN_MEDIA_TYPES = frozenset({"log", "proxy", "exec", "attach", "portforward"})
"""Subresources that answer in their own media type (a log is text/plain, a proxy relays the backend's, the
streams upgrade the connection): no JSON-only 406 for their Accept headers."""


async def handle_resource(request: web.Request) -> web.StreamResponse:
    target = parse_resource_path(request.path)
    if target is None:
        raise route_not_found()
    ctx = request.app[CONTEXT]
    request[RESOURCE] = target.resource.plural
    request[SUBRESOURCE] = target.subresource
    if target.subresource not in _OWN_MEDIA_TYPES:
        check_acceptable(request)
    method = request.method
    if target.subresource and target.subresource != "status":
        return await subresources.handle(request, ctx, target)
    if target.name is None:
        if method == "GET":
            if query_bool(request, "watch"):
                request[VERB] = "watch"
                return await serve_watch(request, ctx, target)
            request[VERB] = "list"
            return await _list(request, ctx, target)
        if method == "POST":
            request[VERB] = "create"
            return await _create(request, ctx, target)
        if method == "DELETE":
            request[VERB] = "deletecollection"
            return await _delete_collection(request, ctx, target)
    else:
        if target.resource.namespaced and target.namespace is None:
            raise route_not_found()
        if method == "GET":
            request[VERB] = "get"
            return await _get(request, ctx, target)
        if method == "PUT":
            request[VERB] = "update"
            return await _update(request, ctx, target)
        if method == "PATCH":
            request[VERB] = "patch"
            return await _patch(request, ctx, target)
        if method == "DELETE" and not target.subresource:
            request[VERB] = "delete"
            return await _delete(request, ctx, target)
    raise MethodNotAllowedError(f"the server does not allow this method on the requested resource ({method})")


def render_object(request: web.Request, resource: ResourceInfo, obj: dict[str, Any], *, status: int = 200,
                  warnings: list[str] | None = None) -> web.Response:
    if request.method == "GET" and wants_table(request):
        include = printing.check_include_object(request.query.get("includeObject", ""))
        table = printing.to_table(resource, [obj], resource_version=obj["metadata"].get("resourceVersion", ""),
                                  include_object=include)
        return json_response(table, status=status, warnings=warnings)
    return json_response(obj, status=status, warnings=warnings)


async def read_body(request: web.Request) -> bytes:
    return await request.read()


# ---- collection verbs ----------------------------------------------------------------------
async def _list(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.StreamResponse:
    r = target.resource
    query_int(request, "timeoutSeconds")  # validated; a list answers well within any timeout
    q = ListQuery(
        namespace=target.namespace if r.namespaced else None,
        matches=make_filter(r, request.query.get("labelSelector", ""), request.query.get("fieldSelector", "")),
        limit=max(query_int(request, "limit") or 0, 0),  # Kubernetes: a limit <= 0 is no limit
        continue_token=request.query.get("continue", ""),
        resource_version=request.query.get("resourceVersion", ""),
        resource_version_match=request.query.get("resourceVersionMatch", ""),
    )
    table = wants_table(request)
    registry = ctx.registry(r)
    presenter = registry.present if registry.presents else None  # custom resources: version, defaults
    page = await list_objects(r, ctx.storage, ctx.caches, q, consistent_wait=ctx.consistent_list_wait,
                              need_objects=table or presenter is not None)
    if presenter is not None:
        assert page.objects is not None
        page.objects = [presenter(obj) for obj in page.objects]
        page.raws = [orjson.dumps(obj) for obj in page.objects]
    if table:
        assert page.objects is not None
        include = printing.check_include_object(request.query.get("includeObject", ""))
        table_doc = printing.to_table(r, page.objects, resource_version=page.resource_version,
                                      continue_token=page.continue_token, include_object=include)
        return await send_json(request, orjson.dumps(table_doc))
    meta: dict[str, Any] = {"resourceVersion": page.resource_version}
    if page.continue_token:
        meta["continue"] = page.continue_token
    head = orjson.dumps({"kind": r.list_kind, "apiVersion": r.api_version, "metadata": meta})
    # The items are stored JSON already: splice them in without decoding or encoding.
    return await send_json(request, b'%s,"items":[%s]}' % (head[:-1], b",".join(page.raws)))


async def _read_object(request: web.Request, opts: WriteOptions) -> tuple[dict[str, Any], list[str]]:
    """The request body as an object, plus warnings for duplicate fields (an error under Strict)."""
    body = await read_body(request)
    content_type = request.headers.get("Content-Type")
    obj = parse_object(body, content_type)
    warnings: list[str] = []
    if opts.field_validation != "Ignore" and media_type(content_type) in JSON_TYPES:
        duplicates = [f'duplicate field "{name}"' for name in duplicate_fields(body)]
        if duplicates and opts.field_validation == "Strict":
            raise BadRequestError("strict decoding error: " + ", ".join(duplicates))
        warnings = duplicates
    return obj, warnings


def _write_options(request: web.Request) -> WriteOptions:
    return WriteOptions(dry_run=dry_run(request), field_validation=field_validation(request),
                        field_manager=request.query.get("fieldManager", ""))


async def _create(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    opts = _write_options(request)
    obj, decode_warnings = await _read_object(request, opts)
    namespace = target.namespace
    if namespace is None and target.resource.namespaced:
        raise route_not_found()
    created, warnings = await ctx.registry(target.resource).create(namespace, obj, opts)
    return render_object(request, target.resource, created, status=201, warnings=decode_warnings + warnings)


async def _delete_collection(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    r = target.resource
    options = await _delete_options(request)
    q = ListQuery(namespace=target.namespace if r.namespaced else None,
                  matches=make_filter(r, request.query.get("labelSelector", ""),
                                      request.query.get("fieldSelector", "")))
    page = await list_objects(r, ctx.storage, ctx.caches, q, consistent_wait=ctx.consistent_list_wait,
                              need_objects=True)
    assert page.objects is not None
    registry = ctx.registry(r)
    items = []
    for obj in page.objects:
        meta = obj["metadata"]
        try:
            deleted, _ = await registry.delete(meta.get("namespace"), meta["name"], options)
        except NotFoundError:
            continue
        items.append(deleted)
    return json_response({"kind": r.list_kind, "apiVersion": r.api_version,
                          "metadata": {"resourceVersion": page.resource_version}, "items": items})


# ---- item verbs ----------------------------------------------------------------------------
async def _get(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    assert target.name is not None
    obj = await ctx.registry(target.resource).get(target.namespace, target.name)
    return render_object(request, target.resource, obj)


async def _update(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    assert target.name is not None
    opts = _write_options(request)
    obj, decode_warnings = await _read_object(request, opts)
    updated, warnings = await ctx.registry(target.resource).update(
        target.namespace, target.name, obj, opts, subresource=target.subresource)
    return render_object(request, target.resource, updated, warnings=decode_warnings + warnings)


async def _patch(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    assert target.name is not None
    name = target.name
    ptype = patch_type(request.headers.get("Content-Type"))
    if ptype == STRATEGIC_PATCH and target.resource.custom is not None:
        raise UnsupportedMediaTypeError(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}")
    patch = parse_patch(await read_body(request), ptype)
    force = query_bool(request, "force")
    if force and ptype != APPLY_PATCH:
        raise options_invalid(request, "force", "Unsupported value: true: may not be specified for non-apply patch",
                              reason="FieldValueNotSupported")
    if ptype == APPLY_PATCH and not request.query.get("fieldManager"):
        raise options_invalid(request, "fieldManager", "Required value: is required for apply patch",
                              reason="FieldValueRequired")
    opts = _write_options(request)
    resource = target.resource

    def mutate(live: dict[str, Any]) -> dict[str, Any]:
        return apply_patch(live, patch, ptype, kind=resource.kind)

    def new_object() -> dict[str, Any]:
        obj = dict(patch)
        meta = dict(obj.get("metadata") or {})
        if meta.get("name") not in (None, "", name):
            raise BadRequestError(f'the name of the object ({meta["name"]}) does not match the name on the URL '
                                  f"({name})")
        meta["name"] = name
        obj["metadata"] = meta
        return obj

    create_missing = new_object if ptype == APPLY_PATCH and not target.subresource else None
    registry = ctx.registry(resource)
    before = await _exists(ctx, target) if create_missing is not None else True
    try:
        result, warnings = await registry.mutate(target.namespace, name, mutate, opts,
                                                 subresource=target.subresource, create_missing=create_missing)
    except DecodingError as exc:
        # The patch applied but the result does not decode: Kubernetes answers 422 naming the patch.
        raise invalid(resource.kind, name, [StatusCause("patch", exc.message)], group=resource.group) from exc
    return render_object(request, resource, result, status=200 if before else 201, warnings=warnings)


async def _exists(ctx: ApiContext, target: RequestTarget) -> bool:
    assert target.name is not None
    return await ctx.storage.get(target.resource.storage_key(target.namespace, target.name)) is not None


async def _delete_options(request: web.Request) -> DeleteOptions:
    body = await read_body(request) if request.body_exists else b""
    parsed: dict[str, Any] | None = None
    if body.strip():
        parsed = parse_object(body, request.headers.get("Content-Type"))
    options = DeleteOptions.from_dict(parsed, dry_run=dry_run(request))
    grace = query_int(request, "gracePeriodSeconds")
    policy = request.query.get("propagationPolicy")
    if grace is not None or policy:
        merged = dict(parsed or {})
        if grace is not None:
            merged["gracePeriodSeconds"] = grace
        if policy:
            merged["propagationPolicy"] = policy
        options = DeleteOptions.from_dict(merged, dry_run=options.dry_run)
    return options


# Resources whose immediate delete answers the deleted object (ReturnDeletedObject in
# kube-apiserver's registries); every other immediate delete answers a Success Status.
RETURNS_DELETED_OBJECT = frozenset({("", "pods"), ("", "services"), ("", "namespaces"), ("", "serviceaccounts")})


def deleted_status(resource: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """The ``Status`` kube-apiserver answers for an object deleted at once (``details.kind`` is the resource)."""
    meta = obj.get("metadata") or {}
    details: dict[str, Any] = {"name": meta.get("name", "")}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    if meta.get("uid"):
        details["uid"] = meta["uid"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


async def _delete(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    """The object while its deletion is pending (finalizers, grace period); once gone, a Status."""
    assert target.name is not None
    r = target.resource
    options = await _delete_options(request)
    obj, gone = await ctx.registry(r).delete(target.namespace, target.name, options)
    if gone and (r.group, r.plural) not in RETURNS_DELETED_OBJECT:
        return status_response(deleted_status(r, obj))
    return json_response(obj)
