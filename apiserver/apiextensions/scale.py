"""The ``scale`` subresource of a custom resource (``autoscaling/v1`` Scale), as Kubernetes serves it.

``subresources.scale`` names where the replicas live: ``specReplicasPath`` (read and written),
``statusReplicasPath`` (read; 0 when absent) and optionally ``labelSelectorPath`` (a string
selector, copied to ``status.selector``). GET answers the Scale; PUT and PATCH (JSON, merge) change
only the spec replicas, through the resource's registry, so generation, validation and
preconditions apply as for any update. ``kubectl scale`` uses this.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from apiserver.apiextensions.served import ScalePaths, served_version
from apiserver.codec import parse_object
from apiserver.context import ApiContext
from apiserver.patching import apply_patch, parse_patch, patch_type
from apiserver.requests import dry_run, field_validation, json_response
from apiserver.routing import RequestTarget
from apiserver.webhooks import ObjectView, viewed_as
from apiserver.webhooks.views import SCALE_KIND
from apiserver.write_options import WriteOptions
from machinery.errors import BadRequestError, ConflictError, MethodNotAllowedError, StatusCause, invalid

Obj = dict[str, Any]


def _segments(path: str) -> list[str]:
    return [p for p in path.split(".") if p]


def _get(obj: Any, path: str) -> Any:
    for part in _segments(path):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _set(obj: Obj, path: str, value: Any) -> None:
    parts = _segments(path)
    for part in parts[:-1]:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = {}
            obj[part] = child
        obj = child
    obj[parts[-1]] = value


def scale_view(obj: Obj, paths: ScalePaths) -> Obj:
    """The autoscaling/v1 Scale of a custom resource."""
    meta = obj["metadata"]
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                  if k in meta}
    spec_replicas = _get(obj, paths.spec_replicas)
    status_replicas = _get(obj, paths.status_replicas)
    status: Obj = {"replicas": status_replicas if isinstance(status_replicas, int) else 0}
    if paths.label_selector:
        selector = _get(obj, paths.label_selector)
        if isinstance(selector, str) and selector:
            status["selector"] = selector
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
            "spec": {"replicas": spec_replicas if isinstance(spec_replicas, int) else 0}, "status": status}


async def handle_scale(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.Response:
    assert target.name is not None
    paths = served_version(target.resource).scale
    assert paths is not None
    registry = ctx.registry(target.resource)
    if request.method == "GET":
        return json_response(scale_view(await registry.get(target.namespace, target.name), paths))
    if request.method == "PUT":
        body: Any = parse_object(await request.read(), request.headers.get("Content-Type"))
        ptype = ""
    elif request.method == "PATCH":
        ptype = patch_type(request.headers.get("Content-Type"))
        body = parse_patch(await request.read(), ptype)
    else:
        raise MethodNotAllowedError("the server does not allow this method on the requested resource")
    name = target.name

    def mutate(live: Obj) -> Obj:
        current = scale_view(live, paths)
        desired = apply_patch(copy.deepcopy(current), body, ptype, kind="Scale") if ptype else body
        spec = desired.get("spec") if isinstance(desired, dict) else None
        replicas = spec.get("replicas") if isinstance(spec, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise BadRequestError(f"spec.replicas: Invalid value: {replicas!r}: must be an integer")
        if replicas < 0:
            raise invalid("Scale", name, [StatusCause("spec.replicas", f"Invalid value: {replicas}: must be "
                                                      "greater than or equal to 0")], group="autoscaling")
        rv = (desired.get("metadata") or {}).get("resourceVersion")
        if rv and rv != live["metadata"]["resourceVersion"]:
            raise ConflictError(
                f'Operation cannot be fulfilled on {target.resource.group_resource} "{name}": the object '
                "has been modified; please apply your changes to the latest version and try again")
        _set(live, paths.spec_replicas, replicas)
        live["metadata"].pop("resourceVersion", None)
        return live

    def write_back(obj: Obj, scale: Obj) -> None:  # a mutating webhook's Scale → the object
        spec = scale.get("spec")
        replicas = spec.get("replicas") if isinstance(spec, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise BadRequestError(f"spec.replicas: Invalid value: {replicas!r}: must be an integer")
        _set(obj, paths.spec_replicas, replicas)

    options = WriteOptions(dry_run=dry_run(request), field_validation=field_validation(request),
                           field_manager=request.query.get("fieldManager", ""))
    # Webhooks see the autoscaling/v1 Scale, as in Kubernetes.
    with viewed_as(ObjectView(SCALE_KIND, lambda obj: scale_view(obj, paths), write_back)):
        updated, _ = await registry.mutate(target.namespace, name, mutate, options)
    return json_response(scale_view(updated, paths))
