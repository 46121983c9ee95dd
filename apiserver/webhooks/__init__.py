"""Dynamic admission: MutatingWebhookConfiguration and ValidatingWebhookConfiguration in the request path.

Where webhooks run (Kubernetes' order): the registry's built-in mutating admission, then the
mutating webhooks (:func:`with_mutating_webhooks` wraps every registry's mutating hook), then
schema validation, then the validating webhooks (:func:`validate`, called by the registry once
the object is final), then the store. Deletes call both kinds with the stored object
(:func:`admit_delete`); ``pods/exec``, ``pods/attach`` and ``pods/portforward`` call them with
``CONNECT`` before the stream is relayed.

How a registry knows who asks: :func:`admission_middleware` (inside authentication) records the
request's caller and addressed resource in a context variable for the duration of the handler;
registry calls outside a request (the apiserver's own bootstrap writes) see none and call no
webhook, and requests for another resource than the one addressed (none today) neither.
Warnings the webhooks return are added to the response as ``Warning`` headers
(:func:`add_warning_headers`, an ``on_response_prepare`` signal), on success and on failure.

Subresources whose object has a kind of its own (:mod:`.views`): the scale handlers wrap their
write in :func:`viewed_as` so webhooks see an ``autoscaling/v1`` Scale; ``pods/binding`` and
``pods/eviction`` call :func:`admit_subresource_create` with their Binding or Eviction.

Modules: :mod:`.config` (configurations from the watch caches), :mod:`.matching` (rules,
selectors, matchConditions), :mod:`.review` (AdmissionReview in and out), :mod:`.client` (where
to dial, TLS, timeouts, the network guard), :mod:`.dispatch` (the calling order and outcomes).
With no configuration stored, each request pays two dictionary look-ups.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from apiserver.authn import USER
from apiserver.requests import warning_headers
from apiserver.routing import parse_resource_path
from apiserver.webhooks.attributes import (
    CONNECT,
    CREATE,
    DELETE,
    EXEMPT_GROUP_RESOURCES,
    UPDATE,
    Call,
    RequestScope,
    options_for,
)
from apiserver.webhooks.dispatch import AdmissionWebhooks
from apiserver.webhooks.views import ObjectView
from machinery.resources import ResourceInfo

__all__ = ["CONNECT_SUBRESOURCES", "WEBHOOKS", "AdmissionWebhooks", "ObjectView", "add_warning_headers",
           "admission_middleware", "admit_delete", "admit_subresource_create", "close_webhooks", "validate",
           "viewed_as", "with_mutating_webhooks"]

Obj = dict[str, Any]
Mutating = Callable[[Obj, Obj | None, bool], Awaitable[None]]

WEBHOOKS: web.AppKey[AdmissionWebhooks] = web.AppKey("kubelab_webhooks", AdmissionWebhooks)
_SCOPE_KEY: web.RequestKey[RequestScope] = web.RequestKey("kubelab_admission_scope", RequestScope)
_BOUND: ContextVar[tuple[AdmissionWebhooks, RequestScope] | None] = ContextVar("kubelab_admission", default=None)
_VIEW: ContextVar[ObjectView | None] = ContextVar("kubelab_admission_view", default=None)

# Subresources whose writes go through the registry's admission with the resource's object (scale
# with a view of it); binding and eviction carry their own kind (:func:`admit_subresource_create`).
_OBJECT_SUBRESOURCES = frozenset({"", "status", "finalize", "scale"})
_OWN_KIND_SUBRESOURCES = frozenset({"binding", "eviction"})
CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
_CONNECT_KINDS = {"exec": "PodExecOptions", "attach": "PodAttachOptions", "portforward": "PodPortForwardOptions"}


def _bound(resource: ResourceInfo) -> tuple[AdmissionWebhooks, RequestScope] | None:
    bound = _BOUND.get()
    if bound is None:
        return None
    dispatcher, scope = bound
    if (not dispatcher.active() or scope.resource.group_resource != resource.group_resource
            or scope.subresource not in _OBJECT_SUBRESOURCES):
        return None
    return bound


@contextlib.contextmanager
def viewed_as(view: ObjectView) -> Iterator[None]:
    """Within the block, webhooks see the objects admitted through ``view`` (a subresource's kind)."""
    token = _VIEW.set(view)
    try:
        yield
    finally:
        _VIEW.reset(token)


def _call(scope: RequestScope, resource: ResourceInfo, operation: str, obj: Obj | None, old: Obj | None,
          dry_run: bool, options: Obj | None) -> Call:
    meta = (obj if obj is not None else old or {}).get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    if resource.group == "" and resource.plural == "namespaces":
        namespace = name  # Kubernetes: a Namespace request's namespace is the namespace itself
    view = _VIEW.get() if scope.subresource else None
    kind = (resource.group, resource.version, resource.kind)
    if view is not None:
        obj = None if obj is None else view.view(obj)
        old = None if old is None else view.view(old)
        kind = view.kind
    return Call(operation=operation, resource=resource, subresource=scope.subresource, namespace=namespace,
                name=name, object=obj, old_object=old, user=scope.user, dry_run=dry_run, options=options,
                kind=kind)


def with_mutating_webhooks(resource: ResourceInfo, builtin: Mutating | None, *,
                           after_patches: Callable[[Obj], None] | None = None) -> Mutating:
    """``builtin`` (a registry's mutating admission), then the request's mutating webhooks.

    ``after_patches(obj)`` runs when a webhook changed the object (custom resources prune and
    default it again, as Kubernetes decodes a patched custom object)."""

    async def admit(obj: Obj, old: Obj | None, dry_run: bool) -> None:
        if builtin is not None:
            await builtin(obj, old, dry_run)
        bound = _bound(resource)
        if bound is None or resource.group_resource in EXEMPT_GROUP_RESOURCES:
            return
        dispatcher, scope = bound
        operation = CREATE if old is None else UPDATE
        call = _call(scope, resource, operation, obj, old, dry_run,
                     options_for(operation, dry_run=dry_run, field_manager=scope.field_manager))
        seen = call.object
        if not await dispatcher.mutate(call, scope.warnings):
            return
        view = _VIEW.get() if scope.subresource else None
        if view is not None and seen is not None and seen is not obj:
            view.write_back(obj, seen)
        if after_patches is not None:
            after_patches(obj)

    return admit


async def validate(resource: ResourceInfo, obj: Obj, old: Obj | None, dry_run: bool) -> None:
    """The request's validating webhooks for a final object (``old`` None on create)."""
    bound = _bound(resource)
    if bound is None or resource.group_resource in EXEMPT_GROUP_RESOURCES:
        return
    dispatcher, scope = bound
    operation = CREATE if old is None else UPDATE
    call = _call(scope, resource, operation, obj, old, dry_run,
                 options_for(operation, dry_run=dry_run, field_manager=scope.field_manager))
    await dispatcher.validate(call, scope.warnings)


async def admit_delete(resource: ResourceInfo, live: Obj, options: Any) -> None:
    """Mutating (which may not patch) and validating webhooks for deleting ``live``.

    ``options`` is the registry's DeleteOptions (read by attribute)."""
    bound = _bound(resource)
    if bound is None or resource.group_resource in EXEMPT_GROUP_RESOURCES:
        return
    dispatcher, scope = bound
    dry_run = bool(getattr(options, "dry_run", False))
    extra: Obj = {}
    if getattr(options, "grace_period_seconds", None) is not None:
        extra["gracePeriodSeconds"] = options.grace_period_seconds
    if getattr(options, "propagation_policy", None):
        extra["propagationPolicy"] = options.propagation_policy
    call = _call(scope, resource, DELETE, None, live, dry_run, options_for(DELETE, dry_run=dry_run, extra=extra))
    await dispatcher.mutate(call, scope.warnings)
    await dispatcher.validate(call, scope.warnings)


async def admit_subresource_create(resource: ResourceInfo, namespace: str, name: str, obj: Obj,
                                   kind: tuple[str, str, str], dry_run: bool) -> None:
    """Mutating (patching ``obj`` in place), then validating webhooks for a CREATE on a subresource
    whose object has a kind of its own (``pods/binding``: Binding, ``pods/eviction``: Eviction)."""
    bound = _BOUND.get()
    if bound is None:
        return
    dispatcher, scope = bound
    if (not dispatcher.active() or scope.resource.group_resource != resource.group_resource
            or scope.subresource not in _OWN_KIND_SUBRESOURCES):
        return
    call = Call(operation=CREATE, resource=scope.resource, subresource=scope.subresource,
                namespace=namespace, name=name, object=obj, old_object=None, user=scope.user, dry_run=dry_run,
                options=options_for(CREATE, dry_run=dry_run, field_manager=scope.field_manager), kind=kind)
    await dispatcher.mutate(call, scope.warnings)
    await dispatcher.validate(call, scope.warnings)


async def _connect(dispatcher: AdmissionWebhooks, scope: RequestScope, request: web.Request,
                   namespace: str, name: str) -> None:
    sub = scope.subresource
    options: Obj = {"kind": _CONNECT_KINDS[sub], "apiVersion": "v1"}
    for key in ("container", "stdin", "stdout", "stderr", "tty"):
        if key in request.query:
            value = request.query[key]
            options[key] = value if key == "container" else value.lower() in ("true", "1")
    if request.query.getall("command", []):
        options["command"] = request.query.getall("command")
    if request.query.getall("ports", []):
        options["ports"] = [int(p) for p in request.query.getall("ports") if p.isdigit()]
    call = Call(operation=CONNECT, resource=scope.resource, subresource=sub, namespace=namespace, name=name,
                object=options, old_object=None, user=scope.user, dry_run=False, options=None,
                kind=("", "v1", _CONNECT_KINDS[sub]))
    await dispatcher.mutate(call, scope.warnings)
    await dispatcher.validate(call, scope.warnings)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def admission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record who asks for what (see the module docstring); call CONNECT webhooks."""
    dispatcher = request.app.get(WEBHOOKS)
    if dispatcher is None or not dispatcher.active() or request.method in ("HEAD", "OPTIONS"):
        return await handler(request)
    target = parse_resource_path(request.path)
    if target is None or request.get(USER) is None:
        return await handler(request)
    connect = target.subresource in CONNECT_SUBRESOURCES
    if request.method == "GET" and not connect:
        return await handler(request)
    scope = RequestScope(user=request[USER], resource=target.resource, subresource=target.subresource,
                         dry_run="All" in request.query.getall("dryRun", []),
                         field_manager=request.query.get("fieldManager", ""))
    request[_SCOPE_KEY] = scope
    token = _BOUND.set((dispatcher, scope))
    try:
        if connect and target.name and target.resource.group_resource == "pods":
            await _connect(dispatcher, scope, request, target.namespace or "", target.name)
        return await handler(request)
    finally:
        _BOUND.reset(token)


async def add_warning_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the webhooks' warnings as ``Warning: 299 - "..."`` headers."""
    scope = request.get(_SCOPE_KEY)
    if scope is not None and scope.warnings:
        for key, value in warning_headers(scope.warnings).items():
            response.headers.add(key, value)


async def close_webhooks(app: web.Application) -> None:
    """``on_cleanup``: close the shared webhook client."""
    dispatcher = app.get(WEBHOOKS)
    if dispatcher is not None:
        await dispatcher.close()
