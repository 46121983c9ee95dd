"""TokenRequest: ``POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`` (``kubectl create token``).

A virtual subresource (:mod:`apiserver.virtual`) that issues a service-account token
(:mod:`apiserver.tokens`), as kube-apiserver's token REST storage does:

* ``spec.expirationSeconds`` defaults to 3600, may not be under 600 (10 minutes) nor above 2^32,
  and is shortened to the apiserver's maximum (``service_account_max_token_seconds``);
* ``spec.audiences`` defaults to the apiserver's audiences;
* ``spec.boundObjectRef`` (kind ``Pod``, ``Secret`` or ``Node``, apiVersion ``v1``) binds the
  token to an existing object: the token stops authenticating once that object is gone. A Pod
  must run as this service account; a uid given must match (else 409 Conflict). A token bound to
  a scheduled Pod also names the Pod's node.

The answer carries ``status.token`` and ``status.expirationTimestamp``; a dry run issues nothing.
"""

from __future__ import annotations

import datetime
from typing import Any

from apiserver.authn import AUTHENTICATOR
from apiserver.tokens import ObjectRef
from apiserver.virtual import VirtualCall, cached_object
from machinery.errors import BadRequestError, ConflictError, NotFoundError, StatusCause, invalid
from machinery.resources import NODES, PODS, SECRETS, SERVICEACCOUNTS, ResourceInfo

DEFAULT_SECONDS = 3600
MIN_SECONDS = 600
MAX_SECONDS = 1 << 32
_BINDABLE: dict[str, ResourceInfo] = {"Pod": PODS, "Secret": SECRETS, "Node": NODES}


def _invalid(name: str, field: str, message: str) -> Exception:
    return invalid("TokenRequest", name, [StatusCause(field, message, "FieldValueInvalid")],
                   group="authentication.k8s.io")


def _expiration(name: str, spec: dict[str, Any], maximum: int) -> int:
    value = spec.get("expirationSeconds")
    if value is None:
        return min(DEFAULT_SECONDS, maximum)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(name, "spec.expirationSeconds", f"Invalid value: {value!r}: must be an integer")
    if value < MIN_SECONDS:
        raise _invalid(name, "spec.expirationSeconds",
                       f"Invalid value: {value}: may not specify a duration less than 10 minutes")
    if value > MAX_SECONDS:
        raise _invalid(name, "spec.expirationSeconds",
                       f"Invalid value: {value}: may not specify a duration larger than 2^32 seconds")
    return min(value, maximum)


def _uid(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("uid", ""))


async def _bound(call: VirtualCall, sa_name: str, ref: dict[str, Any]) -> dict[str, ObjectRef]:
    """The objects a token is bound to: {"pod"|"secret"|"node": ref}, checked to exist."""
    name = call.name or ""
    kind, api_version = ref.get("kind", ""), ref.get("apiVersion", "v1") or "v1"
    resource = _BINDABLE.get(kind)
    if resource is None:
        raise _invalid(name, "spec.boundObjectRef.kind",
                       f'Unsupported value: "{kind}": supported values: "Pod", "Secret", "Node"')
    if api_version != "v1":
        raise _invalid(name, "spec.boundObjectRef.apiVersion",
                       f'Unsupported value: "{api_version}": supported values: "v1"')
    target = str(ref.get("name", ""))
    namespace = None if kind == "Node" else call.namespace
    obj = await cached_object(call.ctx, resource, namespace, target) if target else None
    if obj is None:
        raise NotFoundError(f'{resource.plural} "{target}" not found', name=target, kind=resource.plural)
    if ref.get("uid") and ref["uid"] != _uid(obj):
        raise ConflictError(f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
                            "record. The object might have been deleted and then recreated")
    out = {kind.lower(): ObjectRef(target, _uid(obj))}
    if kind == "Pod":
        spec = obj.get("spec") or {}
        if (spec.get("serviceAccountName") or "default") != sa_name:
            raise BadRequestError(f'cannot bind token for serviceaccount "{sa_name}" to pod running with '
                                  "different serviceaccount name.")
        node_name = spec.get("nodeName")
        node = await cached_object(call.ctx, NODES, None, node_name) if node_name else None
        if node is not None:
            out["node"] = ObjectRef(str(node_name), _uid(node))
    return out


async def token_request(call: VirtualCall) -> dict[str, Any]:
    name, namespace = call.name or "", call.namespace or ""
    sa = await cached_object(call.ctx, SERVICEACCOUNTS, namespace, name)
    if sa is None:
        raise NotFoundError(f'serviceaccounts "{name}" not found', name=name, kind="serviceaccounts")
    spec = dict(call.body.get("spec") or {})
    authenticator = call.request.app[AUTHENTICATOR]
    settings = call.ctx.settings
    seconds = _expiration(name, spec, getattr(settings, "service_account_max_token_seconds", MAX_SECONDS))
    audiences = spec.get("audiences") or list(authenticator.tokens.audiences)
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise _invalid(name, "spec.audiences", "Invalid value: audiences must be non-empty strings")
    ref = spec.get("boundObjectRef")
    bound = await _bound(call, name, ref) if isinstance(ref, dict) and ref else {}
    spec.update(expirationSeconds=seconds, audiences=audiences)
    if ref:
        uid = bound[ref["kind"].lower()].uid
        spec["boundObjectRef"] = {**ref, "apiVersion": ref.get("apiVersion") or "v1", "uid": uid}
    meta = {**(call.body.get("metadata") or {}), "name": name, "namespace": namespace,
            "creationTimestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    out: dict[str, Any] = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": meta,
                           "spec": spec, "status": {"token": "", "expirationTimestamp": None}}
    if call.dry_run:
        return out
    token, expires = authenticator.tokens.issue(
        namespace=namespace, service_account=ObjectRef(name, _uid(sa)), audiences=audiences,
        expiration_seconds=seconds, pod=bound.get("pod"), secret=bound.get("secret"), node=bound.get("node"))
    out["status"] = {"token": token, "expirationTimestamp": datetime.datetime.fromtimestamp(
        expires, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return out
