"""OpenAPI v3 component schemas generated from the pydantic models.

Called by :func:`machinery.api.openapi_schemas` (the apiserver serves them at ``/openapi/v3`` and
``kubectl explain`` reads them). Runs ``models_json_schema`` over every registered kind, then
rewrites the result into Kubernetes' shape: definition names such as
``io.k8s.api.apps.v1.Deployment``, ``$ref`` to ``#/components/schemas/<name>``, no null unions,
a description on every type and field, ``required`` lists, ``x-kubernetes-group-version-kind``
on kinds, and strategic-merge metadata on lists.
"""

import copy
import functools
import re
from typing import Any

from pydantic.json_schema import models_json_schema

from machinery.api.base import SCALAR_SCHEMAS, K8sModel
from machinery.api.registry import TOP_LEVEL

REF_PREFIX = "#/components/schemas/"

_FIELD_DOCS: dict[str, str] = {
    "apiVersion": "The versioned schema of this object (group/version).",
    "kind": "The type of this object, in CamelCase.",
    "metadata": "Standard object metadata: name, namespace, labels, annotations, owners.",
    "spec": "The desired state, written by the user.",
    "status": "The observed state, written by the system.",
    "name": "Name, unique within its scope.",
    "namespace": "The namespace the object lives in.",
    "labels": "Key-value pairs used to select and organise objects.",
    "annotations": "Key-value pairs for tools and controllers; not used for selection.",
    "uid": "Unique identifier assigned by the server.",
    "resourceVersion": "Opaque version used for optimistic concurrency and watches.",
    "replicas": "Number of desired pods.",
    "selector": "Label query that selects the pods managed or targeted.",
    "template": "The pod created from this template.",
    "containers": "Containers of the pod; at least one.",
    "initContainers": "Containers run to completion, in order, before the app containers start.",
    "image": "Container image reference.",
    "ports": "Network ports exposed.",
    "env": "Environment variables for the container.",
    "resources": "Compute resource requests and limits.",
    "volumes": "Volumes that containers of the pod can mount.",
    "volumeMounts": "Volumes mounted into the container's filesystem.",
    "conditions": "Latest observations of the object's state.",
    "type": "Type of the object or condition.",
    "reason": "Machine-readable, CamelCase reason for the last transition.",
    "message": "Human-readable details.",
    "lastTransitionTime": "When the condition last changed status.",
    "observedGeneration": "The generation the controller last acted on.",
    "data": "The stored key-value data.",
    "nodeName": "The node the pod is bound to.",
    "tolerations": "Taints this pod tolerates.",
    "affinity": "Node and pod affinity scheduling constraints.",
    "nodeSelector": "Labels a node must have for the pod to be scheduled there.",
    "restartPolicy": "When containers are restarted: Always, OnFailure or Never.",
    "protocol": "Network protocol: TCP, UDP or SCTP.",
    "port": "Port number.",
    "targetPort": "Port number or name on the pods that traffic is sent to.",
    "key": "Key to match or select.",
    "operator": "How the key relates to the values.",
    "values": "Values to compare against.",
    "command": "Entrypoint array; replaces the image's ENTRYPOINT.",
    "limits": "Maximum amount of each resource the container may use.",
    "requests": "Amount of each resource reserved for the container; used for scheduling.",
    "capacity": "Total amount of each resource on the node.",
    "allocatable": "Amount of each resource available to pods.",
    "phase": "Coarse summary of where the object is in its lifecycle.",
    "finalizers": "Conditions that must be cleared before the object is deleted.",
    "ownerReferences": "Objects this one depends on; it is garbage-collected when they go.",
    "args": "Arguments to the entrypoint; replace the image's CMD.",
}


def _humanize(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", name).lower()
    return words[:1].upper() + words[1:] + "."


def _all_models() -> list[type[K8sModel]]:
    found: list[type[K8sModel]] = []
    stack: list[type[K8sModel]] = [K8sModel]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.append(sub)
                stack.append(sub)
    return found


def _clean(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_clean(item, names) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    options = node.pop("anyOf", None)
    if options is not None:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            node = {**rest[0], **node}
        else:
            node["anyOf"] = rest
    node.pop("title", None)
    if node.get("default", 0) is None:
        node.pop("default")
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    if "x-k8s-ref" in node:
        node["$ref"] = REF_PREFIX + node.pop("x-k8s-ref")
    if "$ref" in node:
        node["$ref"] = REF_PREFIX + names.get(node["$ref"].rsplit("/", 1)[-1], node["$ref"].rsplit("/", 1)[-1])
    return {k: _clean(v, names) for k, v in node.items()}


def _finish_property(name: str, prop: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    if "description" not in prop:
        ref = prop.get("$ref")
        target = schemas.get(ref[len(REF_PREFIX):], {}) if ref else {}
        prop["description"] = _FIELD_DOCS.get(name) or target.get("description") or _humanize(name)
    if "$ref" in prop:
        # OpenAPI 3.0 ignores siblings of $ref; Kubernetes wraps it in allOf for that reason.
        prop = {"allOf": [{"$ref": prop.pop("$ref")}], **prop}
    return prop


@functools.cache
def _build() -> dict[str, dict[str, Any]]:
    models = _all_models()
    # A kind served in several versions has one class per version; ``k8s_definition`` names it.
    names = {m.__name__: f"{m.k8s_prefix}.{getattr(m, 'k8s_definition', '') or m.__name__}" for m in models}
    _, top = models_json_schema([(m, "validation") for m in TOP_LEVEL], ref_template="#/$defs/{model}")
    raw: dict[str, Any] = top.get("$defs", {})
    schemas: dict[str, dict[str, Any]] = {n: dict(s) for n, s in SCALAR_SCHEMAS.items()}
    for short, definition in raw.items():
        schemas[names.get(short, short)] = _clean(definition, names)
    by_name = {names[m.__name__]: m for m in models if m.__name__ in raw}
    for full, schema in schemas.items():
        model = by_name.get(full)
        if model is None:
            continue
        schema.setdefault("description", (model.__doc__ or model.__name__).strip().splitlines()[0])
        schema["type"] = "object"
        props = schema.get("properties", {})
        for name in list(props):
            props[name] = _finish_property(name, props[name], schemas)
        if model.k8s_required:
            schema["required"] = list(model.k8s_required)
        if model.k8s_gvk is not None:
            group, version, kind = model.k8s_gvk
            schema["x-kubernetes-group-version-kind"] = [{"group": group, "version": version, "kind": kind}]
    return schemas


def openapi_schemas() -> dict[str, dict[str, Any]]:
    """A fresh copy of every component schema, keyed by Kubernetes definition name."""
    return copy.deepcopy(_build())
