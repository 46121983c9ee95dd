"""Subresources other than ``status``: ``scale``, ``pods/binding``, ``pods/eviction``,
``pods/ephemeralcontainers`` (GET, PUT, PATCH; only ``spec.ephemeralContainers`` is taken from the
request, and the pod validation allows appending there only), ``namespaces/finalize``; ``pods/log``,
``exec``, ``attach`` and ``portforward`` are relayed to the kubelet by ``apiserver.proxy``;
``pods|services|nodes/{name}/proxy`` by ``apiserver.resource_proxy``.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from apiserver import proxy, resource_proxy, webhooks
from apiserver.apiextensions.scale import handle_scale
from apiserver.codec import parse_object
from apiserver.context import ApiContext
from apiserver.patching import apply_patch, parse_patch, patch_type
from apiserver.requests import VERB, dry_run, field_validation, json_response
from apiserver.routing import RequestTarget
from apiserver.webhooks.views import BINDING_KIND, SCALE_KIND, ObjectView, eviction_kind
from apiserver.write_options import DeleteOptions, WriteOptions
from machinery.api.validation_ephemeral import ephemeral_update
from machinery.errors import BadRequestError, ConflictError, MethodNotAllowedError
from machinery.meta import now_rfc3339
from machinery.selectors import from_label_selector


async def handle(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.StreamResponse:
    sub = target.subresource
    method = request.method
    if sub == "scale":
        request[VERB] = {"GET": "get", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
        if target.resource.custom is not None:
            return await handle_scale(request, ctx, target)
        return await _scale(request, ctx, target)
    if sub == "binding" and method == "POST":
        request[VERB] = "create"
        return await _binding(request, ctx, target)
    if sub == "eviction" and method == "POST":
        request[VERB] = "create"
        return await _eviction(request, ctx, target)
    if sub == "ephemeralcontainers" and method in ("GET", "PUT", "PATCH"):
        request[VERB] = {"GET": "get", "PUT": "update", "PATCH": "patch"}[method]
        return await _ephemeral_containers(request, ctx, target)
    if sub == "finalize" and method == "PUT":
        request[VERB] = "update"
        return await _finalize(request, ctx, target)
    if sub == "log" and method == "GET":
        request[VERB] = "get"
        return await proxy.pod_log(request, ctx, target)
    if sub == "exec" and method in ("GET", "POST"):
        request[VERB] = "create"
        return await proxy.pod_exec(request, ctx, target)
    if sub == "attach" and method in ("GET", "POST"):
        request[VERB] = "create"
        return await proxy.pod_attach(request, ctx, target)
    if sub == "proxy" and target.name is not None:
        request[VERB] = resource_proxy.proxy_verb(method)
        return await resource_proxy.handle_proxy(request, ctx, target)
    if sub == "portforward" and method in ("GET", "POST"):
        request[VERB] = "create"
        return await proxy.pod_portforward(request, ctx, target)
    raise MethodNotAllowedError(f"the server does not allow this method on the requested resource ({method})")


def _options(request: web.Request) -> WriteOptions:
    return WriteOptions(dry_run=dry_run(request), field_validation=field_validation(request),
                        field_manager=request.query.get("fieldManager", ""))


def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale view of a Deployment or ReplicaSet."""
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = spec.get("selector")
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                  if k in meta}
    result_status: dict[str, Any] = {"replicas": int(status.get("replicas") or 0)}
    if selector is not None and obj.get("kind") == "ReplicationController":
        selector = {"matchLabels": selector}  # a plain label map
    if selector is not None:
        result_status["selector"] = str(from_label_selector(selector))
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
            "spec": {"replicas": int(spec.get("replicas", 1))}, "status": result_status}


def _write_back_scale(obj: dict[str, Any], scale: dict[str, Any]) -> None:
    """What a mutating webhook may change in a Scale: the object's ``spec.replicas``."""
    replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale.get("spec"), dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        raise BadRequestError(f"spec.replicas: Invalid value: {replicas!r}: must be an integer")
    obj.setdefault("spec", {})["replicas"] = replicas


SCALE_VIEW = ObjectView(kind=SCALE_KIND, view=scale_of, write_back=_write_back_scale)


async def _scale(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    assert target.name is not None
    registry = ctx.registry(target.resource)
    if request.method == "GET":
        return json_response(scale_of(await registry.get(target.namespace, target.name)))
    if request.method == "PUT":
        body = parse_object(await request.read(), request.headers.get("Content-Type"))
        ptype = ""
        patch: Any = None
    elif request.method == "PATCH":
        ptype = patch_type(request.headers.get("Content-Type"))
        patch = parse_patch(await request.read(), ptype)
    else:
        raise MethodNotAllowedError("the server does not allow this method on the requested resource")

    def desired_scale_fn(scale: dict[str, Any]) -> dict[str, Any]:
        if not ptype:
            return body
        return apply_patch(scale, patch, ptype, kind="Scale")

    def mutate(live: dict[str, Any]) -> dict[str, Any]:
        current = scale_of(live)
        desired = desired_scale_fn(copy.deepcopy(current))
        scale_spec = desired.get("spec") or {}
        if not isinstance(scale_spec, dict):
            raise BadRequestError("json: cannot unmarshal string into Go struct field Scale.spec of type "
                                  "v1.ScaleSpec")
        replicas = scale_spec.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise BadRequestError(f"spec.replicas: Invalid value: {replicas!r}: must be an integer")
        rv = (desired.get("metadata") or {}).get("resourceVersion")
        if rv and rv != live["metadata"]["resourceVersion"]:
            raise ConflictError(
                f'Operation cannot be fulfilled on {target.resource.group_resource} "{target.name}": the object '
                "has been modified; please apply your changes to the latest version and try again")
        live.setdefault("spec", {})["replicas"] = replicas
        live["metadata"].pop("resourceVersion", None)
        return live

    with webhooks.viewed_as(SCALE_VIEW):
        updated, _ = await registry.mutate(target.namespace, target.name, mutate, _options(request))
    return json_response(scale_of(updated))


def _as_sent(obj: dict[str, Any], api_version: str, kind: str, namespace: str | None) -> None:
    """A subresource's body as Kubernetes decodes it: typed, in the request's namespace."""
    obj.setdefault("apiVersion", api_version)
    obj.setdefault("kind", kind)
    meta = obj.setdefault("metadata", {})
    if isinstance(meta, dict) and namespace:
        meta.setdefault("namespace", namespace)


async def _binding(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    assert target.name is not None
    binding = parse_object(await request.read(), request.headers.get("Content-Type"))
    target_ref = binding.get("target") or {}
    if not isinstance(target_ref, dict):
        raise BadRequestError("json: cannot unmarshal string into Go struct field Binding.target of type "
                              "v1.ObjectReference")
    pod_name = target.name
    _as_sent(binding, "v1", "Binding", target.namespace)
    await webhooks.admit_subresource_create(target.resource, target.namespace or "", pod_name, binding,
                                            BINDING_KIND, dry_run(request))
    target_ref = binding.get("target") or {}
    node = target_ref.get("name") or "" if isinstance(target_ref, dict) else ""
    if not node:
        raise BadRequestError("target.name: Required value: a binding needs a target node name")

    def bind(pod: dict[str, Any]) -> dict[str, Any]:
        spec = pod.setdefault("spec", {})
        if pod["metadata"].get("deletionTimestamp"):
            raise ConflictError(f"pod {pod_name} is being deleted, cannot be assigned to a host")
        if spec.get("nodeName"):
            raise ConflictError(f"pod {pod_name} is already assigned to node \"{spec['nodeName']}\"")
        spec["nodeName"] = node
        return pod

    registry = ctx.registry(target.resource)
    await registry.mutate(target.namespace, pod_name, bind, _options(request), subresource="binding")

    def scheduled(p: dict[str, Any]) -> dict[str, Any]:
        status = p.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": now_rfc3339()})
        status["conditions"] = conditions
        return p

    await registry.mutate(target.namespace, pod_name, scheduled, _options(request), subresource="status")
    return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                          "code": 201}, status=201)


async def _eviction(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    assert target.name is not None
    body = await request.read()
    eviction = parse_object(body, request.headers.get("Content-Type")) if body.strip() else {}
    _as_sent(eviction, "policy/v1", "Eviction", target.namespace)
    await webhooks.admit_subresource_create(target.resource, target.namespace or "", target.name, eviction,
                                            eviction_kind(eviction), dry_run(request))
    delete_options = eviction.get("deleteOptions")
    if delete_options is not None and not isinstance(delete_options, dict):
        raise BadRequestError("json: cannot unmarshal value into Go struct field Eviction.deleteOptions of type "
                              "v1.DeleteOptions")
    options = DeleteOptions.from_dict(delete_options, dry_run=dry_run(request))
    await ctx.registry(target.resource).delete(target.namespace, target.name, options)
    return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                          "code": 201}, status=201)


async def _finalize(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    """``PUT namespaces/{name}/finalize``: only ``spec.finalizers`` is taken from the body."""
    assert target.name is not None
    body = parse_object(await request.read(), request.headers.get("Content-Type"))
    spec = body.get("spec") or {}
    finalizers = spec.get("finalizers") or [] if isinstance(spec, dict) else None
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        raise BadRequestError("json: cannot unmarshal value into Go struct field NamespaceSpec.spec.finalizers "
                              "of type []v1.FinalizerName")

    def finalize(ns: dict[str, Any]) -> dict[str, Any]:
        # An empty list (not a missing one) keeps defaulting from restoring "kubernetes".
        ns.setdefault("spec", {})["finalizers"] = list(finalizers)
        return ns

    result, _ = await ctx.registry(target.resource).mutate(None, target.name, finalize, _options(request),
                                                           subresource="finalize")
    return json_response(result)


async def _ephemeral_containers(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    """``pods/{name}/ephemeralcontainers``: the whole Pod in and out, but a write changes nothing
    except ``spec.ephemeralContainers`` (Kubernetes' ``dropNonEphemeralContainerUpdates``)."""
    assert target.name is not None
    registry = ctx.registry(target.resource)
    if request.method == "GET":
        return json_response(await registry.get(target.namespace, target.name))
    if request.method == "PUT":
        body = parse_object(await request.read(), request.headers.get("Content-Type"))
        ptype, patch = "", None
    else:
        ptype = patch_type(request.headers.get("Content-Type"))
        patch = parse_patch(await request.read(), ptype)

    def mutate(live: dict[str, Any]) -> dict[str, Any]:
        desired = body if not ptype else apply_patch(live, patch, ptype, kind="Pod")
        spec = desired.get("spec") if isinstance(desired, dict) else None
        if not isinstance(spec, dict):
            raise BadRequestError("spec: must be an object")
        ephemeral = spec.get("ephemeralContainers")
        if ephemeral is not None and not isinstance(ephemeral, list):
            raise BadRequestError("json: cannot unmarshal object into Go struct field PodSpec.spec.ephemeralContainers "
                                  "of type []v1.EphemeralContainer")
        result = copy.deepcopy(live)
        if ephemeral:
            result.setdefault("spec", {})["ephemeralContainers"] = ephemeral
        else:
            result.setdefault("spec", {}).pop("ephemeralContainers", None)
        rv = (desired.get("metadata") or {}).get("resourceVersion")
        result["metadata"].pop("resourceVersion", None)
        if rv:
            result["metadata"]["resourceVersion"] = rv  # a precondition, as on any update
        return result

    with ephemeral_update():
        updated, _ = await registry.mutate(target.namespace, target.name, mutate, _options(request),
                                           subresource="ephemeralcontainers")
    return json_response(updated)
