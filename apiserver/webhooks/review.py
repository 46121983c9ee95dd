"""AdmissionReview v1: the request the apiserver sends and the checks on the answer.

:func:`review_request` builds ``admission.k8s.io/v1`` AdmissionReview with Kubernetes' fields
(uid, kind/resource/subResource as the webhook's rule matched them, requestKind/requestResource/
requestSubResource as the client sent them, name, namespace, operation, userInfo, object,
oldObject, dryRun, options). :func:`verify_response` applies Kubernetes' checks on the answer
(type, uid echoed, patch only from mutating webhooks and only JSONPatch) and returns the typed
:class:`Verdict`; any breach is a :class:`~apiserver.webhooks.client.CallError` worded as
kube-apiserver's ``received invalid webhook response: ...``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import orjson

from apiserver.webhooks.attributes import Call
from apiserver.webhooks.client import CallError
from machinery.resources import ResourceInfo

Obj = dict[str, Any]
REVIEW_API_VERSION = "admission.k8s.io/v1"


def _gvk(group: str, version: str, kind: str) -> Obj:
    return {"group": group, "version": version, "kind": kind}


def _gvr(resource: ResourceInfo) -> Obj:
    return {"group": resource.group, "version": resource.version, "resource": resource.plural}


def at_version(obj: Obj | None, call: Call, resource: ResourceInfo) -> Obj | None:
    """The call's ``obj`` as ``resource``'s version serves it (conversion ``None``: only apiVersion
    changes). Objects of another kind than the resource's (a Scale, a Binding) stay as they are."""
    if obj is None or obj.get("apiVersion") != call.resource.api_version or resource is call.resource:
        return obj
    return dict(obj, apiVersion=resource.api_version)


def review_request(call: Call, seen_as: ResourceInfo) -> Obj:
    """The AdmissionReview sent to a webhook whose rules matched the call as ``seen_as``."""
    group, version, kind = call.kind
    if seen_as is not call.resource and group == call.resource.group and version == call.resource.version:
        group, version = seen_as.group, seen_as.version
    request: Obj = {
        "uid": str(uuid.uuid4()),
        "kind": _gvk(group, version, kind),
        "resource": _gvr(seen_as),
        "requestKind": _gvk(*call.kind),
        "requestResource": _gvr(call.resource),
        "name": call.name,
        "operation": call.operation,
        "userInfo": call.user.to_api(),
        "object": at_version(call.object, call, seen_as),
        "oldObject": at_version(call.old_object, call, seen_as),
        "dryRun": call.dry_run,
        "options": call.options,
    }
    if call.subresource:
        request["subResource"] = call.subresource
        request["requestSubResource"] = call.subresource
    if call.namespace:
        request["namespace"] = call.namespace
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "request": request}


@dataclass
class Verdict:
    """A webhook's checked answer."""

    allowed: bool
    status: Obj = field(default_factory=dict)
    patch: jsonpatch.JsonPatch | None = None
    warnings: list[str] = field(default_factory=list)


def _invalid(detail: str) -> CallError:
    return CallError(f"received invalid webhook response: {detail}")


def verify_response(answer: Any, uid: str, *, mutating: bool) -> Verdict:
    """Kubernetes' ``VerifyAdmissionResponse`` for v1 reviews."""
    if not isinstance(answer, dict):
        raise _invalid("expected a JSON object")
    api_version, kind = answer.get("apiVersion"), answer.get("kind")
    if api_version != REVIEW_API_VERSION or kind != "AdmissionReview":
        raise _invalid(f"expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, "
                       f"got {api_version or ''}, Kind={kind or ''}")
    response = answer.get("response")
    if not isinstance(response, dict):
        raise _invalid("webhook response was absent")
    if response.get("uid") != uid:
        raise _invalid(f'expected response.uid="{uid}", got "{response.get("uid") or ""}"')
    allowed = response.get("allowed")
    if not isinstance(allowed, bool):
        raise _invalid("response.allowed must be a boolean")
    raw_patch, patch_type = response.get("patch"), response.get("patchType")
    status = response.get("status")
    warnings = [w for w in response.get("warnings") or [] if isinstance(w, str)]
    verdict = Verdict(allowed=allowed, status=status if isinstance(status, dict) else {}, warnings=warnings)
    if raw_patch or patch_type is not None:
        if not mutating:
            raise _invalid("validating webhooks may not return patches")
        if not raw_patch:
            raise _invalid(f"webhook returned patchType of {patch_type} but not also patch")
        if patch_type is None:
            raise _invalid("webhook returned patch but not patchType")
        if patch_type != "JSONPatch":
            raise _invalid(f'webhook returned invalid patchType: "{patch_type}"')
        verdict.patch = decode_patch(raw_patch)
    return verdict


_OPERATION_FIELDS = {"add": "value", "replace": "value", "test": "value", "remove": "", "move": "from", "copy": "from"}


def decode_patch(raw: Any) -> jsonpatch.JsonPatch | None:
    """A JSONPatch from the response's base64 ``patch`` (None when empty).

    Raises :class:`CallError` with kube-apiserver's ``received undecodable patch`` wording."""
    try:
        if not isinstance(raw, str):
            raise ValueError("patch must be a base64 string")
        operations = orjson.loads(base64.b64decode(raw, validate=True))
        if not isinstance(operations, list) or not all(isinstance(op, dict) and isinstance(op.get("op"), str)
                                                       and isinstance(op.get("path"), str) for op in operations):
            raise ValueError("a JSON patch is a list of operations, each with an op and a path")
        for operation in operations:
            needs = _OPERATION_FIELDS.get(operation["op"])
            if needs is None:
                raise ValueError(f"unexpected kind of operation: {operation['op']!r}")
            if needs not in ("", *operation):
                raise ValueError(f"operation {operation['op']!r} is missing {needs!r}")
        patch = jsonpatch.JsonPatch(operations)
    except (binascii.Error, ValueError, orjson.JSONDecodeError, jsonpatch.JsonPatchException) as exc:
        raise CallError(f"received undecodable patch in webhook response: {exc}") from None
    return patch if operations else None
